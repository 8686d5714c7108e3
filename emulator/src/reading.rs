//! Reading a shard: where a reader starts, and batches from a position. GetRecords and
//! the subscription pump share this; GetRecords adds its limits in `read_limits.rs`.

use std::time::SystemTime;

use crate::error::KinesisError;
use crate::sequence::SequenceNumber;
use crate::state::{Record, Store, Stream};

/// Where a reader is in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Strictly after this sequence number.
    After(SequenceNumber),
    /// At this sequence number or after it.
    AtOrAfter(SequenceNumber),
}

/// How a subscription or iterator starts, as the request says it.
#[derive(Debug, Clone)]
pub(crate) enum StartingPosition {
    Latest,
    TrimHorizon,
    AtSequenceNumber(SequenceNumber),
    AfterSequenceNumber(SequenceNumber),
    AtTimestamp(SystemTime),
}

/// The result of one read from a shard.
#[derive(Debug)]
pub(crate) struct ReadBatch {
    /// The records read, in sequence order.
    pub(crate) records: Vec<Record>,
    /// The last record read, or where the reader stands when none was read; reading
    /// after it resumes without loss or repetition.
    pub(crate) continuation: SequenceNumber,
    /// How far the last record read is behind the newest record of the shard.
    pub(crate) millis_behind: u64,
    /// Whether more records are there to read right now.
    pub(crate) more: bool,
    /// Set when the shard is closed and read to its end: its children.
    pub(crate) children: Option<Vec<serde_json::Value>>,
}

impl Store {
    /// Where a reader starting at `start` stands.
    pub(crate) fn position(
        &self,
        name: &str,
        shard_id: &str,
        start: &StartingPosition,
    ) -> Result<Position, KinesisError> {
        let inner = self.lock();
        let shard = inner.stream(name)?.shard(shard_id)?;
        let latest = || Position::After(shard.records.back().map_or(shard.starting_seq, |r| r.seq));
        Ok(match start {
            StartingPosition::Latest => latest(),
            StartingPosition::TrimHorizon => Position::AtOrAfter(SequenceNumber::ZERO),
            StartingPosition::AtSequenceNumber(seq) => Position::AtOrAfter(*seq),
            StartingPosition::AfterSequenceNumber(seq) => Position::After(*seq),
            StartingPosition::AtTimestamp(time) => {
                // Records are in arrival order, so the first one at or after `time` is
                // found by bisection.
                let index = shard.records.partition_point(|r| r.arrival < *time);
                match shard.records.get(index) {
                    Some(record) => Position::AtOrAfter(record.seq),
                    None => latest(),
                }
            }
        })
    }
}

impl Stream {
    /// Reads up to `max_records` records (and about `max_bytes`, at least one record) from
    /// `position`. SubscribeToShard reads with this directly; GetRecords through
    /// [`Store::get_records`], which applies its limits.
    pub(crate) fn read(
        &self,
        shard_id: &str,
        position: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, KinesisError> {
        let shard = self.shard(shard_id)?;
        let records = &shard.records;
        let first = match position {
            Position::After(seq) => records.partition_point(|r| r.seq <= seq),
            Position::AtOrAfter(seq) => records.partition_point(|r| r.seq < seq),
        };
        let mut taken = Vec::new();
        let mut bytes = 0;
        for record in records.range(first..) {
            if taken.len() >= max_records
                || (!taken.is_empty() && bytes + record.data.len() > max_bytes)
            {
                break;
            }
            bytes += record.data.len();
            taken.push(record.clone());
        }
        let next = first + taken.len();
        let more = next < records.len();
        let continuation = match (taken.last(), position) {
            (Some(last), _) => last.seq,
            (None, Position::After(seq)) => seq,
            (None, Position::AtOrAfter(_)) => match first.checked_sub(1) {
                Some(before) => records[before].seq,
                None => shard.starting_seq,
            },
        };
        let millis_behind = match (more, taken.last()) {
            (true, Some(last)) => SystemTime::now()
                .duration_since(last.arrival)
                .map_or(0, |d| d.as_millis() as u64),
            _ => 0,
        };
        let children = (!shard.is_open() && !more).then(|| self.children_of(&shard.id));
        Ok(ReadBatch {
            records: taken,
            continuation,
            millis_behind,
            more,
            children,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::state::shard_id;
    use crate::writing::tests::record;
    use std::sync::Arc;

    #[test]
    fn reads_resume_after_the_continuation() {
        let store = Store::new(Arc::new(Settings::default()));
        store.create_stream("s", 1, false).unwrap();
        let id = shard_id(0);
        let start = store
            .position("s", &id, &StartingPosition::TrimHorizon)
            .unwrap();
        store
            .put("s", (0..5).map(|_| record("k")).collect())
            .unwrap();
        let first = store
            .lock()
            .stream("s")
            .unwrap()
            .read(&id, start, 3, usize::MAX)
            .unwrap();
        assert_eq!(first.records.len(), 3);
        assert!(first.more);
        let second = store
            .lock()
            .stream("s")
            .unwrap()
            .read(&id, Position::After(first.continuation), 10, usize::MAX)
            .unwrap();
        assert_eq!(second.records.len(), 2);
        assert!(!second.more);
        assert!(first.records[2].seq < second.records[0].seq);
    }
}
