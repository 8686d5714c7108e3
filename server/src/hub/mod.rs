//! The hub: what the relay holds of each stream, shared by the shard readers that fill it
//! and the subscribers that read it.
//!
//! One [`StreamHub`] per stream holds one [`ShardRing`] per shard plus what `DescribeStream`
//! reports. Readers append; every append bumps a version number that wakes subscribers, which
//! then read from their own positions. The rings of a stream share one byte budget, and
//! records older than the age limit are dropped, so memory is bounded by the rings whatever
//! the number of subscribers.
//!
//! Everything outside `hub/` reads a stream through [`StreamHub::view`] (the read API in
//! `view.rs`): the ring's invariants (dedupe, floors, eviction, ages) live here alone.
//!
//! # Layout
//! - `mod.rs`: [`StreamHub`], the lock around a stream's state and every change to it.
//! - `view.rs`: the read API: [`StreamView`] and [`ShardView`] (seek, read a batch, floor,
//!   status, counters).
//! - `state.rs`: that state as plain data (shards, consumer, counters, status).
//! - `ring.rs`: one shard's records, floors and seeking.
//! - `batch.rs`: one reader's batch of a ring's records, as slices of their blocks.
//! - `entry.rs`: a record as encoded once for every subscriber.
//! - `delay.rs`, `ends.rs`: the delivery-delay histogram and subscriber-end counters.

pub mod batch;
pub mod delay;
pub mod ends;
pub mod entry;
pub mod ring;
mod state;

#[cfg(test)]
pub(crate) mod fixtures;
mod view;

