//! Retry timing, as a pure function of the endpoint's schedule and what the
//! last attempt got back.
//!
//! The schedule lists the delay before each attempt: `[0, 60, 90, 120, 150]`
//! means attempt 1 at once, attempt 2 60 s after attempt 1, and so on; after
//! the last one the delivery is `failed`. A `Retry-After` may lengthen a delay
//! (up to `MAX_RETRY_AFTER_SECONDS`); nothing ever shortens one, so a 429 or a
//! timeout never brings the next attempt forward.

/// Longest delay a partner's `Retry-After` can ask for: one hour.
pub const MAX_RETRY_AFTER_SECONDS: u32 = 3_600;
/// The SQS limit on a message's visibility timeout.
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// Delay in seconds before the attempt after attempt number `made` (1-based),
/// or `None` if `made` was the last attempt of the schedule.
pub fn next_delay(schedule: &[u32], made: usize, retry_after: Option<u32>) -> Option<u32> {
    let base = *schedule.get(made)?;
    let asked = retry_after
        .map(|r| r.min(MAX_RETRY_AFTER_SECONDS))
        .unwrap_or(0);
    Some(base.max(asked).min(MAX_VISIBILITY_SECONDS))
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<u32> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.min(u64::from(u32::MAX)) as u32);
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.with_timezone(&chrono::Utc) - now).num_seconds();
    Some(secs.clamp(0, i64::from(u32::MAX)) as u32)
}

/// Pauses between quick retries of a store or queue call that matters (about
/// 4 s in all, well inside a function's timeout; the SDK retries each call too).
pub const BRIEF_BACKOFF_MS: [u64; 4] = [250, 500, 1_000, 2_000];

/// Runs `call`, and again after each pause while it fails; the last result.
pub async fn with_backoff<T, E, F, Fut>(pauses_ms: &[u64], mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut result = call().await;
    for &pause in pauses_ms {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        result = call().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: [u32; 5] = [0, 60, 90, 120, 150];

    #[test]
    fn the_default_schedule_gives_five_attempts() {
        let delays: Vec<_> = (1..=5).map(|n| next_delay(&DEFAULT, n, None)).collect();
        assert_eq!(delays, [Some(60), Some(90), Some(120), Some(150), None]);
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens() {
        assert_eq!(next_delay(&DEFAULT, 1, Some(300)), Some(300));
        assert_eq!(next_delay(&DEFAULT, 1, Some(5)), Some(60));
        assert_eq!(
            next_delay(&DEFAULT, 1, Some(999_999)),
            Some(MAX_RETRY_AFTER_SECONDS)
        );
    }

    #[test]
    fn a_retry_after_cannot_extend_past_the_last_attempt() {
        assert_eq!(next_delay(&DEFAULT, 5, Some(10)), None);
    }

    #[tokio::test]
    async fn with_backoff_stops_at_the_first_success_and_gives_up_after_the_last_pause() {
        let calls = std::cell::Cell::new(0);
        let r: Result<u32, ()> = with_backoff(&[1, 1, 1], || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n == 2 {
                    Ok(n)
                } else {
                    Err(())
                }
            }
        })
        .await;
        assert_eq!((r, calls.get()), (Ok(2), 2));
        calls.set(0);
        let r: Result<u32, ()> = with_backoff(&[1, 1], || {
            calls.set(calls.get() + 1);
            async { Err(()) }
        })
        .await;
        assert_eq!((r, calls.get()), (Err(()), 3));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now),
            Some(120)
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
