//! Identifiers: one type per kind of id, and how new ones are minted.
//!
//! Every id that crosses the edge (a path, a query, a body, a queue message,
//! an item read back) is one of the types below, and its `parse` is the one
//! rule for that kind of id. Two families of rule exist, both written once
//! here and mirrored by `openapi.yaml`'s `ResourceId` and `ExternalId`:
//!
//! * **resource ids** name what this service stores (offers, partners,
//!   endpoints, keys, events, deliveries): 1 to 64 ASCII letters, digits,
//!   `_` or `-`, so they are safe in a URL path, a DynamoDB key and a CSV cell;
//! * **external ids** are minted by somebody else and only carried
//!   (an advertiser's click id as echoed back, a transaction id, a lead id):
//!   1 to 128 characters, none of them a control character, not only white
//!   space, taken exactly as sent (`"T1 "` is not `"T1"`: trimming would
//!   merge two transactions).
//!
//! On the wire each type is a plain JSON string (as `serde(transparent)`);
//! reading one back (from a body, a message or the table) checks the rule.
//!
//! Random ids come from the OS CSPRNG; event and delivery ids are derived
//! from their idempotency keys so that a retried request lands on the very
//! same items instead of creating new ones.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest resource id (offers, partners, endpoints, keys, events, deliveries).
pub const MAX_RESOURCE_ID_LEN: usize = 64;
/// Longest external id (click, transaction, lead ids).
pub const MAX_EXTERNAL_ID_LEN: usize = 128;

/// The resource-id rule: 1-64 ASCII letters, digits, `_` or `-`.
fn resource_rule(field: &str, raw: &str) -> Result<()> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_RESOURCE_ID_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("`{field}` must be 1 to {MAX_RESOURCE_ID_LEN} letters, digits, `_` or `-`"),
        ))
    }
}

/// The external-id rule: 1-128 characters, no control character, not only
/// white space.
fn external_rule(field: &str, raw: &str) -> Result<()> {
    if raw.trim().is_empty() {
        return Err(Error::invalid(
            field,
            format!("`{field}` must not be empty or only spaces"),
        ));
    }
    if raw.chars().count() > MAX_EXTERNAL_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("`{field}` is longer than {MAX_EXTERNAL_ID_LEN} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("`{field}` contains control characters"),
        ));
    }
    Ok(())
}

/// What every id type shares: its one rule, naming any field.
pub trait TypedId: Sized {
    /// The field the id is named by in errors, queries and bodies.
    const FIELD: &'static str;
    /// Checks `raw` by the id's rule; an error names `field`.
    fn parse_as(field: &str, raw: &str) -> Result<Self>;
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $rule:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The field this id is named by in errors, queries and bodies.
            pub const FIELD: &'static str = $field;

            /// Checks `raw` against this id's rule; an error names the field.
            pub fn parse(raw: &str) -> Result<Self> {
                Self::parse_as($field, raw)
            }