use std::{
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use kinesis_relay_api::cursor::Position;
use tokio::sync::watch;

pub use self::state::{
    ConsumerInfo, ReaderState, RingLimits, ShardCounters, ShardMeta, StreamCounters,
};
pub use self::view::{Missed, SeekTo, ShardView, StreamView};
use self::{
    entry::{Entry, RelayRecord},
    ring::{Floor, ShardRing},
    state::{ShardSlot, StreamState},
};

/// Everything the relay holds of one stream.
#[derive(Debug)]
pub struct StreamHub {
    /// The stream name.
    name: String,
    /// Ring bounds.
    limits: RingLimits,
    /// Shards and rings. A std lock: it is never held across an await.
    state: RwLock<StreamState>,
    /// Bumped on every change subscribers may care about (records, shard ends, new shards).
    version: watch::Sender<u64>,
    /// Live subscribers.
    subscribers: AtomicUsize,
    /// Subscriber-side counters.
    pub counters: StreamCounters,
}

/// Counts a subscriber for as long as it lives.
#[derive(Debug)]
pub struct SubscriberGuard(Arc<StreamHub>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StreamHub {
    /// An empty hub for `name`.
    pub fn new(name: impl Into<String>, limits: RingLimits) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            limits,
            state: RwLock::new(StreamState::default()),
            version: watch::Sender::new(0),
            subscribers: AtomicUsize::new(0),
            counters: StreamCounters::default(),
        })
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A consistent read of the stream through the read API; holds the read lock until
    /// dropped (never across an await).
    pub fn view(&self) -> StreamView<'_> {
        StreamView::new(self.read())
    }

    /// The state itself: only the hub reads it so; everything else reads through
    /// [`StreamHub::view`].
    fn read(&self) -> RwLockReadGuard<'_, StreamState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, StreamState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|version| *version += 1);
    }

    /// A receiver that wakes on every change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Registers a subscriber until the guard drops.
    pub fn add_subscriber(self: &Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(Arc::clone(self))
    }

    /// Live subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Records the consumer.
    pub fn set_consumer(&self, consumer: ConsumerInfo) {
        self.write().consumer = consumer;
    }

    /// Marks the shard list as known (the stream leaves STARTING).
    pub fn set_started(&self) {
        self.write().started = true;
        self.bump();
    }

    /// Marks ingest as stopped.
    pub fn set_stopped(&self) {
        self.write().stopped = true;
        self.bump();
    }

    /// Adds a shard if it is not known yet. `floor` says what precedes the first record the
    /// relay will append (see [`Floor`]).
    pub fn add_shard(&self, meta: ShardMeta, floor: Floor, state: ReaderState) {
        let mut guard = self.write();
        if guard.shards.contains_key(&meta.shard_id) {
            return;
        }
        let last_position = match &floor {
            Floor::After { position, .. } => Some(position.clone()),
            Floor::Origin | Floor::Unknown => None,
        };
        guard.shards.insert(
            meta.shard_id.clone(),
            ShardSlot {
                meta,
                ring: ShardRing::new(floor),
                state,
                children: Vec::new(),
                millis_behind: 0,
                last_position,
                counters: ShardCounters::default(),
            },
        );
        drop(guard);
        self.bump();
    }

    /// Learns the position before a shard's first record when the relay began reading it
    /// part way (see [`Floor::Unknown`]) and nothing was appended yet.
    pub fn settle_floor(&self, shard_id: &str, position: Position) {
        let mut guard = self.write();
        if let Some(slot) = guard.shards.get_mut(shard_id)
            && slot.ring.floor() == &Floor::Unknown
            && slot.ring.is_empty()
        {
            slot.ring.settle_floor(position.clone());
            slot.last_position.get_or_insert(position);
        }
    }

    /// Sets a shard's reader state.
    pub fn set_state(&self, shard_id: &str, state: ReaderState) {
        if let Some(slot) = self.write().shards.get_mut(shard_id) {
            slot.state = state;
        }
    }

    /// Appends records read from `shard_id` (in sequence order) and returns how many were
    /// new. Records at or before the last appended position are dropped as duplicates.
    pub fn append(&self, shard_id: &str, records: Vec<RelayRecord>, millis_behind: i64) -> usize {
        let now = SystemTime::now();
        // Encoded before taking the lock, together, so that subscribers can send runs of
        // them as one slice.
        let data_lens: Vec<usize> = records.iter().map(|record| record.data.len()).collect();
        let entries = Entry::encode_all(records);
        let mut guard = self.write();
        let state = &mut *guard;
        let Some(slot) = state.shards.get_mut(shard_id) else {
            return 0;
        };
        slot.millis_behind = millis_behind;
        let mut appended = 0;
        for (entry, data_len) in entries.into_iter().zip(data_lens) {
            let position = entry.position();
            if slot
                .last_position
                .as_ref()
                .is_some_and(|last| position <= *last)
            {
                continue;
            }
            slot.last_position = Some(position);
            slot.counters.records_in += 1;
            slot.counters.bytes_in += data_len as u64;
            state.bytes += entry.cost();
            slot.ring.push(entry);
            appended += 1;
        }
        Self::evict(state, &self.limits, now);
        drop(guard);
        if appended > 0 {
            self.bump();
        }
        appended
    }

    /// Counts a subscription start (first or renewal) of a shard.
    pub fn count_subscription(&self, shard_id: &str) {
        if let Some(slot) = self.write().shards.get_mut(shard_id) {
            slot.counters.subscriptions += 1;
        }
    }

    /// Counts a subscription error of a shard.
    pub fn count_error(&self, shard_id: &str, kind: &'static str) {
        if let Some(slot) = self.write().shards.get_mut(shard_id) {
            *slot.counters.errors.entry(kind).or_default() += 1;
        }
    }

    /// Updates the distance to the tip without records.
    pub fn set_millis_behind(&self, shard_id: &str, millis_behind: i64) {
        if let Some(slot) = self.write().shards.get_mut(shard_id) {
            slot.millis_behind = millis_behind;
        }
    }

    /// Marks a shard as read to its end, with its children.
    pub fn finish_shard(&self, shard_id: &str, children: Vec<String>) {
        if let Some(slot) = self.write().shards.get_mut(shard_id) {
            slot.state = ReaderState::Finished;
            slot.children = children;
            slot.millis_behind = 0;
        }
        self.bump();
    }

    /// Drops records past the age limit; called periodically so idle streams age too.
    pub fn evict_expired(&self) {
        let mut guard = self.write();
        Self::evict(&mut guard, &self.limits, SystemTime::now());
    }

    fn evict(state: &mut StreamState, limits: &RingLimits, now: SystemTime) {
        let oldest_allowed = now
            .checked_sub(limits.max_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for slot in state.shards.values_mut() {
            while slot
                .ring
                .front()
                .is_some_and(|entry| entry.arrival < oldest_allowed)
            {
                state.bytes -= slot.ring.evict_front();
            }
        }
        while state.bytes > limits.max_bytes {
            // Drop the oldest record of the stream, whichever shard holds it.
            let Some(slot) = state
                .shards
                .values_mut()
                .filter(|slot| !slot.ring.is_empty())
                .min_by_key(|slot| slot.ring.front().map(|entry| entry.arrival))
            else {
                break;
            };
            state.bytes -= slot.ring.evict_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn record(seq: u64, size: usize) -> RelayRecord {
        RelayRecord {
            partition_key: "k".into(),
            data: Bytes::from(vec![0u8; size]),
            sequence: seq.to_string().parse().unwrap(),
            sub_sequence: None,
            arrival: SystemTime::now(),
            explicit_hash_key: None,
        }
    }

    fn meta(id: &str) -> ShardMeta {
        ShardMeta {
            shard_id: id.into(),
            parents: vec![],
            hash_key_range: ("0".into(), "1".into()),
        }
    }

    #[test]
    fn drops_duplicates_and_stays_within_the_byte_budget() {
        let hub = StreamHub::new(
            "s",
            RingLimits {
                max_bytes: 10_000,
                max_age: Duration::from_secs(60),
            },
        );
        hub.add_shard(meta("a"), Floor::Origin, ReaderState::Reading);
        hub.add_shard(meta("b"), Floor::Origin, ReaderState::Reading);
        assert_eq!(hub.append("a", vec![record(1, 10), record(2, 10)], 0), 2);
        assert_eq!(hub.append("a", vec![record(2, 10), record(3, 10)], 0), 1);
        for seq in 10..200 {
            hub.append(
                if seq % 2 == 0 { "a" } else { "b" },
                vec![record(seq, 100)],
                0,
            );
        }
        let state = hub.read();
        assert!(state.bytes <= 10_000, "{} bytes held", state.bytes);
        let held: usize = state.shards.values().map(|slot| slot.ring.bytes()).sum();
        assert_eq!(held, state.bytes);
        assert!(state.shards["a"].ring.base() > 0);
    }

    #[test]
    fn evicts_by_age() {
        let hub = StreamHub::new(
            "s",
            RingLimits {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(60),
            },
        );
        hub.add_shard(meta("a"), Floor::Origin, ReaderState::Reading);
        let mut old = record(1, 10);
        old.arrival = SystemTime::now() - Duration::from_secs(120);
        hub.append("a", vec![old, record(2, 10)], 0);
        let state = hub.read();
        assert_eq!(state.shards["a"].ring.len(), 1);
        assert_eq!(state.shards["a"].ring.base(), 1);
    }
}
