//! Exponential backoff with full jitter, capped.

use std::time::Duration;

use rand::Rng;

/// Delays between retries: random in `[base, min(cap, base * 2^n)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    base: Duration,
    /// Largest delay.
    cap: Duration,
    /// Retries since the last success.
    attempt: u32,
}

impl Backoff {
    /// A backoff from `base` up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling.saturating_sub(self.base).as_millis() as u64;
        self.base + Duration::from_millis(rand::rng().random_range(0..=span))
    }

    /// Retries since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A delay of `base` plus up to `spread` of jitter.
pub fn jittered(base: Duration, spread: Duration) -> Duration {
    base + Duration::from_millis(rand::rng().random_range(0..=spread.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_stays_capped() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..40 {
            let delay = backoff.next_delay();
            assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_secs(2));
        }
        assert_eq!(backoff.attempts(), 40);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(200));
    }
}
