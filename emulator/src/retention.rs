//! Retention: records older than the retention period are dropped, on every write to their
//! shard and by a sweep once a second. Tests can age records to reach retention without
//! waiting for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::KinesisError;
use crate::state::{Shard, Store};

impl Shard {
    /// Drops the records whose arrival plus `retention` is before `now`. Records are in
    /// arrival order, so only the front needs looking at.
    pub(crate) fn trim(&mut self, retention: Duration, now: SystemTime) {
        while let Some(front) = self.records.front() {
            if front
                .arrival
                .checked_add(retention)
                .is_some_and(|t| t < now)
            {
                self.records.pop_front();
            } else {
                break;
            }
        }
    }
}

impl Store {
    /// Drops records older than the retention period from every shard.
    pub(crate) fn trim_all(&self) {
        let retention = self.settings().retention;
        let now = SystemTime::now();
        let mut inner = self.lock();
        for stream in inner.streams.values_mut() {
            for shard in &mut stream.shards {
                shard.trim(retention, now);
            }
        }
    }

    /// Moves the arrival time of every record of a stream `by` into the past, then trims
    /// at once, so a test sees retention act without waiting for it. Every record moves by
    /// the same amount, so arrival order (which trimming and AT_TIMESTAMP rely on) holds.
    pub(crate) fn age_records(&self, name: &str, by: Duration) -> Result<(), KinesisError> {
        let retention = self.settings().retention;
        let now = SystemTime::now();
        let mut inner = self.lock();
        let stream = inner.stream_mut(name)?;
        for shard in &mut stream.shards {
            for record in &mut shard.records {
                record.arrival = record
                    .arrival
                    .checked_sub(by)
                    .map_or(UNIX_EPOCH, |t| t.max(UNIX_EPOCH));
            }
            shard.trim(retention, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::writing::NewRecord;
    use bytes::Bytes;
    use std::sync::Arc;

    fn put_one(store: &Store) {
        let record = NewRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"x"),
        };
        store.put("s", vec![record]).unwrap();
    }

    fn count(store: &Store) -> usize {
        store.lock().stream("s").unwrap().shards[0].records.len()
    }

    #[test]
    fn ageing_past_retention_drops_records_and_less_keeps_them() {
        let settings = Settings {
            retention: Duration::from_secs(3600),
            ..Settings::default()
        };
        let store = Store::new(Arc::new(settings));
        store.create_stream("s", 1, false).unwrap();
        put_one(&store);
        store.age_records("s", Duration::from_secs(1800)).unwrap();
        assert_eq!(count(&store), 1);
        put_one(&store);
        store.age_records("s", Duration::from_secs(1801)).unwrap();
        // The first is 3601 s old now, the second 1801 s.
        assert_eq!(count(&store), 1);
        assert!(store.age_records("missing", Duration::ZERO).is_err());
    }
}
