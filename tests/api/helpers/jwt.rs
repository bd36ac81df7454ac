//! Member JWTs as a host application signs them: `sub` is the member, `exp` is required.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// Seconds since the Unix epoch, as JWT times are written.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A token for member `sub` signed with `key`, expiring at `exp` (seconds since the epoch).
pub fn mint_jwt(alg: Algorithm, key: &EncodingKey, sub: &str, exp: i64) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &json!({ "sub": sub, "exp": exp, "iat": now() }),
        key,
    )
    .expect("token signs")
}

/// An HS256 token for member `sub` under `secret`, valid for `ttl` seconds (negative: expired).
pub fn hs256_jwt(secret: &str, sub: &str, ttl: i64) -> String {
    mint_jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        sub,
        now() + ttl,
    )
}
