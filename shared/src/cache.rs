//! A small time-bounded cache for configuration (offers, partners, endpoints).
//!
//! Why: an advertiser postback must cost one read, one write and one send. The
//! click is read every time; the offer and the partner's endpoints change
//! rarely and are reused by a warm process for `CONFIG_CACHE_SECONDS`. Writes
//! through the same process invalidate their entry at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries older than the TTL are reloaded; a TTL of zero disables caching.
pub struct TtlCache<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<V>)>>,
}

impl<V> TtlCache<V> {
    /// An empty cache.
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The fresh value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Stores `value` under `key` and returns it shared.
    pub fn put(&self, key: &str, value: V) -> Arc<V> {
        let value = Arc::new(value);
        if !self.ttl.is_zero() {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            // Bound memory: a warm process sees few offers and partners, but never grow without limit.
            if entries.len() > 10_000 {
                entries.clear();
            }
            entries.insert(key.to_string(), (Instant::now(), value.clone()));
        }
        value
    }

    /// Forgets `key` (after a write).
    pub fn invalidate(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_reused_until_invalidated() {
        let c = TtlCache::new(Duration::from_secs(60));
        c.put("a", 1);
        assert_eq!(c.get("a").as_deref(), Some(&1));
        c.invalidate("a");
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let c = TtlCache::new(Duration::ZERO);
        c.put("a", 1);
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn entries_expire() {
        let c = TtlCache::new(Duration::from_millis(1));
        c.put("a", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get("a"), None);
    }
}
