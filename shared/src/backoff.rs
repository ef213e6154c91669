//! Brief retries of a store or queue call that matters (recording an attempt,
//! changing a message's visibility, deleting what a local poll handled). The
//! SDK retries each call too; this rides out a slightly longer blip.

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
}
