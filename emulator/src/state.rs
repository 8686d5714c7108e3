//! Streams, shards and records: everything the emulator stores, behind one mutex.
//!
//! The lock is never held across an await. Each shard has a `watch` channel that is bumped
//! on every write and on close, so subscriptions wake as soon as there is something to push.

use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

use crate::config::Settings;
use crate::consumers::Consumer;
use crate::error::KinesisError;
use crate::keyspace::{FULL_RANGE, HashKeyRange};
use crate::limits::ShardWriteLimit;
use crate::protocol;
use crate::read_limits::ShardReadLimit;
use crate::sequence::{SequenceAllocator, SequenceNumber};

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
    /// Records in sequence order (and so in arrival order), oldest first; the front is
    /// trimmed by retention.
    pub(crate) records: VecDeque<Record>,
    /// The per-shard write limits.
    pub(crate) write_limit: ShardWriteLimit,
    /// The per-shard GetRecords limits, shared by every reader of the shard.
    pub(crate) read_limit: ShardReadLimit,
    /// Bumped on every write and on close; subscriptions wait on it.
    pub(crate) wake: watch::Sender<u64>,
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
            read_limit: ShardReadLimit::new(),
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

    /// A stream and the sequence counter together, for changes that close and create shards
    /// (both borrowed mutably at once).
    pub(crate) fn stream_and_seqs(
        &mut self,
        name: &str,
    ) -> Result<(&mut Stream, &mut SequenceAllocator), KinesisError> {
        let stream = self.streams.get_mut(name).ok_or_else(|| not_found(name))?;
        Ok((stream, &mut self.seqs))
    }
}

pub(crate) fn not_found(name: &str) -> KinesisError {
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
}
