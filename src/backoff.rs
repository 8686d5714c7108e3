//! Exponential backoff with jitter between reconnection attempts.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `base` up to `cap`, each drawn at random from the upper half of
/// its range, so that many clients of a restarted relay do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first delay (before jitter).
    base: Duration,
    /// The largest delay.
    cap: Duration,
    /// Failures since the last success.
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = delay(self.base, self.cap, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Failures since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The delay after `failures` failures in a row (0 for the first retry): `base` doubled per
/// failure up to `cap`, drawn at random from the upper half of that. For callers that keep
/// the count themselves (the producer keeps one per record).
pub fn delay(base: Duration, cap: Duration, failures: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << failures.min(20))
        .min(cap.max(base));
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff.next_delay();
        assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
        for _ in 0..40 {
            assert!(backoff.next_delay() <= Duration::from_secs(2));
        }
        let late = backoff.next_delay();
        assert!(late >= Duration::from_secs(1), "{late:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
