//! What the hub holds of a stream, as plain data: its shards (metadata, ring, reader
//! progress, counters), the consumer, and the stream's status derived from them. The
//! [`StreamHub`](super::StreamHub) guards it and is the only writer.

use std::{
    collections::BTreeMap,
    sync::atomic::AtomicU64,
    time::{Duration, SystemTime},
};

use kinesis_relay_api::{cursor::Position, sequence::SequenceNumber, v1};

use super::{delay, ends, ring::ShardRing};

/// Bounds of a stream's rings.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    /// Bytes all the shards of one stream may hold together.
    pub max_bytes: usize,
    /// Records older than this (by arrival time) are dropped.
    pub max_age: Duration,
}

impl Default for RingLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(15 * 60),
        }
    }
}

/// How far the relay is in reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderState {
    /// Waiting for its parents to be finished.
    Waiting,
    /// A subscription is live.
    Reading,
    /// The subscription is being renewed or retried.
    Reconnecting,
    /// Read to its end.
    Finished,
}

impl From<ReaderState> for v1::ShardState {
    fn from(state: ReaderState) -> Self {
        match state {
            ReaderState::Waiting => Self::Waiting,
            ReaderState::Reading => Self::Reading,
            ReaderState::Reconnecting => Self::Reconnecting,
            ReaderState::Finished => Self::Finished,
        }
    }
}

/// What Kinesis says of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMeta {
    /// The shard id.
    pub shard_id: String,
    /// Parent shard ids (one after a split, two after a merge).
    pub parents: Vec<String>,
    /// Inclusive hash key range, as decimal strings.
    pub hash_key_range: (String, String),
}

/// One shard in the hub (read outside `hub/` through [`super::ShardView`]).
#[derive(Debug)]
pub(super) struct ShardSlot {
    /// What Kinesis says of it.
    pub(super) meta: ShardMeta,
    /// Its records.
    pub(super) ring: ShardRing,
    /// Reader progress.
    pub(super) state: ReaderState,
    /// Child shards, known once the shard ended.
    pub(super) children: Vec<String>,
    /// Distance to the tip of the shard, from the last event.
    pub(super) millis_behind: i64,
    /// Position of the last record appended; appends at or before it are dropped as
    /// duplicates (a renewed or taken-over subscription may repeat records).
    pub(super) last_position: Option<Position>,
    /// Counters of this shard's reading, for metrics.
    pub(super) counters: ShardCounters,
}

/// What happened to a shard's reading since the relay started.
#[derive(Debug, Clone, Default)]
pub struct ShardCounters {
    /// Records appended (after unpacking aggregates).
    pub records_in: u64,
    /// Bytes of record data appended.
    pub bytes_in: u64,
    /// Subscriptions started (the first one and every renewal).
    pub subscriptions: u64,
    /// Subscription errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
}

/// What subscribers of a stream received since the relay started.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Records sent.
    pub records_out: AtomicU64,
    /// Bytes of responses sent.
    pub bytes_out: AtomicU64,
    /// Subscribers disconnected for lagging.
    pub lag_disconnects: AtomicU64,
    /// Gap events sent.
    pub gaps: AtomicU64,
    /// Time records spent in the relay before a subscriber's response carried them.
    pub delivery_delay: delay::DelayHistogram,
    /// Subscriptions ended, by reason.
    pub subscriber_ends: ends::SubscriberEnds,
}

impl ShardSlot {
    /// Whether every record of the shard is in (or has passed through) the ring.
    pub(super) fn finished(&self) -> bool {
        self.state == ReaderState::Finished
    }

    /// Sequence number of the last record relayed.
    pub(super) fn last_sequence(&self) -> Option<&SequenceNumber> {
        match &self.last_position {
            Some(Position::After { sequence, .. }) => Some(sequence),
            _ => None,
        }
    }
}

/// The enhanced fan-out consumer, as last described.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Consumer name.
    pub name: String,
    /// Consumer ARN.
    pub arn: String,
    /// Status as Kinesis reports it.
    pub status: String,
}

/// The mutable part of a stream hub (read outside `hub/` through [`super::StreamView`]).
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// Shards by id.
    pub(super) shards: BTreeMap<String, ShardSlot>,
    /// Bytes held by all rings.
    pub(super) bytes: usize,
    /// The consumer.
    pub(super) consumer: ConsumerInfo,
    /// Whether ingest has listed the shards (before that the stream is STARTING).
    pub(super) started: bool,
    /// Whether ingest stopped.
    pub(super) stopped: bool,
}

impl StreamState {
    /// The overall status for `ListStreams` and `DescribeStream`.
    pub(super) fn status(&self) -> v1::StreamStatus {
        if self.stopped {
            v1::StreamStatus::Stopped
        } else if !self.started {
            v1::StreamStatus::Starting
        } else if self
            .shards
            .values()
            .any(|slot| slot.state == ReaderState::Reconnecting)
        {
            v1::StreamStatus::Degraded
        } else {
            v1::StreamStatus::Active
        }
    }

    /// Open shards (not finished).
    pub(super) fn open_shards(&self) -> usize {
        self.shards.values().filter(|slot| !slot.finished()).count()
    }

    /// Oldest arrival time held across shards.
    pub(super) fn oldest_arrival(&self) -> Option<SystemTime> {
        self.shards
            .values()
            .filter_map(|slot| slot.ring.front().map(|entry| entry.arrival))
            .min()
    }
}
