//! Writes: each record goes to the open shard that owns its hash key, within the shard's
//! write limits; every write wakes the shard's subscriptions and trims it by retention.

use bytes::Bytes;
use std::time::{Instant, SystemTime};

use crate::error::KinesisError;
use crate::keyspace::hash_key;
use crate::protocol;
use crate::sequence::SequenceNumber;
use crate::state::{Inner, Record, Store, not_found};

/// A record to write.
#[derive(Debug)]
pub(crate) struct NewRecord {
    /// The partition key, 1-256 characters.
    pub(crate) partition_key: String,
    /// The hash key that overrides the partition key's MD5.
    pub(crate) explicit_hash_key: Option<u128>,
    /// The data blob.
    pub(crate) data: Bytes,
}

/// What became of one record of a write.
#[derive(Debug)]
pub(crate) enum PutOutcome {
    /// Stored in `shard_id` as `seq`.
    Stored {
        shard_id: String,
        seq: SequenceNumber,
    },
    /// Refused: the shard's write limit is exhausted.
    Throttled { shard_id: String },
}

impl Store {
    /// Writes records, each to the open shard owning its hash key, applying the write limits.
    pub(crate) fn put(
        &self,
        name: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<PutOutcome>, KinesisError> {
        let limits = self.settings().limits;
        let retention = self.settings().retention;
        let now = SystemTime::now();
        // AWS keeps arrival times in milliseconds; keeping exactly what ApproximateArrival-
        // Timestamp reports makes AT_TIMESTAMP with a reported time start at that record.
        let arrival = protocol::whole_millis(now);
        let instant = Instant::now();
        let mut inner = self.lock();
        let Inner { streams, seqs } = &mut *inner;
        let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
        let mut touched = vec![false; stream.shards.len()];
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let key = record
                .explicit_hash_key
                .unwrap_or_else(|| hash_key(&record.partition_key));
            let Some(index) = stream
                .shards
                .iter()
                .position(|s| s.is_open() && s.range.contains(key))
            else {
                return Err(KinesisError::InternalFailure(format!(
                    "no open shard owns hash key {key}"
                )));
            };
            let shard = &mut stream.shards[index];
            let size = record.data.len() + record.partition_key.len();
            if limits && !shard.write_limit.try_admit(size, instant) {
                outcomes.push(PutOutcome::Throttled {
                    shard_id: shard.id.clone(),
                });
                continue;
            }
            let seq = seqs.allocate();
            shard.records.push_back(Record {
                seq,
                arrival,
                partition_key: record.partition_key.into(),
                data: record.data,
            });
            touched[index] = true;
            outcomes.push(PutOutcome::Stored {
                shard_id: shard.id.clone(),
                seq,
            });
        }
        for (shard, touched) in stream.shards.iter_mut().zip(touched) {
            if touched {
                shard.trim(retention, now);
                shard.wake.send_modify(|v| *v += 1);
            }
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::keyspace::hash_key;
    use std::sync::Arc;

    fn store() -> Store {
        Store::new(Arc::new(Settings::default()))
    }

    /// A one-byte record under `key` (shared with the reading tests).
    pub(crate) fn record(key: &str) -> NewRecord {
        NewRecord {
            partition_key: key.into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn md5_picks_the_shard() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661, in the lowest quarter.
        assert_eq!(hash_key("a") >> 124, 0);
        let store = store();
        store.create_stream("s", 4, false).unwrap();
        let out = store.put("s", vec![record("a")]).unwrap();
        assert!(
            matches!(&out[0], PutOutcome::Stored { shard_id, .. } if shard_id == "shardId-000000000000")
        );
    }

    #[test]
    fn write_limit_throttles_per_shard() {
        let store = store();
        store.create_stream("s", 1, false).unwrap();
        let out = store
            .put("s", (0..1001).map(|_| record("k")).collect())
            .unwrap();
        let throttled = out
            .iter()
            .filter(|o| matches!(o, PutOutcome::Throttled { .. }))
            .count();
        assert_eq!(throttled, 1);
    }
}
