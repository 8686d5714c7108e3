//! The GetRecords limits of a shard, as on AWS: 5 calls per second shared by every reader of
//! the shard, and 2 MiB per second of record data returned.
//!
//! The data limit is a token bucket that a call may overdraw: AWS lets one call return up to
//! 10 MiB and then refuses calls until the shard has earned the overdraft back. So a call is
//! refused while the bucket is in debt, never because its batch might be large. Enhanced
//! fan-out reads have their own limit per consumer (`ops/subscribe.rs`) and take nothing
//! from these buckets, as on AWS.

use std::time::Instant;

use crate::error::KinesisError;
use crate::limits::TokenBucket;
use crate::reading::{Position, ReadBatch};
use crate::state::Store;

/// GetRecords calls per second and shard.
pub(crate) const GET_RECORDS_CALLS_PER_SEC: f64 = 5.0;
/// Record data GetRecords returns per second and shard (2 MiB).
pub(crate) const GET_RECORDS_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;

/// The GetRecords limits of one shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardReadLimit {
    /// Calls; one is taken per admitted call, refused calls take none.
    calls: TokenBucket,
    /// Bytes of record data returned; may go into debt.
    bytes: TokenBucket,
}

impl ShardReadLimit {
    pub(crate) fn new() -> Self {
        Self {
            calls: TokenBucket::new(GET_RECORDS_CALLS_PER_SEC),
            bytes: TokenBucket::new(GET_RECORDS_BYTES_PER_SEC),
        }
    }

    /// Takes one call if a call is left and the data bucket is not in debt.
    pub(crate) fn try_admit(&mut self, now: Instant) -> bool {
        if self.calls.has(1.0, now) && self.bytes.has(0.0, now) {
            self.calls.take(1.0, now);
            true
        } else {
            false
        }
    }

    /// Charges the data an admitted call returned, going into debt if it exceeds what is left.
    pub(crate) fn charge(&mut self, bytes: usize, now: Instant) {
        self.bytes.take(bytes as f64, now);
    }
}

/// AWS's message for a throttled GetRecords (it differs from the one for writes).
fn throttled_message(stream: &str, shard_id: &str) -> String {
    format!("Rate exceeded for Shard - 000000000000/{stream}/{shard_id}")
}

impl Store {
    /// GetRecords' read: [`Stream::read`](crate::state::Stream::read) under the shard's
    /// read limits when limits are on. Admission, read and charge happen under one lock, so
    /// concurrent readers of a shard cannot together slip past the limits.
    pub(crate) fn get_records(
        &self,
        name: &str,
        shard_id: &str,
        position: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, KinesisError> {
        let limits = self.settings().limits;
        let now = Instant::now();
        let mut inner = self.lock();
        let stream = inner.stream_mut(name)?;
        if limits && !stream.shard_mut(shard_id)?.read_limit.try_admit(now) {
            return Err(KinesisError::ProvisionedThroughputExceeded(
                throttled_message(name, shard_id),
            ));
        }
        let batch = stream.read(shard_id, position, max_records, max_bytes)?;
        if limits {
            let bytes = batch.records.iter().map(|r| r.data.len()).sum();
            stream.shard_mut(shard_id)?.read_limit.charge(bytes, now);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn five_calls_a_second_then_refused_until_refilled() {
        let mut limit = ShardReadLimit::new();
        let now = Instant::now();
        let admitted = (0..8).filter(|_| limit.try_admit(now)).count();
        assert_eq!(admitted, 5);
        assert!(!limit.try_admit(now + Duration::from_millis(100)));
        assert!(limit.try_admit(now + Duration::from_millis(250)));
    }

    #[test]
    fn a_large_read_puts_the_shard_in_debt_until_paid_off() {
        let mut limit = ShardReadLimit::new();
        let now = Instant::now();
        assert!(limit.try_admit(now));
        // 6 MiB from a full 2 MiB bucket: 4 MiB of debt, paid off in 2 s.
        limit.charge(6 * 1024 * 1024, now);
        assert!(!limit.try_admit(now + Duration::from_millis(1900)));
        assert!(limit.try_admit(now + Duration::from_millis(2050)));
    }
}
