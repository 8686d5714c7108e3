//! KPL aggregation: packs the records bound for one shard into aggregates of about
//! `--aggregate-max-bytes`.

use std::sync::Arc;
use std::time::Instant;

use kinesis_relay_api::kpl::{self, OVERHEAD, UserRecord, entry_size_bound};

use crate::record::{Entry, MAX_RECORD_BYTES, Record};

/// The aggregate being filled for one shard.
#[derive(Debug)]
pub struct Aggregator {
    /// Records packed so far.
    records: Vec<UserRecord>,
    /// Upper bound of the packed size (protobuf and overhead).
    size_bound: usize,
    /// When the oldest record was read.
    born: Option<Instant>,
    /// User data bytes so far.
    user_bytes: u64,
    /// Largest aggregate, in bytes (data and the aggregate's partition key).
    max_bytes: usize,
}

impl Aggregator {
    /// An empty aggregator for aggregates of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Aggregator {
            records: Vec::new(),
            size_bound: OVERHEAD,
            born: None,
            user_bytes: 0,
            max_bytes: max_bytes.min(MAX_RECORD_BYTES),
        }
    }

    /// Whether a record this size is better sent on its own (it would fill an aggregate
    /// by itself).
    pub fn too_big(&self, record: &Record) -> bool {
        OVERHEAD + entry_size_bound(&user(record)) + record.partition_key.len() > self.max_bytes
    }

    /// Adds a record; returns the full aggregate it closed, if any.
    pub fn push(&mut self, record: Record, shard: &Arc<str>) -> Option<Entry> {
        let user = user(&record);
        let bound = entry_size_bound(&user);
        let first_key_len = self
            .records
            .first()
            .map_or(user.partition_key.len(), |r| r.partition_key.len());
        let closed = if !self.records.is_empty()
            && self.size_bound + bound + first_key_len > self.max_bytes
        {
            self.close(shard)
        } else {
            None
        };
        self.size_bound += bound;
        self.user_bytes += user.data.len() as u64;
        self.born.get_or_insert(record.read_at);
        self.records.push(user);
        closed
    }

    /// When the open aggregate must be closed (its oldest record has lingered enough).
    pub fn born(&self) -> Option<Instant> {
        self.born
    }

    /// User records in the open aggregate.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no aggregate is open.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Closes the open aggregate into an entry. A single record is sent plain: consumers
    /// then need no deaggregation for it and it costs 20 bytes less.
    pub fn close(&mut self, shard: &Arc<str>) -> Option<Entry> {
        let born = self.born.take()?;
        let records = std::mem::take(&mut self.records);
        let user_bytes = std::mem::take(&mut self.user_bytes);
        self.size_bound = OVERHEAD;
        let first = records.first()?;
        let (data, aggregated) = if records.len() == 1 {
            (first.data.clone(), false)
        } else {
            (kpl::aggregate(&records), true)
        };
        Some(Entry {
            partition_key: first.partition_key.clone(),
            explicit_hash_key: first.explicit_hash_key.clone(),
            data,
            shard: shard.clone(),
            user_records: records.len() as u64,
            user_bytes,
            aggregated,
            born,
            first_attempt: None,
            attempts: 0,
        })
    }
}

fn user(record: &Record) -> UserRecord {
    UserRecord {
        partition_key: record.partition_key.clone(),
        explicit_hash_key: record.explicit_hash_key.clone(),
        data: record.data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(seq: u64, size: usize) -> Record {
        Record {
            seq,
            partition_key: format!("k{}", seq % 5),
            explicit_hash_key: None,
            data: Bytes::from(vec![b'x'; size]),
            read_at: Instant::now(),
        }
    }

    #[test]
    fn closes_under_the_size_and_round_trips() {
        let shard: Arc<str> = Arc::from("s");
        let mut aggregator = Aggregator::new(51_200);
        let mut closed = Vec::new();
        for seq in 0..2000 {
            if let Some(entry) = aggregator.push(record(seq, 100), &shard) {
                closed.push(entry);
            }
        }
        closed.extend(aggregator.close(&shard));
        let total: u64 = closed.iter().map(|e| e.user_records).sum();
        assert_eq!(total, 2000);
        let mut seq = 0;
        for entry in &closed {
            assert!(entry.size() <= 51_200, "{}", entry.size());
            assert!(entry.aggregated);
            for user in kpl::deaggregate(&entry.data).unwrap() {
                assert_eq!(user.partition_key, format!("k{}", seq % 5));
                seq += 1;
            }
        }
        assert_eq!(seq, 2000);
        // Full aggregates are well filled.
        assert!(closed[0].size() > 45_000, "{}", closed[0].size());
    }

    #[test]
    fn single_record_goes_plain() {
        let shard: Arc<str> = Arc::from("s");
        let mut aggregator = Aggregator::new(51_200);
        assert!(aggregator.push(record(0, 10), &shard).is_none());
        let entry = aggregator.close(&shard).unwrap();
        assert!(!entry.aggregated);
        assert_eq!(entry.data.len(), 10);
        assert!(aggregator.close(&shard).is_none());
        assert!(aggregator.too_big(&record(0, 60_000)));
    }
}
