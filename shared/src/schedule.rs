//! The retry schedule of an endpoint and the queue limits it lives within,
//! written once.

use serde::{Deserialize, Serialize};

/// The SQS limit on a message's visibility timeout: the longest single delay.
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;
/// Most attempts in a schedule; the delivery queue's `maxReceiveCount` (50) is above it.
pub const MAX_ATTEMPTS: usize = 20;
/// Longest a whole schedule may last: a day inside the delivery queue's
/// 14-day retention (template.yaml `MessageRetentionPeriod`).
pub const MAX_SCHEDULE_SECONDS: u64 = 13 * 86_400;
/// Longest delay a partner's `Retry-After` can ask for: one hour.
pub const MAX_RETRY_AFTER_SECONDS: u32 = 3_600;
/// The default schedule: attempts at 0 s, +60, +90, +120, +150, then `failed`.
pub const DEFAULT_RETRY_SCHEDULE: [u32; 5] = [0, 60, 90, 120, 150];
/// The delays before each attempt of one round: `[0, 60, 90]` means attempt 1
/// at once, attempt 2 60 s after attempt 1, attempt 3 90 s after attempt 2;
/// `[30, 60]` holds the first attempt 30 s after the event. A manual retry's
/// round starts at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RetrySchedule(Vec<u32>);

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule(DEFAULT_RETRY_SCHEDULE.to_vec())
    }
}

impl RetrySchedule {
    /// A schedule of 1 to 20 delays, each within the SQS visibility limit and
    /// the whole within the queue's retention. The error is a sentence.
    pub fn new(delays: Vec<u32>) -> Result<Self, String> {
        if delays.is_empty() || delays.len() > MAX_ATTEMPTS {
            return Err(format!("must hold 1 to {MAX_ATTEMPTS} delays"));
        }
        if delays.iter().any(|&d| d > MAX_VISIBILITY_SECONDS) {
            return Err(format!(
                "each delay must be 0 to {MAX_VISIBILITY_SECONDS} seconds"
            ));
        }
        if delays.iter().map(|&d| u64::from(d)).sum::<u64>() > MAX_SCHEDULE_SECONDS {
            return Err(format!("must fit in {MAX_SCHEDULE_SECONDS} seconds"));
        }
        Ok(RetrySchedule(delays))
    }

    /// The delays, in seconds.
    pub fn delays(&self) -> &[u32] {
        &self.0
    }

    /// Attempts in one round.
    pub fn attempts(&self) -> usize {
        self.0.len()
    }

    /// Delay in seconds before the attempt after attempt number `made` of the
    /// round (1-based), or `None` if that was the last. A `Retry-After` may
    /// lengthen the delay (up to an hour); nothing shortens it, so a 429 or a
    /// timeout never brings the next attempt forward.
    pub fn delay_after(&self, made: usize, retry_after: Option<u32>) -> Option<u32> {
        let base = *self.0.get(made)?;
        let asked = retry_after
            .map(|r| r.min(MAX_RETRY_AFTER_SECONDS))
            .unwrap_or(0);
        Some(base.max(asked).min(MAX_VISIBILITY_SECONDS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_gives_five_attempts() {
        let s = RetrySchedule::default();
        let delays: Vec<_> = (1..=5).map(|n| s.delay_after(n, None)).collect();
        assert_eq!(delays, [Some(60), Some(90), Some(120), Some(150), None]);
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_nor_extends_the_round() {
        let s = RetrySchedule::default();
        assert_eq!(s.delay_after(1, Some(300)), Some(300));
        assert_eq!(s.delay_after(1, Some(5)), Some(60));
        assert_eq!(
            s.delay_after(1, Some(999_999)),
            Some(MAX_RETRY_AFTER_SECONDS)
        );
        assert_eq!(s.delay_after(5, Some(10)), None);
    }

    #[test]
    fn schedules_outside_the_queue_limits_are_refused() {
        assert!(RetrySchedule::new(vec![]).is_err());
        assert!(RetrySchedule::new(vec![0; MAX_ATTEMPTS + 1]).is_err());
        assert!(RetrySchedule::new(vec![0, MAX_VISIBILITY_SECONDS + 1]).is_err());
        assert!(RetrySchedule::new(vec![0, MAX_VISIBILITY_SECONDS]).is_ok());
        // The longest possible schedule stays inside the queue's retention.
        assert!(RetrySchedule::new(vec![MAX_VISIBILITY_SECONDS; MAX_ATTEMPTS]).is_ok());
    }
}
