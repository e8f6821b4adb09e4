//! API token secrets: generated here, stored only as SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "panda_";

/// A new random secret: `panda_` and 64 hex digits (256 bits).
pub(crate) fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// The stored form of a secret.
pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a stored hash with a presented secret's hash in constant time.
pub(crate) fn hash_matches(stored: &str, secret: &str) -> bool {
    use subtle::ConstantTimeEq;
    stored
        .as_bytes()
        .ct_eq(hash_secret(secret).as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_only_their_own_hash_matches() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert!(hash_matches(&hash_secret(&a), &a));
        assert!(!hash_matches(&hash_secret(&a), &b));
    }
}
