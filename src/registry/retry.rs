//! When to try a request again, and how long to wait: exponential backoff with jitter for
//! transient failures (dropped connections, timeouts, 408, 429, 5xx), the registry's
//! `Retry-After` when it gives one, all within the deadline of the whole push.

use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Kind, Result};
use crate::units::human_duration;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A registry asking for more than this is waited for this long, then asked again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Policy {
    /// Retries after the first attempt.
    pub retries: u32,
    timeout: Duration,
    deadline: Instant,
}

impl Policy {
    /// `timeout` is what `deadline` was computed from, for messages.
    pub fn new(retries: u32, timeout: Duration, deadline: Instant) -> Policy {
        Policy {
            retries,
            timeout,
            deadline,
        }
    }

    /// Time left for the whole push, or None when it is up.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    pub fn timed_out(&self, what: &str) -> Error {
        Error::new(
            Kind::Timeout,
            format!(
                "{what}: timed out: the push took longer than --timeout {}",
                human_duration(self.timeout)
            ),
        )
    }

    /// Runs a step (one request, or a whole blob upload) again while it fails transiently.
    /// A failure the retries did not cure comes back spent, so that an enclosing step does not
    /// retry it again: `--retries N` is N retries of a request, not N of each layer.
    pub fn retrying<T>(&self, what: &str, mut step: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            match step() {
                Err(e) if e.is_transient() => {
                    if !self.again(attempt, e.retry_after(), what, &e.to_string())? {
                        return Err(e.spent());
                    }
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// After failed attempt `attempt` (1 for the first): gives up (returns false) when no
    /// retry is left, else logs one line, waits and returns true. Fails with a timeout when
    /// the wait would end past the deadline.
    pub fn again(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        what: &str,
        why: &str,
    ) -> Result<bool> {
        if attempt > self.retries {
            return Ok(false);
        }
        let wait = retry_after
            .map(|d| d.min(MAX_RETRY_AFTER))
            .unwrap_or_else(|| backoff(attempt));
        match self.remaining() {
            Some(left) if left > wait => {}
            _ => return Err(self.timed_out(what)),
        }
        log::warn!(
            "retry: {why}; attempt {} of {} in {}",
            attempt + 1,
            self.retries + 1,
            human_duration(wait)
        );
        std::thread::sleep(wait);
        Ok(true)
    }
}

/// `FIRST_BACKOFF` doubled for each failed attempt, capped, with ±25% jitter so that many
/// clients failing together do not come back together.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(0.75 + 0.5 * jitter())
}

/// A number in [0, 1) that differs from call to call; randomness good enough for spreading
/// retries, with no crate and no global state.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(nanos) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        for (attempt, base_ms) in [
            (1, 500.0),
            (2, 1000.0),
            (3, 2000.0),
            (4, 4000.0),
            (9, 10_000.0),
        ] {
            let ms = backoff(attempt).as_secs_f64() * 1000.0;
            assert!(
                ms >= base_ms * 0.75 && ms <= base_ms * 1.25,
                "attempt {attempt}: {ms} ms"
            );
        }
    }

    #[test]
    fn no_retry_left_or_no_time_left() {
        let policy = Policy::new(
            1,
            Duration::from_secs(60),
            Instant::now() + Duration::from_secs(60),
        );
        assert!(!policy.again(2, None, "x", "y").unwrap());
        let policy = Policy::new(
            3,
            Duration::from_millis(100),
            Instant::now() + Duration::from_millis(100),
        );
        let err = policy
            .again(1, Some(Duration::from_secs(5)), "pushing", "503")
            .unwrap_err();
        assert_eq!(err.kind(), Kind::Timeout);
        assert_eq!(
            err.to_string(),
            "pushing: timed out: the push took longer than --timeout 100 ms"
        );
    }
}
