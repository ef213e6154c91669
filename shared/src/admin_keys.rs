//! The admin key(s). In AWS they live in a Secrets Manager secret
//! (`ADMIN_KEY_SECRET_ID`), read at cold start and again every
//! `ADMIN_KEY_REFRESH_SECONDS` (default 300), so a rotation needs no deploy.
//! The secret holds `{"current": "...", "previous": "..."}`: both are valid
//! while a rotation is under way; dropping `previous` ends it (see the
//! README's "Rotating the admin key"). Locally, `ADMIN_API_KEY` (and
//! optionally `ADMIN_API_KEY_PREVIOUS`) may stand in for the secret.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::auth::constant_time_eq;
use crate::config::{AdminKeySource, Secret, MAX_ADMIN_KEY_LEN, MIN_ADMIN_KEY_LEN};

/// After a failed refresh, the keys in hand are used this long before the
/// next try (a Secrets Manager outage must not lock the admin out, nor be
/// hammered by every request).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The admin keys of this process.
pub struct AdminKeys {
    source: AdminKeySource,
    client: Option<aws_sdk_secretsmanager::Client>,
    state: RwLock<State>,
}

struct State {
    keys: Vec<Secret>,
    next_refresh: Instant,
}

impl AdminKeys {
    /// Loads the keys once. A secret that cannot be read or holds no valid
    /// key fails the cold start, with the reason: better no function than an
    /// API nobody can administer.
    pub async fn load(
        source: AdminKeySource,
        client: Option<aws_sdk_secretsmanager::Client>,
    ) -> anyhow::Result<Self> {
        let keys = match &source {
            AdminKeySource::Static(keys) => keys.clone(),
            AdminKeySource::None => Vec::new(),
            AdminKeySource::SecretsManager { secret_id, .. } => {
                let client = client
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("no Secrets Manager client"))?;
                fetch(client, secret_id).await?
            }
        };
        let next_refresh = Instant::now() + refresh_every(&source);
        Ok(AdminKeys {
            source,
            client,
            state: RwLock::new(State { keys, next_refresh }),
        })
    }

    /// No admin key at all (the workers', which never check one).
    pub fn none() -> Self {
        AdminKeys {
            source: AdminKeySource::None,
            client: None,
            state: RwLock::new(State {
                keys: Vec::new(),
                next_refresh: Instant::now(),
            }),
        }
    }

    /// Whether `key` is one of the admin keys (compared in constant time).
    pub async fn matches(&self, key: &str) -> bool {
        self.refresh_if_due().await;
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .keys
            .iter()
            .fold(false, |found, k| found | constant_time_eq(key, k.expose()))
    }

    async fn refresh_if_due(&self) {
        let AdminKeySource::SecretsManager { secret_id, .. } = &self.source else {
            return;
        };
        let due = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            Instant::now() >= state.next_refresh
        };
        let Some(client) = self.client.as_ref().filter(|_| due) else {
            return;
        };
        let fetched = fetch(client, secret_id).await;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(keys) => {
                if keys != state.keys {
                    tracing::info!(keys = keys.len(), "admin keys changed");
                }
                state.keys = keys;
                state.next_refresh = Instant::now() + refresh_every(&self.source);
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "admin keys not refreshed; keeping the ones in hand"
                );
                state.next_refresh = Instant::now() + RETRY_AFTER_FAILURE;
            }
        }
    }
}

fn refresh_every(source: &AdminKeySource) -> Duration {
    match source {
        AdminKeySource::Static(_) | AdminKeySource::None => Duration::MAX / 4,
        AdminKeySource::SecretsManager { refresh, .. } => *refresh,
    }
}

async fn fetch(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> anyhow::Result<Vec<Secret>> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            anyhow::Error::from(crate::error::unavailable("reading the admin key secret")(e))
        })?;
    let value = out
        .secret_string()
        .ok_or_else(|| anyhow::anyhow!("the admin key secret has no string value"))?;
    parse_secret(value).map_err(|e| anyhow::anyhow!("the admin key secret {e}"))
}

/// The keys in a secret's value: `{"current": K, "previous": K}` (previous
/// optional), or a bare key. Each must be 16 to 256 characters.
pub fn parse_secret(value: &str) -> Result<Vec<Secret>, String> {
    let trimmed = value.trim();
    let keys: Vec<String> = if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|_| "is not valid JSON".to_string())?;
        let current = v
            .get("current")
            .and_then(|c| c.as_str())
            .ok_or_else(|| "has no string `current`".to_string())?;
        let mut keys = vec![current.to_string()];
        match v.get("previous") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(p)) if !p.is_empty() => keys.push(p.clone()),
            Some(serde_json::Value::String(_)) => {}
            Some(_) => return Err("has a `previous` that is not a string".into()),
        }
        keys
    } else {
        vec![trimmed.to_string()]
    };
    for k in &keys {
        if !(MIN_ADMIN_KEY_LEN..=MAX_ADMIN_KEY_LEN).contains(&k.len()) {
            return Err(format!(
                "holds a key that is not {MIN_ADMIN_KEY_LEN} to {MAX_ADMIN_KEY_LEN} characters long"
            ));
        }
    }
    Ok(keys.into_iter().map(Secret::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_holds_a_current_and_maybe_a_previous_key() {
        let keys =
            parse_secret(r#"{"current":"new-key-0123456789","previous":"old-key-0123456789"}"#)
                .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expose(), "new-key-0123456789");
        assert_eq!(
            parse_secret(r#"{"current":"new-key-0123456789","previous":null}"#)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_secret("  bare-key-0123456789\n").unwrap()[0].expose(),
            "bare-key-0123456789"
        );
    }

    #[test]
    fn a_bad_secret_is_refused_with_the_reason_and_never_its_value() {
        for (value, reason) in [
            (
                r#"{"previous":"old-key-0123456789"}"#,
                "no string `current`",
            ),
            (r#"{"current":"short"}"#, "16 to 256"),
            ("short", "16 to 256"),
            (
                r#"{"current":"new-key-0123456789","previous":5}"#,
                "not a string",
            ),
            ("{not json", "not valid JSON"),
        ] {
            let e = parse_secret(value).unwrap_err();
            assert!(e.contains(reason), "{value}: {e}");
            assert!(!e.contains("0123456789"), "the error shows no key: {e}");
        }
    }

    #[tokio::test]
    async fn static_keys_match_in_constant_time_and_nothing_else_does() {
        let keys = AdminKeys::load(
            AdminKeySource::Static(vec![
                Secret::new("new-key-0123456789"),
                Secret::new("old-key-0123456789"),
            ]),
            None,
        )
        .await
        .unwrap();
        assert!(keys.matches("new-key-0123456789").await);
        assert!(keys.matches("old-key-0123456789").await);
        assert!(!keys.matches("new-key-012345678").await);
        assert!(!keys.matches("").await);
    }
}
