//! Identifiers. Random ids come from the OS CSPRNG; event and delivery ids are
//! derived from their idempotency keys so that a retried request lands on the
//! very same items instead of creating new ones.

use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Lower-case Crockford base32 of `bytes` (no padding).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The OS RNG failing is not recoverable: there is no safe fallback for ids and keys.
    getrandom::fill(&mut buf).unwrap_or_else(|e| panic!("OS random number generator failed: {e}"));
    buf
}

/// A click id: 128 random bits, 26 characters, unguessable.
pub fn click_id() -> String {
    base32(&random_bytes(16))
}

/// A resource id such as `off_…`, `prt_…`, `ep_…`: 80 random bits after the prefix.
pub fn resource_id(prefix: &str) -> String {
    format!("{prefix}_{}", base32(&random_bytes(10)))
}

/// A secret of 256 random bits, for API keys.
pub fn secret() -> String {
    base32(&random_bytes(32))
}

/// Deterministic id from the parts of an idempotency key. Parts are separated
/// by a NUL byte so that `("ab","c")` and `("a","bc")` differ.
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    format!("{prefix}_{}", base32(&digest[..16]))
}

/// Hex SHA-256, used to store API keys and tokens without keeping them.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_encodes_known_vectors() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(&[0xff]), "zw");
        assert_eq!(base32(&[0, 0, 0, 0, 0]), "00000000");
    }

    #[test]
    fn click_ids_are_26_chars_and_distinct() {
        let a = click_id();
        let b = click_id();
        assert_eq!(a.len(), 26);
        assert_ne!(a, b);
    }

    #[test]
    fn derived_ids_are_stable_and_separate_parts() {
        assert_eq!(
            derived_id("evt", &["a", "b"]),
            derived_id("evt", &["a", "b"])
        );
        assert_ne!(
            derived_id("evt", &["ab", "c"]),
            derived_id("evt", &["a", "bc"])
        );
        assert!(derived_id("evt", &["x"]).starts_with("evt_"));
    }
}
