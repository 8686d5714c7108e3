//! Token buckets for the per-shard throughput limits.

use std::time::{Duration, Instant};

/// The write limit of a shard in bytes per second (1 MiB).
pub(crate) const SHARD_WRITE_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;
/// The write limit of a shard in records per second.
pub(crate) const SHARD_WRITE_RECORDS_PER_SEC: f64 = 1000.0;
/// The enhanced fan-out read limit per consumer and shard in bytes per second (2 MiB).
pub(crate) const EFO_READ_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;
/// The most records a PutRecords call may carry.
pub(crate) const PUT_RECORDS_MAX_ENTRIES: usize = 500;
/// The most bytes (data and partition keys) a PutRecords call may carry (5 MiB).
pub(crate) const PUT_RECORDS_MAX_BYTES: usize = 5 * 1024 * 1024;
/// The most bytes of one record, data plus partition key (1 MiB).
pub(crate) const RECORD_MAX_BYTES: usize = 1024 * 1024;
/// The most consumers registered on one stream.
pub(crate) const CONSUMERS_PER_STREAM: usize = 20;

/// A token bucket that refills continuously up to one second's worth of tokens.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Tokens added per second, also the capacity.
    rate: f64,
    /// Tokens available now; negative while a large take is being paid off.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `rate` tokens per second.
    pub(crate) fn new(rate: f64) -> Self {
        Self {
            rate,
            tokens: rate,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// Whether `amount` tokens are available now (nothing is taken).
    pub(crate) fn has(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= amount
    }

    /// Takes `amount` tokens, going into debt if needed.
    pub(crate) fn take(&mut self, amount: f64, now: Instant) {
        self.refill(now);
        self.tokens -= amount;
    }

    /// How long until the bucket is out of debt.
    pub(crate) fn wait_until_positive(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The write limits of one shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardWriteLimit {
    /// Bytes (data plus partition key) per second.
    bytes: TokenBucket,
    /// Records per second.
    records: TokenBucket,
}

impl ShardWriteLimit {
    pub(crate) fn new() -> Self {
        Self {
            bytes: TokenBucket::new(SHARD_WRITE_BYTES_PER_SEC),
            records: TokenBucket::new(SHARD_WRITE_RECORDS_PER_SEC),
        }
    }

    /// Takes one record of `size` bytes if both limits allow it.
    pub(crate) fn try_admit(&mut self, size: usize, now: Instant) -> bool {
        let size = size as f64;
        if self.bytes.has(size, now) && self.records.has(1.0, now) {
            self.bytes.take(size, now);
            self.records.take(1.0, now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_one_second_of_records_then_refuses() {
        let mut limit = ShardWriteLimit::new();
        let now = Instant::now();
        let admitted = (0..1500).filter(|_| limit.try_admit(10, now)).count();
        assert_eq!(admitted, 1000);
        assert!(limit.try_admit(10, now + Duration::from_millis(10)));
    }

    #[test]
    fn debt_is_paid_off_at_the_rate() {
        let mut bucket = TokenBucket::new(100.0);
        let now = Instant::now();
        bucket.take(150.0, now);
        let wait = bucket.wait_until_positive(now);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
    }
}
