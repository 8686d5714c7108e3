//! Streams, shards and records: everything the emulator stores, behind one mutex.
//!
//! The lock is never held across an await. Each shard has a `watch` channel that is bumped
//! on every write and on close, so subscriptions wake as soon as there is something to push.

use bytes::Bytes;
use md5::{Digest, Md5};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

use crate::config::Settings;
use crate::consumers::Consumer;
use crate::error::KinesisError;
use crate::limits::ShardWriteLimit;
use crate::protocol;
use crate::sequence::{SequenceAllocator, SequenceNumber};

/// An inclusive range of the 128-bit hash key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HashKeyRange {
    /// The lowest hash key of the range.
    pub(crate) start: u128,
    /// The highest hash key of the range.
    pub(crate) end: u128,
}

impl HashKeyRange {
    pub(crate) fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }

    /// The JSON shape `{"StartingHashKey": .., "EndingHashKey": ..}`.
    pub(crate) fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "StartingHashKey": self.start.to_string(),
            "EndingHashKey": self.end.to_string(),
        })
    }

    /// `count` ranges of (nearly) equal width covering `self`.
    pub(crate) fn split_evenly(self, count: u32) -> Vec<HashKeyRange> {
        let count = u128::from(count.max(1));
        let width = (self.end - self.start) / count;
        (0..count)
            .map(|i| {
                let start = self.start + i * width;
                let end = if i + 1 == count {
                    self.end
                } else {
                    self.start + (i + 1) * width - 1
                };
                HashKeyRange { start, end }
            })
            .collect()
    }
}

/// The whole key space, `0 ..= 2^128 - 1`.
pub(crate) const FULL_RANGE: HashKeyRange = HashKeyRange {
    start: 0,
    end: u128::MAX,
};

/// The hash key of a partition key: its MD5 as a big-endian 128-bit integer.
pub(crate) fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The id AWS gives the shard with this index.
pub(crate) fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// One stored record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Its sequence number, unique and increasing within the shard.
    pub(crate) seq: SequenceNumber,
    /// When it was written, reported as ApproximateArrivalTimestamp and used by retention.
    pub(crate) arrival: SystemTime,
    /// The partition key it was written with.
    pub(crate) partition_key: Arc<str>,
    /// The data blob.
    pub(crate) data: Bytes,
}

impl Record {
    /// The JSON shape of a record in GetRecords and SubscribeToShardEvent.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        serde_json::json!({
            "SequenceNumber": self.seq.to_string(),
            "ApproximateArrivalTimestamp": protocol::epoch_seconds(self.arrival),
            "Data": base64::engine::general_purpose::STANDARD.encode(&self.data),
            "PartitionKey": &*self.partition_key,
        })
    }
}

/// A shard: its place in the key space and in the resharding tree, and its records.
#[derive(Debug)]
pub(crate) struct Shard {
    /// `shardId-000000000000` style id.
    pub(crate) id: String,
    /// The shards this one was split or merged from (at most two by split/merge; more only
    /// after UpdateShardCount).
    pub(crate) parents: Vec<String>,
    /// The hash keys it owns.
    pub(crate) range: HashKeyRange,
    /// Lower than every sequence number of its records.
    pub(crate) starting_seq: SequenceNumber,
    /// Set when the shard is closed by a split or merge; no record is written after.
    pub(crate) ending_seq: Option<SequenceNumber>,
    /// When the shard was created, for ListShards timestamp filters.
    pub(crate) created: SystemTime,
    /// When the shard was closed.
    pub(crate) closed: Option<SystemTime>,
    /// Records in sequence order, oldest first; the front is trimmed by retention.
    records: VecDeque<Record>,
    /// The per-shard write limits.
    write_limit: ShardWriteLimit,
    /// Bumped on every write and on close; subscriptions wait on it.
    wake: watch::Sender<u64>,
}

impl Shard {
    fn new(
        index: usize,
        parents: Vec<String>,
        range: HashKeyRange,
        seqs: &mut SequenceAllocator,
    ) -> Self {
        Self {
            id: shard_id(index),
            parents,
            range,
            starting_seq: seqs.allocate(),
            ending_seq: None,
            created: SystemTime::now(),
            closed: None,
            records: VecDeque::new(),
            write_limit: ShardWriteLimit::new(),
            wake: watch::Sender::new(0),
        }
    }

    /// How many records the shard holds now.
    pub(crate) fn record_count(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.ending_seq.is_none()
    }

    /// Closes the shard; readers that reach its end see its children.
    pub(crate) fn close(&mut self, seqs: &mut SequenceAllocator) {
        if self.is_open() {
            self.ending_seq = Some(seqs.allocate());
            self.closed = Some(SystemTime::now());
            self.wake.send_modify(|v| *v += 1);
        }
    }