            /// As `parse`, naming another field in the error (a path's `{id}`).
            pub fn parse_as(field: &str, raw: &str) -> Result<Self> {
                $rule(field, raw)?;
                Ok(Self(raw.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// An id this service minted itself (already of the right form).
            #[allow(dead_code)]
            pub(crate) fn minted(id: String) -> Self {
                debug_assert!($rule($field, &id).is_ok(), "minted {} {id:?}", $field);
                Self(id)
            }
        }

        impl TypedId for $name {
            const FIELD: &'static str = $field;
            fn parse_as(field: &str, raw: &str) -> Result<Self> {
                $name::parse_as(field, raw)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let raw = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for serde_json::Value {
            fn eq(&self, other: &$name) -> bool {
                self.as_str() == Some(other.as_str())
            }
        }
    };
}

id_type!(
    /// An offer (`off_…`, or the id its creator chose).
    OfferId, "offer_id", resource_rule
);
id_type!(
    /// A partner (`prt_…`, or the id its creator chose).
    PartnerId, "partner_id", resource_rule
);
id_type!(
    /// One of a partner's postback endpoints (`ep_…`, or chosen).
    EndpointId, "endpoint_id", resource_rule
);
id_type!(
    /// One of a partner's API keys (`key_…`), as listed by the keys route.
    KeyId, "key_id", resource_rule
);
id_type!(
    /// A recorded event (`evt_…`, derived from its idempotency key).
    EventId, "event_id", resource_rule
);
id_type!(
    /// One event's delivery to one endpoint (`dlv_…`, derived).
    DeliveryId, "delivery_id", resource_rule
);
id_type!(
    /// One recovery of an endpoint's missed deliveries (`rcv_…`).
    RecoveryId, "recovery_id", resource_rule
);
id_type!(
    /// A click: minted here (26 characters), echoed back by advertisers.
    ClickId, "click_id", external_rule
);
id_type!(
    /// An advertiser's or a pipeline's transaction id.
    TransactionId, "transaction_id", external_rule
);
id_type!(
    /// A lead id from a lead marketplace's pipeline.
    LeadId, "lead_id", external_rule
);

/// Reads an optional id where `""` stood for "none" in earlier versions.
pub fn empty_as_none<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = Error>,
{
    use serde::Deserialize;
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl OfferId {
    /// A new random offer id, `off_…`.
    pub fn random() -> Self {
        Self::minted(resource_id("off"))
    }
}

impl PartnerId {
    /// A new random partner id, `prt_…`.
    pub fn random() -> Self {
        Self::minted(resource_id("prt"))
    }
}

impl EndpointId {
    /// A new random endpoint id, `ep_…`.
    pub fn random() -> Self {
        Self::minted(resource_id("ep"))
    }
}

impl KeyId {
    /// The id a key is listed by: `key_` and the start of its hash.
    pub fn of_hash(hash_hex: &str) -> Self {
        let start: String = hash_hex
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        Self::minted(format!("key_{start}"))
    }
}

impl EventId {
    /// The event id of an idempotency key (see [`derived_id`]).
    pub fn derive(parts: &[&str]) -> Self {
        Self::minted(derived_id("evt", parts))
    }

    /// A random event id with `prefix` (test sends, samples: never stored).
    pub fn random(prefix: &str) -> Self {
        Self::minted(resource_id(prefix))
    }
}

impl DeliveryId {
    /// The delivery id of an idempotency key (see [`derived_id`]).
    pub fn derive(parts: &[&str]) -> Self {
        Self::minted(derived_id("dlv", parts))
    }

    /// A random delivery id with `prefix` (test sends: never stored).
    pub fn random(prefix: &str) -> Self {
        Self::minted(resource_id(prefix))
    }
}

impl RecoveryId {
    /// A new random recovery id, `rcv_…`.
    pub fn random() -> Self {
        Self::minted(resource_id("rcv"))
    }
}

impl ClickId {
    /// A new click id: 128 random bits, 26 characters, unguessable.
    pub fn random() -> Self {
        Self::minted(click_id())
    }
}

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

/// A click id's text: 128 random bits, 26 characters, unguessable.
fn click_id() -> String {
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

/// A typed id from a literal, for tests: panics on an id that breaks the rule.
#[cfg(test)]
pub(crate) fn t<T: TypedId>(raw: &str) -> T {
    T::parse_as(T::FIELD, raw).unwrap_or_else(|e| panic!("test id {raw:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_follow_one_rule_everywhere() {
        for ok in ["off1", "p_1-x", &"a".repeat(64)] {
            assert!(OfferId::parse(ok).is_ok(), "{ok}");
            assert!(serde_json::from_value::<PartnerId>(serde_json::json!(ok)).is_ok());
        }
        for bad in ["", "a b", "a#b", "a/b", "é", &"a".repeat(65), "\u{7}"] {
            let e = OfferId::parse(bad).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field, .. } if field == "offer_id"),
                "{bad}: {e:?}"
            );
            // Read back from a body or a message: the same rule.
            assert!(serde_json::from_value::<EndpointId>(serde_json::json!(bad)).is_err());
        }
        assert!(
            matches!(KeyId::parse_as("id", "x y"), Err(Error::Invalid { field, .. }) if field == "id")
        );
    }

    #[test]
    fn external_ids_are_taken_exactly_as_sent() {
        let t = TransactionId::parse("T1 ").unwrap();
        assert_eq!(t.as_str(), "T1 ");
        assert_ne!(t, TransactionId::parse("T1").unwrap());
        assert!(TransactionId::parse("OFFER#off1#T1").is_ok());
        assert!(ClickId::parse(&"é".repeat(128)).is_ok());
        for bad in ["", " ", "\u{3000}", "a\nb", "a\u{85}b", &"x".repeat(129)] {
            assert!(ClickId::parse(bad).is_err(), "{bad:?}");
        }
        // On the wire a typed id is the plain string it holds.
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"T1 \"");
        assert_eq!(serde_json::from_str::<TransactionId>(&json).unwrap(), t);
    }

    #[test]
    fn minted_ids_follow_their_rules() {
        assert!(OfferId::parse(&OfferId::random()).is_ok());
        assert!(EventId::parse(&EventId::derive(&["a", "b"])).is_ok());
        assert!(DeliveryId::parse(&DeliveryId::derive(&["a", "b"])).is_ok());
        assert!(KeyId::parse(&KeyId::of_hash(&sha256_hex("k"))).is_ok());
        assert_eq!(ClickId::random().len(), 26);
    }

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
