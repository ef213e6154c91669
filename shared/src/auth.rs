//! API keys: the admin key from configuration, partner keys generated once
//! and stored as SHA-256 hashes. Keys are compared in constant time.

use subtle::ConstantTimeEq;

use crate::ids::{self, KeyId, PartnerId};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin key: sees everything.
    Admin,
    /// A partner key: sees only that partner's resources.
    Partner(PartnerId),
}

impl Caller {
    /// Whether this caller may see the resources of `partner_id`.
    pub fn can_see(&self, partner_id: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Partner(p) => p == partner_id,
        }
    }
}

/// Prefix of partner keys: `pbk_<partner_id>_<secret>`.
const PARTNER_KEY_PREFIX: &str = "pbk_";

/// A new partner key and the hash to store.
pub fn new_partner_key(partner_id: &str) -> (String, String) {
    let key = format!("{PARTNER_KEY_PREFIX}{partner_id}_{}", ids::secret());
    let hash = ids::sha256_hex(&key);
    (key, hash)
}

/// The partner id a key claims to belong to, if it is shaped like a partner key.
pub fn partner_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PARTNER_KEY_PREFIX)?;
    let (partner, secret) = rest.rsplit_once('_')?;
    (!partner.is_empty() && !secret.is_empty()).then_some(partner)
}

/// Constant-time equality of two strings (lengths may leak, contents do not).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Most keys a partner holds at once (enough for a rotation with overlap).
pub const MAX_PARTNER_KEYS: usize = 5;

/// The public id of a stored key: `key_` and the first 12 hex digits of its
/// hash. It names the key for listing and revoking, and tells nothing of it.
pub fn key_id(hash: &str) -> KeyId {
    KeyId::of_hash(hash)
}

/// Whether `key` hashes to one of `hashes`, compared in constant time.
pub fn key_matches(key: &str, hashes: &[String]) -> bool {
    let hash = ids::sha256_hex(key);
    hashes
        .iter()
        .fold(false, |found, h| found | constant_time_eq(&hash, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partner_key_names_its_partner_and_matches_its_hash() {
        let (key, hash) = new_partner_key("prt_abc");
        assert_eq!(partner_of_key(&key), Some("prt_abc"));
        assert!(key_matches(&key, std::slice::from_ref(&hash)));
        assert!(!key_matches(&format!("{key}x"), &[hash]));
    }

    #[test]
    fn keys_of_other_shapes_name_no_partner() {
        assert_eq!(partner_of_key("admin-key"), None);
        assert_eq!(partner_of_key("pbk_"), None);
        assert_eq!(partner_of_key("pbk_abc_"), None);
    }

    #[test]
    fn partners_see_only_their_own() {
        assert!(Caller::Admin.can_see("p1"));
        assert!(Caller::Partner(crate::ids::t("p1")).can_see("p1"));
        assert!(!Caller::Partner(crate::ids::t("p1")).can_see("p2"));
    }
}
