//! Who the member is, at the HTTP edge.
//!
//! - `dev` (the embedded default): the member is the `member_id` the request names, as in the
//!   seed. Fine on a laptop; never on the internet.
//! - `jwt`: the member is the `sub` claim of a bearer JWT of the host application, verified
//!   with `jsonwebtoken` (HS256 secret or RS256 public key), `exp` required. A `member_id` in
//!   the request is then optional; when present it must be the token's subject. The SSE route
//!   also reads the token from a cookie, because `EventSource` cannot send headers; it never
//!   reads one from a query string, which would end up in access logs.
//!
//! Answers follow SPEC.md: no token, a malformed, wrongly signed or expired one → 401
//! `UNAUTHENTICATED` (one message for all, so nothing is learned from the difference); a
//! valid token of another member → the same 404 as an unknown session.
//!
//! The phone's upload token is not a JWT and is handled by the usecase; the two never mix: a
//! bearer value without the JWT's dots is never tried as a JWT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{error::ApiError, http::parse_member_id};
use crate::conf::{AuthConf, AuthMode, JwtAlgorithm};

/// A member proven at the edge; `expires_at` is the token's `exp` in jwt mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: u32,
    pub expires_at: Option<SystemTime>,
}

/// Where a request may carry its JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFrom {
    Header,
    /// The `Authorization` header, or else the configured cookie (the SSE route only).
    HeaderOrCookie,
}

pub enum MemberAuth {
    Dev,
    Jwt(Box<JwtVerifier>),
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    cookie: Box<str>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("auth.jwt: {0}")]
pub struct AuthConfigError(String);

impl MemberAuth {
    pub fn from_config(conf: &AuthConf) -> Result<Self, AuthConfigError> {
        if conf.mode == AuthMode::Dev {
            return Ok(MemberAuth::Dev);
        }
        let jwt = &conf.jwt;
        let (key, algorithm) = match jwt.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = jwt
                    .secret
                    .as_ref()
                    .ok_or_else(|| AuthConfigError("secret is required for HS256".into()))?;
                (
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                    Algorithm::HS256,
                )
            }
            JwtAlgorithm::RS256 => {
                let pem = match (&jwt.public_key_pem, &jwt.public_key_file) {
                    (Some(pem), _) => pem.clone().into_bytes(),
                    (None, Some(path)) => std::fs::read(path)
                        .map_err(|e| AuthConfigError(format!("public_key_file {path}: {e}")))?,
                    (None, None) => {
                        return Err(AuthConfigError("a public key is required for RS256".into()));
                    }
                };
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| AuthConfigError(format!("public key: {e}")))?;
                (key, Algorithm::RS256)
            }
        };
        // Only the configured algorithm: a token cannot pick its own (no `none`, no HS/RS swap).
        let mut validation = Validation::new(algorithm);
        validation.leeway = jwt.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &jwt.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &jwt.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(MemberAuth::Jwt(Box::new(JwtVerifier {
            key,
            validation,
            cookie: jwt.cookie.as_str().into(),
        })))
    }

    pub fn is_jwt(&self) -> bool {
        matches!(self, MemberAuth::Jwt(_))
    }

    /// The member of a request. `claimed` is the request's own `member_id` (query or body),
    /// already read as text; in dev mode it is required, in jwt mode optional.
    pub fn member(
        &self,
        headers: &HeaderMap,
        claimed: Option<&str>,
        from: TokenFrom,
    ) -> Result<Member, ApiError> {
        match self {
            MemberAuth::Dev => {
                let id = match claimed {
                    Some(text) if !text.is_empty() => parse_member_id(text)?,
                    _ => return Err(ApiError::invalid("member_id", "member_id is required")),
                };
                Ok(Member {
                    id,
                    expires_at: None,
                })
            }
            MemberAuth::Jwt(verifier) => {
                // A malformed member_id is still the caller's mistake, whatever the token says.
                let claimed = match claimed {
                    Some(text) if !text.is_empty() => Some(parse_member_id(text)?),
                    _ => None,
                };
                let token = verifier
                    .token(headers, from)
                    .ok_or_else(member_unauthenticated)?;
                let member = verifier.verify(token)?;
                match claimed {
                    Some(id) if id != member.id => Err(ApiError::not_found()),
                    _ => Ok(member),
                }
            }
        }
    }
}

impl JwtVerifier {
    fn token<'h>(&self, headers: &'h HeaderMap, from: TokenFrom) -> Option<&'h str> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim())
                .filter(|t| !t.is_empty());
        }
        if from == TokenFrom::HeaderOrCookie {
            return cookie(headers, &self.cookie);
        }
        None
    }

    fn verify(&self, token: &str) -> Result<Member, ApiError> {
        if token.len() > 8 * 1024 || token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(member_unauthenticated());
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                // The kind only: the token itself never reaches a log line.
                tracing::debug!(error = ?e.kind(), "jwt refused");
                member_unauthenticated()
            })?;
        let id = parse_member_id(&data.claims.sub).map_err(|_| member_unauthenticated())?;
        Ok(Member {
            id,
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(data.claims.exp)),
        })
    }
}

/// A bearer value that is shaped like a JWT (three dot-separated parts); upload tokens are not.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

fn member_unauthenticated() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "a valid bearer token is required",
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; qrupload_jwt=x.y.z"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "qrupload_jwt"), Some("x.y.z"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(cookie(&h, "qrupload"), None);
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(
            "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd"
        ));
    }
}
