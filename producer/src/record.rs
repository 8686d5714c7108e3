//! Records as read (user records) and as sent (Kinesis entries, possibly aggregates).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kinesis_relay_api::kpl;

/// Kinesis refuses a record whose data and partition key exceed 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One record from the input, with its keys.
#[derive(Debug, Clone)]
pub struct Record {
    /// Position in the input, from 0 (for `{seq}` and error messages).
    pub seq: u64,
    /// The partition key.
    pub partition_key: String,
    /// The explicit hash key, decimal, when set.
    pub explicit_hash_key: Option<String>,
    /// The payload.
    pub data: Bytes,
    /// When the record was read: lingering is measured from here.
    pub read_at: Instant,
}

impl Record {
    /// Bytes Kinesis counts against the limits: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// One entry of a PutRecords request: a plain record or an aggregate of several.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The Kinesis partition key (an aggregate's is its first record's).
    pub partition_key: String,
    /// The explicit hash key, when set.
    pub explicit_hash_key: Option<String>,
    /// The bytes sent.
    pub data: Bytes,
    /// The shard it is predicted to land on (its lane).
    pub shard: Arc<str>,
    /// User records inside: 1, or the aggregate's count.
    pub user_records: u64,
    /// User data bytes inside (for throughput figures).
    pub user_bytes: u64,
    /// Whether `data` is a KPL aggregate.
    pub aggregated: bool,
    /// When its oldest user record was read.
    pub born: Instant,
    /// When it was first sent (the record TTL runs from here).
    pub first_attempt: Option<Instant>,
    /// Sends so far.
    pub attempts: u32,
}

impl Entry {
    /// A plain (not aggregated) entry for one record.
    pub fn plain(record: Record, shard: Arc<str>) -> Self {
        Entry {
            user_bytes: record.data.len() as u64,
            partition_key: record.partition_key,
            explicit_hash_key: record.explicit_hash_key,
            data: record.data,
            shard,
            user_records: 1,
            aggregated: false,
            born: record.read_at,
            first_attempt: None,
            attempts: 0,
        }
    }

    /// Bytes Kinesis counts: data plus partition key.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// The user records inside, for the failed-output file.
    pub fn user_records(&self) -> Vec<kpl::UserRecord> {
        if self.aggregated
            && let Ok(records) = kpl::deaggregate(&self.data)
        {
            return records;
        }
        vec![kpl::UserRecord {
            partition_key: self.partition_key.clone(),
            explicit_hash_key: self.explicit_hash_key.clone(),
            data: self.data.clone(),
        }]
    }
}
