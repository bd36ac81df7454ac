//! Identifiers and upload tokens: random bits from the OS CSPRNG, URL-safe text.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new public identifier: 128 random bits as 22 base64url characters.
pub fn new_id() -> String {
    random_text::<16>()
}

/// A new stream ticket: 256 random bits as 43 base64url characters.
pub fn new_ticket() -> String {
    random_text::<32>()
}

/// A new random key of 256 bits, for [`UploadTokenKey`] when none is configured.
pub fn new_token_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// Derives upload tokens: `token = HMAC-SHA256(key, identifier)`, 256 bits as 43 base64url
/// characters. The database keeps only the token's SHA-256, so a database leak reveals no
/// token; the key lets the owner's QR route render the upload URL again later, which a
/// stored hash alone could not.
#[derive(Clone)]
pub struct UploadTokenKey([u8; 32]);

impl UploadTokenKey {
    pub fn new(key: [u8; 32]) -> Self {
        UploadTokenKey(key)
    }

    pub fn token_for(&self, identifier: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"qrupload upload token\0");
        mac.update(identifier.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for UploadTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadTokenKey(***)")
    }
}

/// The stored form of a token: SHA-256 in hex. Tokens carry 192 random bits, so a fast hash
/// is enough; no password-style stretching is needed.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Compares two hashes without an early exit, so timing reveals nothing of the stored one.
pub(crate) fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn random_text<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // ThreadRng is a CSPRNG (ChaCha12) seeded and periodically reseeded from the OS.
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_urlsafe_chars_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(crate::biz::is_well_formed_id(&a));
    }

    #[test]
    fn token_hash_is_stable_and_compares() {
        let key = UploadTokenKey::new(new_token_key());
        let t = key.token_for("abc");
        assert_eq!(t.len(), 43);
        assert_eq!(t, key.token_for("abc"));
        assert_ne!(t, key.token_for("abd"));
        assert_ne!(t, UploadTokenKey::new(new_token_key()).token_for("abc"));
        let h = hash_token(&t);
        assert!(same_hash(&h, &hash_token(&t)));
        assert!(!same_hash(&h, &hash_token("other")));
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
