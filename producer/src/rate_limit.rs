//! Token buckets that keep each shard under its write limits.

use std::time::{Duration, Instant};

/// How much burst a bucket allows, as time at its rate. Small, so that in any one-second
/// window a shard receives at most 5% more than its limit.
const BURST: Duration = Duration::from_millis(50);

/// A token bucket. It may go into debt by one large take (a 1 MiB record on a bucket that
/// holds 50 KiB), which then delays the next takes: the average stays at the rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second; 0 means unlimited.
    rate: f64,
    /// Most tokens held at once.
    capacity: f64,
    /// Tokens now (negative: in debt).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket with `rate` tokens per second (0: unlimited).
    pub fn new(rate: f64, now: Instant) -> Self {
        let capacity = (rate * BURST.as_secs_f64()).max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Whether `cost` can be taken now.
    pub fn can_take(&mut self, now: Instant, cost: f64) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        self.refill(now);
        self.tokens >= cost.min(self.capacity)
    }

    /// Takes `cost` (call after [`can_take`](Self::can_take) said yes).
    pub fn take(&mut self, cost: f64) {
        if self.rate != 0.0 {
            self.tokens -= cost;
        }
    }

    /// When `cost` can be taken, at the earliest.
    pub fn ready_at(&mut self, now: Instant, cost: f64) -> Instant {
        if self.rate == 0.0 {
            return now;
        }
        self.refill(now);
        let missing = cost.min(self.capacity) - self.tokens;
        if missing <= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(missing / self.rate)
        }
    }

    /// Empties the bucket after Kinesis throttled us: our idea of the shard's budget was
    /// too generous (other producers, or a hot shard), so back off for one burst.
    pub fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }
}

/// The two limits of one shard: records per second and bytes per second.
#[derive(Debug, Clone)]
pub struct ShardLimiter {
    /// Records (Kinesis records, i.e. aggregates count once).
    records: TokenBucket,
    /// Bytes of data plus partition key.
    bytes: TokenBucket,
}

impl ShardLimiter {
    /// A limiter at these rates (0: unlimited).
    pub fn new(records_per_sec: f64, bytes_per_sec: f64, now: Instant) -> Self {
        ShardLimiter {
            records: TokenBucket::new(records_per_sec, now),
            bytes: TokenBucket::new(bytes_per_sec, now),
        }
    }

    /// Takes one record of `bytes` if both buckets allow it.
    pub fn try_take(&mut self, now: Instant, bytes: usize) -> bool {
        let bytes = bytes as f64;
        if self.records.can_take(now, 1.0) && self.bytes.can_take(now, bytes) {
            self.records.take(1.0);
            self.bytes.take(bytes);
            true
        } else {
            false
        }
    }

    /// When one record of `bytes` can be taken.
    pub fn ready_at(&mut self, now: Instant, bytes: usize) -> Instant {
        self.records
            .ready_at(now, 1.0)
            .max(self.bytes.ready_at(now, bytes as f64))
    }

    /// Backs off after throttling.
    pub fn drain(&mut self, now: Instant) {
        self.records.drain(now);
        self.bytes.drain(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_over_a_second() {
        let start = Instant::now();
        let mut limiter = ShardLimiter::new(1000.0, 1_048_576.0, start);
        let mut sent = 0;
        // Simulate a greedy sender polling every millisecond for one second.
        for ms in 0..1000 {
            let now = start + Duration::from_millis(ms);
            while limiter.try_take(now, 100) {
                sent += 1;
            }
        }
        assert!((990..=1050).contains(&sent), "sent {sent}");
    }

    #[test]
    fn bytes_limit_and_debt() {
        let start = Instant::now();
        let mut limiter = ShardLimiter::new(1000.0, 1_048_576.0, start);
        assert!(limiter.try_take(start, 1_048_576));
        // In debt by almost a second's worth: the next record waits about a second.
        assert!(!limiter.try_take(start, 1));
        let ready = limiter.ready_at(start, 1);
        assert!(
            ready - start > Duration::from_millis(900),
            "{:?}",
            ready - start
        );
        assert!(limiter.try_take(ready + Duration::from_millis(1), 1));
    }

    #[test]
    fn unlimited_when_zero() {
        let now = Instant::now();
        let mut limiter = ShardLimiter::new(0.0, 0.0, now);
        for _ in 0..100_000 {
            assert!(limiter.try_take(now, 1_000_000));
        }
        assert_eq!(limiter.ready_at(now, 10), now);
    }

    #[test]
    fn drain_backs_off() {
        let now = Instant::now();
        let mut limiter = ShardLimiter::new(1000.0, 0.0, now);
        limiter.drain(now);
        assert!(!limiter.try_take(now, 1));
        assert!(limiter.ready_at(now, 1) > now);
    }
}
