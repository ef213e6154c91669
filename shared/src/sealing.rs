//! Field-level encryption of the endpoint secrets the service must be able to
//! send (signing secrets, basic-auth passwords and tokens, secret header
//! values): KMS envelope encryption with AES-256-GCM.
//!
//! Why field-level and not only the table's encryption at rest: anyone with
//! `dynamodb:GetItem`/`Scan`, a PITR export or a backup reads the table's
//! items in clear; a sealed field also needs `kms:Decrypt` on our key, which
//! only the functions' roles have, and every use of it is in CloudTrail.
//!
//! How: a process asks KMS for a data key (`GenerateDataKey`, customer
//! managed key `SECRETS_KEY_ID`) and seals with it for up to
//! [`DATA_KEY_LIFETIME`]; each sealed value carries the data key encrypted by
//! KMS, so any function with `kms:Decrypt` opens it, asking KMS once per data
//! key and keeping the answer (the AWS Encryption SDK's caching, without its
//! weight). The associated data binds a value to its partner, endpoint and
//! field: a sealed value copied onto another endpoint does not open.
//!
//! Stored form: `enc:v1:<encrypted data key>:<nonce>:<ciphertext>`, each
//! base64url. A value without the prefix was written before sealing existed:
//! it is read as it is and sealed at the endpoint's next write. Without
//! `SECRETS_KEY_ID` (the local runner without KMS), values are stored as
//! given, except that one which itself looks sealed (or escaped) is stored
//! as `plain:<value>`.
//!
//! What a partner sends is always input: [`Sealer::seal`] seals every value,
//! whatever it looks like (a secret spelled `enc:v1:…` is sealed like any
//! other), so no stored value is ever taken from the caller as sealed.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::Endpoint;
use crate::error::{unavailable, Error, Result};
use crate::template::Template;

/// Prefix of a sealed value.
pub const SEALED_PREFIX: &str = "enc:v1:";
/// Prefix of a value stored in clear (sealing off) that would otherwise
/// read as sealed or escaped.
pub const PLAIN_PREFIX: &str = "plain:";
/// How long one data key seals before a new one is asked for.
pub const DATA_KEY_LIFETIME: Duration = Duration::from_secs(300);
/// Most opened data keys kept by one process.
const MAX_OPENED_KEYS: usize = 1024;

/// A plaintext data key and its KMS-encrypted form.
#[derive(Clone)]
pub struct DataKey {
    plaintext: Arc<[u8; 32]>,
    encrypted: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl DataKey {
    /// A data key from its parts (KMS's answer, or a test's).
    pub fn new(plaintext: &[u8], encrypted: Vec<u8>) -> Option<Self> {
        let key: [u8; 32] = plaintext.try_into().ok()?;
        Some(DataKey {
            plaintext: Arc::new(key),
            encrypted,
        })
    }
}

/// The associated data of one field of one endpoint.
pub fn field_aad(partner_id: &str, endpoint_id: &str, field: &str) -> String {
    format!("postback-endpoint:v1|{partner_id}|{endpoint_id}|{field}")
}

/// Seals `plaintext` with `key`, bound to `aad` (pure; the nonce is random).
pub fn seal_with(key: &DataKey, plaintext: &str, aad: &str) -> Result<String> {
    let cipher = Aes256Gcm::new_from_slice(key.plaintext.as_slice())
        .map_err(|e| Error::Internal(anyhow::anyhow!("data key: {e}")))?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::Internal(anyhow::anyhow!("random nonce: {e}")))?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| Error::Internal(anyhow::anyhow!("sealing failed")))?;
    Ok(format!(
        "{SEALED_PREFIX}{}:{}:{}",
        B64.encode(&key.encrypted),
        B64.encode(nonce),
        B64.encode(sealed)
    ))
}

/// The parts of a sealed value: encrypted data key, nonce, ciphertext.
fn parts(sealed: &str) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let rest = sealed.strip_prefix(SEALED_PREFIX)?;
    let mut it = rest.split(':');
    let (edk, nonce, ct) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let nonce = B64.decode(nonce).ok().filter(|n| n.len() == 12)?;
    Some((B64.decode(edk).ok()?, nonce, B64.decode(ct).ok()?))
}