    fn trim(&mut self, retention: Duration, now: SystemTime) {
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

    /// The JSON shape of the shard in DescribeStream and ListShards.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut range =
            serde_json::json!({ "StartingSequenceNumber": self.starting_seq.to_string() });
        if let Some(end) = self.ending_seq {
            range["EndingSequenceNumber"] = end.to_string().into();
        }
        let mut shard = serde_json::json!({
            "ShardId": self.id,
            "HashKeyRange": self.range.to_json(),
            "SequenceNumberRange": range,
        });
        if let Some(parent) = self.parents.first() {
            shard["ParentShardId"] = parent.clone().into();
        }
        if let Some(adjacent) = self.parents.get(1) {
            shard["AdjacentParentShardId"] = adjacent.clone().into();
        }
        shard
    }
}

/// A data stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The stream name.
    pub(crate) name: String,
    /// `arn:aws:kinesis:us-east-1:000000000000:stream/<name>`.
    pub(crate) arn: String,
    /// When it was created.
    pub(crate) created: SystemTime,
    /// Whether it was created ON_DEMAND (only reported; limits are the same).
    pub(crate) on_demand: bool,
    /// Every shard ever created, open and closed; the index is the shard number.
    pub(crate) shards: Vec<Shard>,
    /// Registered consumers by name.
    pub(crate) consumers: BTreeMap<String, Consumer>,
}

impl Stream {
    pub(crate) fn shard(&self, id: &str) -> Result<&Shard, KinesisError> {
        self.shards.iter().find(|s| s.id == id).ok_or_else(|| {
            KinesisError::ResourceNotFound(format!(
                "Shard {id} in stream {} under account 000000000000 does not exist",
                self.name
            ))
        })
    }

    pub(crate) fn shard_mut(&mut self, id: &str) -> Result<&mut Shard, KinesisError> {
        let name = self.name.clone();
        self.shards.iter_mut().find(|s| s.id == id).ok_or_else(|| {
            KinesisError::ResourceNotFound(format!(
                "Shard {id} in stream {name} under account 000000000000 does not exist"
            ))
        })
    }

    pub(crate) fn open_shard_count(&self) -> usize {
        self.shards.iter().filter(|s| s.is_open()).count()
    }

    /// Adds a shard with the next index and returns its id.
    pub(crate) fn add_shard(
        &mut self,
        parents: Vec<String>,
        range: HashKeyRange,
        seqs: &mut SequenceAllocator,
    ) -> String {
        let shard = Shard::new(self.shards.len(), parents, range, seqs);
        let id = shard.id.clone();
        self.shards.push(shard);
        id
    }

    /// The shards created from `parent_id`, as ChildShards lists them.
    pub(crate) fn children_of(&self, parent_id: &str) -> Vec<serde_json::Value> {
        self.shards
            .iter()
            .filter(|s| s.parents.iter().any(|p| p == parent_id))
            .map(|s| {
                serde_json::json!({
                    "ShardId": s.id,
                    "ParentShards": s.parents,
                    "HashKeyRange": s.range.to_json(),
                })
            })
            .collect()
    }
}

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

/// The mutable state behind the store's lock.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Streams by name.
    pub(crate) streams: BTreeMap<String, Stream>,
    /// The one sequence number counter of the emulator.
    pub(crate) seqs: SequenceAllocator,
}

impl Inner {
    pub(crate) fn stream(&self, name: &str) -> Result<&Stream, KinesisError> {
        self.streams.get(name).ok_or_else(|| not_found(name))
    }

    pub(crate) fn stream_mut(&mut self, name: &str) -> Result<&mut Stream, KinesisError> {
        self.streams.get_mut(name).ok_or_else(|| not_found(name))
    }
}

fn not_found(name: &str) -> KinesisError {
    KinesisError::ResourceNotFound(format!(
        "Stream {name} under account 000000000000 not found."
    ))
}

/// All streams, shards, records and consumers.
#[derive(Debug)]
pub(crate) struct Store {
    /// The state; held only for short, synchronous sections.
    inner: Mutex<Inner>,
    /// The limits and retention to apply.
    settings: Arc<Settings>,
}

