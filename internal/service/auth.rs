//! Who the member is, at the HTTP edge.
//!
//! - `dev` (the embedded default): the member is the `member_id` the request names, as in the
//!   seed. Fine on a laptop; never on the internet.
//! - `jwt`: the member is the `sub` claim of a bearer JWT of the host application, verified
//!   with `jsonwebtoken` (HS256 secret or RS256 public key), `exp` required. A `member_id` in
//!   the request is then optional; when present it must be the token's subject. A JWT is read
//!   from `Authorization` only, never from a cookie or a query string (which would end up in
//!   access logs); a browser's `EventSource`, which cannot send headers, opens the SSE stream
//!   with a single-use stream ticket instead (see `biz::StreamTickets`).
//!
//! Answers follow SPEC.md: no token, a malformed, wrongly signed or expired one → 401
//! `UNAUTHENTICATED` (one message for all, so nothing is learned from the difference); a
//! valid token of another member → the same 404 as an unknown session.
//!
//! The phone's upload token is not a JWT and is checked by the usecase; the two never mix: a
//! bearer value without the JWT's dots is never tried as a JWT.
//!
//! This module is the one place that decides who is calling: it reads the bearer value, checks
//! a JWT's shape, and chooses between dev member, JWT and upload token ([`MemberAuth::caller`],
//! and [`MemberAuth::ticket_holder`] for stream tickets, which keeps the JWT's expiry).
//! Its refusals are an [`AuthError`], mapped to SPEC.md's JSON error once (`From` for
//! `ApiError`); handlers take the answer and hold no rule of their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::error::{ApiError, Reason};
use crate::{
    biz::Caller,
    conf::{AuthConf, AuthMode, JwtAlgorithm},
};

/// Why a request's caller was refused, before any usecase call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// dev mode, and the request names no member.
    #[error("member_id is required")]
    MemberIdRequired,
    #[error("member_id must be an unsigned 32-bit integer")]
    InvalidMemberId,
    /// The query string the member would be read from does not parse.
    #[error("the query string is malformed")]
    MalformedQuery,
    /// jwt mode: no member token, or a malformed, wrongly signed or expired one.
    #[error("a valid bearer token is required")]
    MemberToken,
    /// No `Authorization: Bearer …` where the upload token (or a member) was needed.
    #[error("an Authorization: Bearer upload token is required")]
    UploadToken,
    /// A valid token of another member than the one the request names: the same answer as
    /// an unknown session.
    #[error("not found")]
    OtherMember,
    /// A create request whose body names another member than the token: a bad request.
    #[error("member_id must be the token's subject")]
    NotTokenSubject,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::MemberIdRequired
            | AuthError::InvalidMemberId
            | AuthError::NotTokenSubject => ApiError::invalid("member_id", e.to_string()),
            AuthError::MalformedQuery => ApiError::invalid("query", e.to_string()),
            AuthError::MemberToken => ApiError::new(Reason::Unauthenticated, e.to_string()),
            AuthError::UploadToken => ApiError::unauthenticated(),
            AuthError::OtherMember => ApiError::not_found(),
        }
    }
}

/// `member_id` as text → the member: an unsigned 32-bit integer in ASCII digits; 0 is valid,
/// as in the seed.
pub fn parse_member_id(text: &str) -> Result<u32, AuthError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::InvalidMemberId);
    }
    text.parse().map_err(|_| AuthError::InvalidMemberId)
}

/// The value of `Authorization: Bearer …`, trimmed; `None` when the header is absent, not
/// text, of another scheme or empty.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The phone's upload token from `Authorization: Bearer …`.
pub fn upload_token(headers: &HeaderMap) -> Result<String, AuthError> {
    bearer(headers)
        .map(str::to_owned)
        .ok_or(AuthError::UploadToken)
}

/// The first `member_id` of a raw query string, as text.
fn query_member_id(query: Option<&str>) -> Result<Option<String>, AuthError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| AuthError::MalformedQuery)?;
    Ok(pairs
        .into_iter()
        .find(|(k, _)| k == "member_id")
        .map(|(_, v)| v))
}

/// A member proven at the edge; `expires_at` is the token's `exp` in jwt mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: u32,
    pub expires_at: Option<SystemTime>,
}

