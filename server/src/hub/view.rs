//! The hub's read API: what everything outside `hub/` may see of a stream.
//!
//! A [`StreamView`] holds the stream's read lock for as long as it lives, so that what a
//! caller reads of several shards is one consistent state (a subscription opens every shard
//! against the same rings). It is a std lock guard: never hold a view across an await.
//!
//! Callers see shards through [`ShardView`]: seek a starting position, read a batch after
//! an index, the floor and what a lagging reader missed, status and counters. The ring
//! itself (dedupe, floors, eviction, ages) is changed only by [`StreamHub`](super::StreamHub).

use std::{sync::RwLockReadGuard, time::SystemTime};

use kinesis_relay_api::{cursor::Position, sequence::SequenceNumber, v1};

use super::{
    ConsumerInfo, ReaderState, ShardCounters, ShardMeta,
    batch::Batch,
    ring::{Floor, Seek},
    state::{ShardSlot, StreamState},
};

/// Where a reader starts in a shard's ring.
#[derive(Debug, Clone, Copy)]
pub enum SeekTo<'a> {
    /// At the next record to arrive.
    Latest,
    /// At the oldest record held.
    Earliest,
    /// Right after this position.
    After(&'a Position),
    /// At the first record that arrived at or after this time.
    ArrivedAt(SystemTime),
}

/// What a reader that fell below a ring's oldest record missed, and where it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The last position not held (`None` when the ring does not know it).
    pub through: Option<Position>,
    /// Records dropped between the reader's index and the oldest held.
    pub records: u64,
    /// The index of the oldest record held: where the reader goes on.
    pub resume_at: u64,
    /// The position just before it (the reader's cursor once it goes on).
    pub resume_after: Position,
}

/// A consistent read of one stream; holds its read lock until dropped.
#[derive(Debug)]
pub struct StreamView<'a> {
    /// The stream's state, read-locked.
    state: RwLockReadGuard<'a, StreamState>,
}

impl<'a> StreamView<'a> {
    pub(super) fn new(state: RwLockReadGuard<'a, StreamState>) -> Self {
        Self { state }
    }

    /// Whether ingest has listed the shards (before that the stream is STARTING).
    pub fn started(&self) -> bool {
        self.state.started
    }

    /// Whether ingest is live: not stopped, and some shard has a live subscription.
    pub fn reading(&self) -> bool {
        !self.state.stopped
            && self
                .state
                .shards
                .values()
                .any(|slot| slot.state == ReaderState::Reading)
    }

    /// The overall status for `ListStreams` and `DescribeStream`.
    pub fn status(&self) -> v1::StreamStatus {
        self.state.status()
    }

    /// Open shards (not finished).
    pub fn open_shards(&self) -> usize {
        self.state.open_shards()
    }

    /// Oldest arrival time held across shards.
    pub fn oldest_arrival(&self) -> Option<SystemTime> {
        self.state.oldest_arrival()
    }

    /// Bytes held by all the stream's rings together (what the byte budget bounds).
    pub fn bytes_held(&self) -> usize {
        self.state.bytes
    }

    /// The enhanced fan-out consumer, as last described.
    pub fn consumer(&self) -> &ConsumerInfo {
        &self.state.consumer
    }

    /// Whether the stream has shard `id`.
    pub fn has_shard(&self, id: &str) -> bool {
        self.state.shards.contains_key(id)
    }

    /// Shard `id`, if the stream has it.
    pub fn shard(&self, id: &str) -> Option<ShardView<'_>> {
        self.state.shards.get(id).map(|slot| ShardView { slot })
    }

    /// Every shard, by id.
    pub fn shards(&self) -> impl Iterator<Item = ShardView<'_>> {
        self.state.shards.values().map(|slot| ShardView { slot })
    }
}

/// One shard of a [`StreamView`].
#[derive(Debug, Clone, Copy)]
pub struct ShardView<'a> {
    /// The shard.
    slot: &'a ShardSlot,
}