impl Store {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        let epoch_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            inner: Mutex::new(Inner {
                streams: BTreeMap::new(),
                seqs: SequenceAllocator::starting_at(epoch_secs),
            }),
            settings,
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The state, locked. A poisoned lock is taken over: every section leaves it consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn create_stream(
        &self,
        name: &str,
        shard_count: u32,
        on_demand: bool,
    ) -> Result<(), KinesisError> {
        if !protocol::valid_name(name) {
            return Err(KinesisError::Validation(format!(
                "stream name {name:?} must be 1-128 characters of [a-zA-Z0-9_.-]"
            )));
        }
        if !(1..=10_000).contains(&shard_count) {
            return Err(KinesisError::InvalidArgument(format!(
                "shard count {shard_count} must be between 1 and 10000"
            )));
        }
        let mut inner = self.lock();
        let Inner { streams, seqs } = &mut *inner;
        if streams.contains_key(name) {
            return Err(KinesisError::ResourceInUse(format!(
                "Stream {name} under account 000000000000 already exists."
            )));
        }
        let mut stream = Stream {
            name: name.to_owned(),
            arn: protocol::stream_arn(name),
            created: SystemTime::now(),
            on_demand,
            shards: Vec::new(),
            consumers: BTreeMap::new(),
        };
        for range in FULL_RANGE.split_evenly(shard_count) {
            stream.add_shard(Vec::new(), range, seqs);
        }
        streams.insert(name.to_owned(), stream);
        Ok(())
    }

    /// Removes a stream and returns the ARNs of its consumers (whose subscriptions end).
    pub(crate) fn delete_stream(
        &self,
        name: &str,
        enforce_consumer_deletion: bool,
    ) -> Result<Vec<String>, KinesisError> {
        let mut inner = self.lock();
        let stream = inner.stream(name)?;
        if !stream.consumers.is_empty() && !enforce_consumer_deletion {
            return Err(KinesisError::ResourceInUse(format!(
                "Stream {name} has registered consumers; set EnforceConsumerDeletion"
            )));
        }
        let stream = inner.streams.remove(name).ok_or_else(|| not_found(name))?;
        // Dropping the shards drops their wake senders, which tells waiting readers.
        Ok(stream.consumers.values().map(|c| c.arn.clone()).collect())
    }

    /// Writes records, each to the open shard owning its hash key, applying the write limits.
    pub(crate) fn put(
        &self,
        name: &str,
        records: Vec<NewRecord>,
    ) -> Result<Vec<PutOutcome>, KinesisError> {
        let limits = self.settings.limits;
        let retention = self.settings.retention;
        let now = SystemTime::now();
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
                arrival: now,
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

    /// Drops records older than the retention period from every shard.
    pub(crate) fn trim_all(&self) {
        let retention = self.settings.retention;
        let now = SystemTime::now();
        let mut inner = self.lock();
        for stream in inner.streams.values_mut() {
            for shard in &mut stream.shards {
                shard.trim(retention, now);
            }
        }
    }

    /// A receiver that changes whenever the shard gets records or closes, or errors when
    /// the stream is deleted.
    pub(crate) fn wake_receiver(
        &self,
        name: &str,
        shard_id: &str,
    ) -> Result<watch::Receiver<u64>, KinesisError> {
        let inner = self.lock();
        Ok(inner.stream(name)?.shard(shard_id)?.wake.subscribe())
    }

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
                let index = shard.records.partition_point(|r| r.arrival < *time);
                match shard.records.get(index) {
                    Some(record) => Position::AtOrAfter(record.seq),
                    None => latest(),
                }
            }
        })
    }

    /// Reads up to `max_records` records (and about `max_bytes`, at least one record) from
    /// `position`.
    pub(crate) fn read(
        &self,
        name: &str,
        shard_id: &str,
        position: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, KinesisError> {
        let inner = self.lock();
        let stream = inner.stream(name)?;
        let shard = stream.shard(shard_id)?;
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
        let children = (!shard.is_open() && !more).then(|| stream.children_of(&shard.id));
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

    fn store() -> Store {
        Store::new(Arc::new(Settings::default()))
    }

    fn record(key: &str) -> NewRecord {
        NewRecord {
            partition_key: key.into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn ranges_cover_the_key_space_without_gaps() {
        let ranges = FULL_RANGE.split_evenly(3);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[2].end, u128::MAX);
        assert_eq!(ranges[0].end + 1, ranges[1].start);
        assert_eq!(ranges[1].end + 1, ranges[2].start);
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
    fn reads_resume_after_the_continuation() {
        let store = store();
        store.create_stream("s", 1, false).unwrap();
        let id = shard_id(0);
        let start = store
            .position("s", &id, &StartingPosition::TrimHorizon)
            .unwrap();
        store
            .put("s", (0..5).map(|_| record("k")).collect())
            .unwrap();
        let first = store.read("s", &id, start, 3, usize::MAX).unwrap();
        assert_eq!(first.records.len(), 3);
        assert!(first.more);
        let second = store
            .read(
                "s",
                &id,
                Position::After(first.continuation),
                10,
                usize::MAX,
            )
            .unwrap();
        assert_eq!(second.records.len(), 2);
        assert!(!second.more);
        assert!(first.records[2].seq < second.records[0].seq);
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