pub enum MemberAuth {
    Dev,
    Jwt(Box<JwtVerifier>),
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
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
        Ok(MemberAuth::Jwt(Box::new(JwtVerifier { key, validation })))
    }

    pub fn is_jwt(&self) -> bool {
        matches!(self, MemberAuth::Jwt(_))
    }

    /// The member of a request. `claimed` is the request's own `member_id` (query or body),
    /// already read as text; in dev mode it is required, in jwt mode optional.
    pub fn member(&self, headers: &HeaderMap, claimed: Option<&str>) -> Result<Member, AuthError> {
        match self {
            MemberAuth::Dev => {
                let id = match claimed {
                    Some(text) if !text.is_empty() => parse_member_id(text)?,
                    _ => return Err(AuthError::MemberIdRequired),
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
                let token = bearer(headers).ok_or(AuthError::MemberToken)?;
                let member = verifier.verify(token)?;
                match claimed {
                    Some(id) if id != member.id => Err(AuthError::OtherMember),
                    _ => Ok(member),
                }
            }
        }
    }

    /// The member creating a session, whose body may name one: a body naming another member
    /// than the token is a bad request, not a lookup.
    pub fn creator(&self, headers: &HeaderMap, claimed: Option<&str>) -> Result<Member, AuthError> {
        self.member(headers, claimed).map_err(|e| match e {
            AuthError::OtherMember => AuthError::NotTokenSubject,
            e => e,
        })
    }

    /// Who is calling a route open to both the phone and the owner (deleting an image): a
    /// bearer value shaped like a JWT in jwt mode is the member, any other bearer value the
    /// upload token; without a bearer value, dev mode reads `member_id` from the raw query.
    pub fn caller(&self, headers: &HeaderMap, query: Option<&str>) -> Result<Caller, AuthError> {
        if headers.contains_key(header::AUTHORIZATION) {
            let token = bearer(headers).ok_or(AuthError::UploadToken)?;
            if self.is_jwt() && looks_like_jwt(token) {
                let claimed = query_member_id(query)?;
                let member = self.member(headers, claimed.as_deref())?;
                return Ok(Caller::Member(member.id));
            }
            return Ok(Caller::UploadToken(token.to_owned()));
        }
        if self.is_jwt() {
            return Err(AuthError::UploadToken);
        }
        match query_member_id(query)? {
            None => Err(AuthError::UploadToken),
            Some(text) if text.is_empty() => Err(AuthError::MemberIdRequired),
            Some(text) => Ok(Caller::Member(parse_member_id(&text)?)),
        }
    }

    /// Who asks for a stream ticket: the owner (with its JWT's expiry in jwt mode) or the
    /// phone with its upload token. A bearer value is the upload token unless it is shaped
    /// like a JWT in jwt mode, as in [`MemberAuth::caller`]; anything else (no bearer value,
    /// or another scheme, which a proxy's basic auth adds in front of a dev instance) is read
    /// as on the owner's routes (`claimed` is the request's `member_id`), so dev mode without
    /// any credentials still answers that `member_id` is required.
    pub fn ticket_holder(
        &self,
        headers: &HeaderMap,
        claimed: Option<&str>,
    ) -> Result<(Caller, Option<SystemTime>), AuthError> {
        if let Some(token) = bearer(headers)
            && !(self.is_jwt() && looks_like_jwt(token))
        {
            return Ok((Caller::UploadToken(token.to_owned()), None));
        }
        let member = self.member(headers, claimed)?;
        Ok((Caller::Member(member.id), member.expires_at))
    }
}

impl JwtVerifier {
    fn verify(&self, token: &str) -> Result<Member, AuthError> {
        if token.len() > 8 * 1024 || !looks_like_jwt(token) {
            return Err(AuthError::MemberToken);
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                // The kind only: the token itself never reaches a log line.
                tracing::debug!(error = ?e.kind(), "jwt refused");
                AuthError::MemberToken
            })?;
        let id = parse_member_id(&data.claims.sub).map_err(|_| AuthError::MemberToken)?;
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn member_ids() {
        assert_eq!(parse_member_id("0").ok(), Some(0));
        assert_eq!(parse_member_id("4294967295").ok(), Some(u32::MAX));
        for bad in ["", "-1", "+1", "4294967296", "1.0", "abc", "١"] {
            assert_eq!(
                parse_member_id(bad),
                Err(AuthError::InvalidMemberId),
                "{bad:?}"
            );
            assert_eq!(
                ApiError::from(AuthError::InvalidMemberId).field,
                Some("member_id")
            );
        }
    }

    #[test]
    fn bearer_values() {
        let mut h = HeaderMap::new();
        assert!(upload_token(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(upload_token(&h).ok().as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(upload_token(&h).is_err());
    }

    #[test]
    fn ticket_holders() {
        let dev = MemberAuth::Dev;
        let mut h = HeaderMap::new();
        assert_eq!(
            dev.ticket_holder(&h, None).err(),
            Some(AuthError::MemberIdRequired)
        );
        assert!(matches!(
            dev.ticket_holder(&h, Some("3")),
            Ok((Caller::Member(3), None))
        ));
        // A proxy's basic auth in front of a dev instance leaves the member as named.
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(
            dev.ticket_holder(&h, Some("3")),
            Ok((Caller::Member(3), None))
        ));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer phone-token"),
        );
        assert!(matches!(
            dev.ticket_holder(&h, Some("3")),
            Ok((Caller::UploadToken(t), None)) if t == "phone-token"
        ));
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(
            "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd"
        ));
    }
}
