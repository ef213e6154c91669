//! Typed configuration, read once from the environment at start-up.
//!
//! AWS endpoints, region and credentials come from the standard SDK
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the same binary runs
//! on AWS and against the local stand-ins without knowing which.

use std::fmt;
use std::time::Duration;

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself; call only where it is compared or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything the lambdas and the local runner read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the single DynamoDB table (template.yaml `Table`).
    pub table_name: String,
    /// `DELIVERY_QUEUE_URL`: one message per delivery (template.yaml `DeliveryQueue`).
    pub delivery_queue_url: String,
    /// `SLOW_DELIVERY_QUEUE_URL`: the slow lane, deliveries to endpoints that
    /// recently went unanswered (template.yaml `SlowDeliveryQueue`). Without
    /// it every delivery stays in one lane.
    pub slow_delivery_queue_url: Option<String>,
    /// `DELIVERY_LANE`: which lane this deliver function serves (`fast`, the
    /// default, or `slow`).
    pub delivery_lane: crate::delivery::Lane,
    /// `DELIVERY_DLQ_URL`: where the deliver lambda moves messages it cannot parse.
    pub delivery_dlq_url: Option<String>,
    /// `EVENTS_QUEUE_URL`: pipeline events, one per message (template.yaml `EventsQueue`).
    pub events_queue_url: Option<String>,
    /// `EVENTS_DLQ_URL`: where malformed pipeline messages are moved.
    pub events_dlq_url: Option<String>,
    /// Where the admin keys come from: `ADMIN_KEY_SECRET_ID` (a Secrets
    /// Manager secret, re-read every `ADMIN_KEY_REFRESH_SECONDS`, default
    /// 300), or else `ADMIN_API_KEY` (plus `ADMIN_API_KEY_PREVIOUS` during a
    /// rotation), each 16 to 256 characters. See [`crate::admin_keys`].
    pub admin_keys: AdminKeySource,
    /// `ALLOW_PRIVATE_TARGETS` (default false): let postbacks reach loopback and
    /// private addresses. Only the local runner and tests turn it on.
    pub allow_private_targets: bool,
    /// `SEND_NOWHERE` (default false): refuse every outgoing postback as
    /// blocked, before any DNS lookup or connection. The contract fuzz run of
    /// `make test` turns it on, so that the endpoint URLs it makes up are
    /// never contacted; nothing else should.
    pub send_nowhere: bool,
    /// `METER_CAPACITY` (default false): ask DynamoDB for the capacity every
    /// request consumes (`ReturnConsumedCapacity: INDEXES`) and add it up, with
    /// SQS's billed 64 KiB chunks ([`crate::metrics`]). `make bench` turns it on.
    pub meter_capacity: bool,
    /// `COMPACT_ITEMS` (default true): write events, transactions and
    /// deliveries with short attribute names and without the values they
    /// repeat (`store/compact.rs`), and a new transaction in its first
    /// event's item (`Transaction::first_event`). Items are read in either
    /// layout; `false` writes the long one, which versions without this
    /// setting read: the first deploy of an upgrade from those sets it
    /// (README, Upgrading).
    pub compact_items: bool,
    /// `CONFIG_CACHE_SECONDS` (default 30): how long a warm process reuses offers,
    /// partners and endpoints it has read. Writes made by the same process are
    /// seen at once; writes made elsewhere within this many seconds.
    pub config_cache_ttl: Duration,
    /// `AWS_ATTEMPT_TIMEOUT_MS` (default 3000): one DynamoDB or SQS attempt.
    /// The SDK has no timeout of its own: without one a hung store would hang
    /// every request until the Lambda itself timed out.
    pub aws_attempt_timeout: Duration,
    /// `AWS_OPERATION_TIMEOUT_MS` (default 8000): one call with its SDK retries.
    pub aws_operation_timeout: Duration,
    /// `RETENTION_DAYS` (unset: kept forever; the template sets 400): events,
    /// transactions and deliveries expire by DynamoDB TTL this many days
    /// after they were written. At least 30, longer than any retry schedule.
    pub retention_days: Option<u32>,
    /// `SECRETS_KEY_ID`: the KMS key endpoint secrets are sealed with (see
    /// [`crate::sealing`]); unset, they are stored as given (local use).
    pub secrets_key_id: Option<String>,
}

/// The shortest retention accepted: a delivery must outlive its schedule.
pub const MIN_RETENTION_DAYS: u32 = 30;

/// Where the admin keys are read from.
#[derive(Debug, Clone)]
pub enum AdminKeySource {
    /// Keys given in the environment (local use, tests).
    Static(Vec<Secret>),
    /// A Secrets Manager secret, re-read every `refresh`.
    SecretsManager {
        secret_id: String,
        refresh: Duration,
    },
    /// None: the workers, which authenticate nobody. The API refuses to
    /// start this way ([`Config::require_admin_keys`]).
    None,
}

/// Minimum length of the admin key, so that a placeholder cannot go live.
pub const MIN_ADMIN_KEY_LEN: usize = 16;
/// Maximum length of the admin key (longer bearer keys are refused unread).
pub const MAX_ADMIN_KEY_LEN: usize = 256;

impl Config {
    /// The API authenticates the admin: it must have a key source.
    pub fn require_admin_keys(&self) -> anyhow::Result<()> {
        match self.admin_keys {
            AdminKeySource::None => anyhow::bail!(
                "environment variable ADMIN_KEY_SECRET_ID (or, locally, ADMIN_API_KEY) is required"
            ),
            _ => Ok(()),
        }
    }

