//! Key secrets: generating a key or another secret, its sha256 digest (what the database
//! stores), and comparing digests in constant time.

use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefix of every key, so leaked keys are easy to find in logs and code.
pub const KEY_PREFIX: &str = "vsg_";

/// The sha256 of a key, hex: what the database stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `vsg_` and 43 base64url characters (256 bits).
pub fn generate_key() -> String {
    generate_secret(KEY_PREFIX)
}

/// A new random secret: `prefix` and 43 base64url characters (256 bits).
pub fn generate_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Compares two digests in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_equal_only_when_equal() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