impl<'a> ShardView<'a> {
    /// The shard id.
    pub fn id(&self) -> &'a str {
        &self.slot.meta.shard_id
    }

    /// What Kinesis says of it.
    pub fn meta(&self) -> &'a ShardMeta {
        &self.slot.meta
    }

    /// Parent shard ids (one after a split, two after a merge).
    pub fn parents(&self) -> &'a [String] {
        &self.slot.meta.parents
    }

    /// Child shard ids, known once the shard ended.
    pub fn children(&self) -> &'a [String] {
        &self.slot.children
    }

    /// Reader progress.
    pub fn state(&self) -> ReaderState {
        self.slot.state
    }

    /// Whether every record of the shard is in (or has passed through) the ring.
    pub fn finished(&self) -> bool {
        self.slot.finished()
    }

    /// Distance to the tip of the shard, from the last event read.
    pub fn millis_behind(&self) -> i64 {
        self.slot.millis_behind
    }

    /// Sequence number of the last record relayed.
    pub fn last_sequence(&self) -> Option<&'a SequenceNumber> {
        self.slot.last_sequence()
    }

    /// Sequence number of the oldest record held.
    pub fn oldest_sequence(&self) -> Option<&'a SequenceNumber> {
        self.slot.ring.front().map(|entry| &entry.sequence)
    }

    /// Records held.
    pub fn records_held(&self) -> usize {
        self.slot.ring.len()
    }

    /// Bytes held (as the byte budget counts them).
    pub fn bytes_held(&self) -> usize {
        self.slot.ring.bytes()
    }

    /// Counters of this shard's reading, for metrics.
    pub fn counters(&self) -> &'a ShardCounters {
        &self.slot.counters
    }

    /// Absolute index of the oldest record held: a reader below it has lagged.
    pub fn oldest_index(&self) -> u64 {
        self.slot.ring.base()
    }

    /// Absolute index the next record appended gets: a reader there has read everything.
    pub fn end_index(&self) -> u64 {
        self.slot.ring.end()
    }

    /// What is known of the records before the oldest held.
    pub fn floor(&self) -> &'a Floor {
        self.slot.ring.floor()
    }

    /// The position just before absolute index `index` (what a cursor records once the
    /// records before `index` were read).
    pub fn position_before(&self, index: u64) -> Position {
        self.slot.ring.position_before(index)
    }

    /// Where a reader starting at `to` reads from, or [`Seek::TooOld`] when the ring no
    /// longer (or never did) hold what lies there.
    pub fn seek(&self, to: SeekTo<'_>) -> Seek {
        let ring = &self.slot.ring;
        match to {
            SeekTo::Latest => Seek::At(ring.end()),
            SeekTo::Earliest => Seek::At(ring.base()),
            SeekTo::After(position) => ring.seek_after(position),
            SeekTo::ArrivedAt(at) => ring.seek_time(at),
        }
    }

    /// Reads a batch of encoded records from `*next` on (see [`ShardRing::read_batch`]).
    ///
    /// [`ShardRing::read_batch`]: super::ring::ShardRing::read_batch
    pub fn read_batch(
        &self,
        next: &mut u64,
        last: &mut Position,
        wanted: impl Fn(&str) -> bool,
        max_records: usize,
    ) -> Batch {
        self.slot.ring.read_batch(next, last, wanted, max_records)
    }

    /// What a reader at index `next` missed when it fell below the oldest record held.
    pub fn missed(&self, next: u64) -> Missed {
        let ring = &self.slot.ring;
        Missed {
            through: match ring.floor() {
                Floor::After { position, .. } => Some(position.clone()),
                Floor::Origin | Floor::Unknown => None,
            },
            records: ring.base().saturating_sub(next),
            resume_at: ring.base(),
            resume_after: ring.position_before(ring.base()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::hub::fixtures::{after, hub_with_shard_a, record};

    #[test]
    fn a_view_seeks_reads_and_says_what_a_lagging_reader_missed() {
        let hub = hub_with_shard_a(3_000);
        for seq in 1..=20 {
            let key = if seq % 2 == 0 { "x" } else { "y" };
            hub.append("a", vec![record(seq, key, Bytes::from(vec![0u8; 100]))], 0);
        }
        let view = hub.view();
        assert!(view.has_shard("a") && !view.has_shard("b"));
        assert!(view.bytes_held() <= 3_000);
        let shard = view.shard("a").unwrap();
        let oldest = shard.oldest_index();
        assert!(oldest > 0, "the budget evicted the oldest records");
        assert_eq!(shard.end_index(), 20);
        assert_eq!(shard.records_held() as u64, 20 - oldest);
        assert_eq!(shard.seek(SeekTo::After(&Position::Start)), Seek::TooOld);
        assert_eq!(shard.seek(SeekTo::Latest), Seek::At(20));
        assert_eq!(shard.seek(SeekTo::Earliest), Seek::At(oldest));
        assert_eq!(shard.seek(SeekTo::After(&after(19))), Seek::At(19));

        let missed = shard.missed(0);
        assert_eq!(missed.records, oldest);
        assert_eq!(missed.resume_at, oldest);
        assert_eq!(missed.through, Some(after(oldest)));
        assert_eq!(missed.resume_after, after(oldest));

        // Only the wanted keys, and nothing at or before the reader's last position.
        let (mut next, mut last) = (oldest, after(18));
        let batch = shard.read_batch(&mut next, &mut last, |key| key == "x", 500);
        assert_eq!((batch.records, next, last), (1, 20, after(20)));
        assert!(batch.advanced);
    }
}