    /// Reads and checks the configuration; the error names the variable at fault.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same as [`Config::from_env`] over any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let required = |k: &str| {
            get(k)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!("environment variable {k} is required"))
        };
        let optional = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let admin_keys = match optional("ADMIN_KEY_SECRET_ID") {
            Some(secret_id) => AdminKeySource::SecretsManager {
                secret_id,
                refresh: Duration::from_secs(match optional("ADMIN_KEY_REFRESH_SECONDS") {
                    None => 300,
                    Some(v) => v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        anyhow::anyhow!(
                            "ADMIN_KEY_REFRESH_SECONDS must be a positive number of seconds"
                        )
                    })?,
                }),
            },
            None => match optional("ADMIN_API_KEY") {
                None => AdminKeySource::None,
                Some(admin) => {
                    let mut keys = vec![("ADMIN_API_KEY", admin)];
                    if let Some(previous) = optional("ADMIN_API_KEY_PREVIOUS") {
                        keys.push(("ADMIN_API_KEY_PREVIOUS", previous));
                    }
                    for (name, key) in &keys {
                        if !(MIN_ADMIN_KEY_LEN..=MAX_ADMIN_KEY_LEN).contains(&key.len()) {
                            anyhow::bail!("{name} must be at least {MIN_ADMIN_KEY_LEN} and at most {MAX_ADMIN_KEY_LEN} characters");
                        }
                    }
                    AdminKeySource::Static(keys.into_iter().map(|(_, k)| Secret::new(k)).collect())
                }
            },
        };
        let flag = |k: &str, default: bool| -> anyhow::Result<bool> {
            match optional(k).as_deref() {
                None => Ok(default),
                Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") => Ok(true),
                Some(other) => anyhow::bail!("{k} must be true or false, not {other:?}"),
            }
        };
        let allow_private_targets = flag("ALLOW_PRIVATE_TARGETS", false)?;
        let send_nowhere = flag("SEND_NOWHERE", false)?;
        let meter_capacity = flag("METER_CAPACITY", false)?;
        let compact_items = flag("COMPACT_ITEMS", true)?;
        let config_cache_ttl = match optional("CONFIG_CACHE_SECONDS") {
            None => Duration::from_secs(30),
            Some(v) => Duration::from_secs(v.parse().map_err(|_| {
                anyhow::anyhow!("CONFIG_CACHE_SECONDS must be a whole number of seconds")
            })?),
        };
        let millis = |k: &str, default: u64| -> anyhow::Result<Duration> {
            match optional(k) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        anyhow::anyhow!("{k} must be a positive number of milliseconds")
                    }),
            }
        };
        let retention_days = match optional("RETENTION_DAYS") {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|d| *d >= MIN_RETENTION_DAYS)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "RETENTION_DAYS must be a whole number of days, at least {MIN_RETENTION_DAYS}"
                        )
                    })?,
            ),
        };
        Ok(Config {
            retention_days,
            secrets_key_id: optional("SECRETS_KEY_ID"),
            aws_attempt_timeout: millis("AWS_ATTEMPT_TIMEOUT_MS", 3_000)?,
            aws_operation_timeout: millis("AWS_OPERATION_TIMEOUT_MS", 8_000)?,
            table_name: required("TABLE_NAME")?,
            delivery_queue_url: required("DELIVERY_QUEUE_URL")?,
            slow_delivery_queue_url: optional("SLOW_DELIVERY_QUEUE_URL"),
            delivery_lane: match optional("DELIVERY_LANE").as_deref() {
                None | Some("fast") => crate::delivery::Lane::Fast,
                Some("slow") => crate::delivery::Lane::Slow,
                Some(other) => {
                    anyhow::bail!("DELIVERY_LANE must be `fast` or `slow`, not `{other}`")
                }
            },
            delivery_dlq_url: optional("DELIVERY_DLQ_URL"),
            events_queue_url: optional("EVENTS_QUEUE_URL"),
            events_dlq_url: optional("EVENTS_DLQ_URL"),
            admin_keys,
            allow_private_targets,
            send_nowhere,
            meter_capacity,
            compact_items,
            config_cache_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        ("TABLE_NAME", "t"),
        ("DELIVERY_QUEUE_URL", "http://q"),
        ("ADMIN_API_KEY", "0123456789abcdef"),
    ];

    #[test]
    fn a_complete_environment_is_read_with_defaults() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert_eq!(c.table_name, "t");
        assert!(!c.allow_private_targets);
        assert_eq!(c.config_cache_ttl, Duration::from_secs(30));
        assert!(c.compact_items);
        let long = Config::from_lookup(env(&[BASE[0], BASE[1], ("COMPACT_ITEMS", "false")]));
        assert!(!long.unwrap().compact_items);
        let err = Config::from_lookup(env(&[BASE[0], BASE[1], ("COMPACT_ITEMS", "yes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("COMPACT_ITEMS"), "{err}");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = Config::from_lookup(env(&BASE[..1]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DELIVERY_QUEUE_URL"), "{err}");
        // The workers need no admin key; the API names what it lacks.
        let workers = Config::from_lookup(env(&BASE[..2])).unwrap();
        let err = workers.require_admin_keys().unwrap_err().to_string();
        assert!(err.contains("ADMIN_KEY_SECRET_ID"), "{err}");
        assert!(Config::from_lookup(env(&BASE))
            .unwrap()
            .require_admin_keys()
            .is_ok());
    }

    #[test]
    fn a_short_admin_key_is_refused() {
        let err = Config::from_lookup(env(&[BASE[0], BASE[1], ("ADMIN_API_KEY", "short")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }
}