/// Opens a sealed value with its (already decrypted) data key (pure).
pub fn open_with(key: &DataKey, sealed: &str, aad: &str) -> Result<String> {
    let (_, nonce, ct) = parts(sealed).ok_or_else(malformed)?;
    let cipher = Aes256Gcm::new_from_slice(key.plaintext.as_slice())
        .map_err(|e| Error::Internal(anyhow::anyhow!("data key: {e}")))?;
    let plain = cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "a sealed endpoint secret did not open (tampered, or copied from another endpoint)"
            ))
        })?;
    String::from_utf8(plain).map_err(|_| malformed())
}

fn malformed() -> Error {
    Error::Internal(anyhow::anyhow!("a sealed endpoint secret is malformed"))
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Seals and opens endpoint secrets for one process.
pub struct Sealer {
    kms: Option<(aws_sdk_kms::Client, String)>,
    /// The data key this process seals with, and when it was made.
    sealing: tokio::sync::Mutex<Option<(DataKey, Instant)>>,
    /// Data keys already opened, by their encrypted form.
    opened: Mutex<HashMap<Vec<u8>, DataKey>>,
}

impl Sealer {
    /// With a KMS key (`SECRETS_KEY_ID`), or none (values stored as given).
    pub fn new(kms: Option<(aws_sdk_kms::Client, String)>) -> Self {
        Sealer {
            kms,
            sealing: tokio::sync::Mutex::new(None),
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// Whether values are sealed.
    pub fn enabled(&self) -> bool {
        self.kms.is_some()
    }

    async fn sealing_key(&self) -> Result<Option<DataKey>> {
        let Some((client, key_id)) = &self.kms else {
            return Ok(None);
        };
        let mut current = self.sealing.lock().await;
        if let Some((key, made)) = current.as_ref() {
            if made.elapsed() < DATA_KEY_LIFETIME {
                return Ok(Some(key.clone()));
            }
        }
        let out = client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await
            .map_err(unavailable("asking KMS for a data key"))?;
        let key = match (out.plaintext(), out.ciphertext_blob()) {
            (Some(p), Some(c)) => DataKey::new(p.as_ref(), c.as_ref().to_vec()),
            _ => None,
        }
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("KMS returned no usable data key")))?;
        self.remember(key.clone());
        *current = Some((key.clone(), Instant::now()));
        Ok(Some(key))
    }

    fn remember(&self, key: DataKey) {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if opened.len() >= MAX_OPENED_KEYS {
            opened.clear();
        }
        opened.insert(key.encrypted.clone(), key);
    }

    async fn opening_key(&self, encrypted: &[u8]) -> Result<DataKey> {
        if let Some(k) = self
            .opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(encrypted)
        {
            return Ok(k.clone());
        }
        let Some((client, _)) = &self.kms else {
            return Err(Error::Internal(anyhow::anyhow!(
                "an endpoint secret is sealed but no SECRETS_KEY_ID is configured"
            )));
        };
        let out = client
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(encrypted.to_vec()))
            .send()
            .await
            .map_err(unavailable("opening a data key with KMS"))?;
        let key = out
            .plaintext()
            .and_then(|p| DataKey::new(p.as_ref(), encrypted.to_vec()))
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("KMS returned no usable data key")))?;
        self.remember(key.clone());
        Ok(key)
    }

    /// Seals one value, whatever it looks like (sealing off: stored as
    /// given, escaped when it would read as sealed).
    pub async fn seal(&self, plaintext: &str, aad: &str) -> Result<String> {
        match self.sealing_key().await? {
            Some(key) => seal_with(&key, plaintext, aad),
            None if is_sealed(plaintext) || plaintext.starts_with(PLAIN_PREFIX) => {
                Ok(format!("{PLAIN_PREFIX}{plaintext}"))
            }
            None => Ok(plaintext.to_string()),
        }
    }

    /// Opens one value (a value that is not sealed is returned as it is).
    pub async fn open(&self, stored: &str, aad: &str) -> Result<String> {
        if let Some(clear) = stored.strip_prefix(PLAIN_PREFIX) {
            return Ok(clear.to_string());
        }
        if !is_sealed(stored) {
            return Ok(stored.to_string());
        }
        let (edk, _, _) = parts(stored).ok_or_else(malformed)?;
        let key = self.opening_key(&edk).await?;
        open_with(&key, stored, aad)
    }

    /// The endpoint as stored: its secrets sealed.
    pub async fn seal_endpoint(&self, e: &Endpoint) -> Result<Endpoint> {
        let mut out = e.clone();
        self.each_secret(&mut out, true).await?;
        Ok(out)
    }

    /// The endpoint as used: its secrets opened.
    pub async fn open_endpoint(&self, mut e: Endpoint) -> Result<Endpoint> {
        self.each_secret(&mut e, false).await?;
        Ok(e)
    }

    async fn each_secret(&self, e: &mut Endpoint, seal: bool) -> Result<()> {
        let (pid, eid) = (e.partner_id.clone(), e.id.clone());
        let apply = |value: String, field: String| {
            let aad = field_aad(&pid, &eid, &field);
            async move {
                if seal {
                    self.seal(&value, &aad).await
                } else {
                    self.open(&value, &aad).await
                }
            }
        };
        if let Some(s) = e.secret.take() {
            e.secret = Some(apply(s, "secret".into()).await?);
        }
        if let Some(auth) = e.basic_auth.as_mut() {
            if !auth.password.is_empty() {
                auth.password = apply(
                    std::mem::take(&mut auth.password),
                    "basic_auth.password".into(),
                )
                .await?;
            }
            if let Some(t) = auth.token.take() {
                auth.token = Some(apply(t, "basic_auth.token".into()).await?);
            }
        }
        // Each secret header under the name it is stored by, whatever the
        // case `secret_headers` spells it in.
        let secret: Vec<String> = e
            .headers
            .keys()
            .filter(|k| e.is_secret_header(k))
            .cloned()
            .collect();
        for name in secret {
            if let Some(v) = e.headers.remove(&name) {
                let done = apply(v.source().to_string(), format!("headers.{name}")).await?;
                // Sealed, the value is opaque text; opened, it is the
                // template it was saved as.
                let value = if seal {
                    Template::literal(&done)
                } else {
                    Template::parse(&done).map_err(|e| {
                        Error::Internal(anyhow::anyhow!(
                            "secret header `{name}` opens to no template: {e}"
                        ))
                    })?
                };
                e.headers.insert(name, value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DataKey {
        DataKey::new(&[byte; 32], vec![byte, 1, 2, 3]).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_place() {
        let k = key(7);
        let aad = field_aad("p1", "ep1", "secret");
        let sealed = seal_with(&k, "whsec_top-secret", &aad).unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("top-secret"));
        assert_eq!(open_with(&k, &sealed, &aad).unwrap(), "whsec_top-secret");
        // Another endpoint's, another field's, another key: refused.
        assert!(open_with(&k, &sealed, &field_aad("p1", "ep2", "secret")).is_err());
        assert!(open_with(&k, &sealed, &field_aad("p1", "ep1", "basic_auth.password")).is_err());
        assert!(open_with(&key(8), &sealed, &aad).is_err());
        // Tampered ciphertext: refused.
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(open_with(&k, &tampered, &aad).is_err());
    }

    #[test]
    fn every_sealing_uses_a_fresh_nonce() {
        let k = key(7);
        let aad = field_aad("p", "e", "secret");
        assert_ne!(
            seal_with(&k, "same", &aad).unwrap(),
            seal_with(&k, "same", &aad).unwrap()
        );
    }

    #[tokio::test]
    async fn without_a_kms_key_values_pass_as_given_and_sealed_ones_do_not_open() {
        let sealer = Sealer::new(None);
        assert_eq!(sealer.seal("plain", "aad").await.unwrap(), "plain");
        assert_eq!(sealer.open("plain", "aad").await.unwrap(), "plain");
        let sealed = seal_with(&key(1), "x", "aad").unwrap();
        let e = sealer.open(&sealed, "aad").await.unwrap_err();
        assert!(e.detail().contains("SECRETS_KEY_ID"), "{}", e.detail());
    }

    #[tokio::test]
    async fn a_value_spelled_like_a_sealed_one_is_input_like_any_other() {
        let sealer = Sealer::new(None);
        for v in ["enc:v1:a:b:c", "plain:x", "enc:v1:"] {
            let stored = sealer.seal(v, "aad").await.unwrap();
            assert_ne!(stored, v, "stored as if it were sealed");
            assert_eq!(sealer.open(&stored, "aad").await.unwrap(), v);
        }
    }

    #[test]
    fn malformed_sealed_values_are_refused() {
        for v in [
            "enc:v1:",
            "enc:v1:a:b",
            "enc:v1:a:b:c:d",
            "enc:v1:!!:AAAA:AAAA",
        ] {
            assert!(open_with(&key(1), v, "aad").is_err(), "{v}");
        }
    }
}
