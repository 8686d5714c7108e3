//! The window of one catch-up reader: the records it fetched from Kinesis and not yet
//! dropped, shared by every subscriber reading the shard from nearby positions.
//!
//! It is a [`ShardRing`] like the hub's, so seeking, reading batches and eviction work the
//! same way, plus what the reader learned: the end of the shard, how far behind the tip it
//! is, that the position it started from has expired, or that it failed for good.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use kinesis_relay_api::{cursor::Position, sequence::SequenceNumber};
use tokio::sync::Notify;

use super::From;
use crate::hub::ring::{Floor, Seek, ShardRing};

/// The oldest record Kinesis still held when a reader found its start position expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The position the reader was asked to start after (no longer retained).
    pub asked: Position,
    /// The oldest record retained.
    pub oldest: SequenceNumber,
    /// When it arrived.
    pub oldest_arrival: SystemTime,
}

impl Expired {
    /// The position just before the oldest record retained: where reading goes on.
    pub fn resume_position(&self) -> Position {
        match self.oldest.predecessor() {
            Some(sequence) => Position::After {
                sequence,
                sub_sequence: None,
            },
            None => Position::Start,
        }
    }
}

/// What the reader and its subscribers share.
#[derive(Debug)]
pub struct WindowState {
    /// The records fetched, oldest first.
    pub ring: ShardRing,
    /// Where the reader started.
    pub start: From,
    /// The shard is closed and every record of it was fetched.
    pub finished: bool,
    /// Its children, as the last GetRecords listed them.
    pub children: Vec<String>,
    /// Distance to the tip of the shard, from the last GetRecords.
    pub millis_behind: i64,
    /// Set when the start position turned out older than the stream's retention.
    pub expired: Option<Expired>,
    /// Set when the reader gave up; subscribers end with UNAVAILABLE and their cursor.
    pub failed: Option<String>,
    /// Set when the reader stopped (for any reason): subscribers that still need records
    /// it did not fetch attach again.
    pub stopped: bool,
    /// Next index of every subscriber attached, by attachment id.
    readers: HashMap<u64, u64>,
    next_id: u64,
}

impl WindowState {
    /// The smallest next index of the subscribers attached (the end when none is).
    pub fn slowest(&self) -> u64 {
        self.readers
            .values()
            .copied()
            .min()
            .unwrap_or(self.ring.end())
    }

    /// The largest next index of the subscribers attached.
    pub fn fastest(&self) -> Option<u64> {
        self.readers.values().copied().max()
    }

    /// Where a subscriber starting at `from` reads in this window, if it can.
    pub fn seek(&self, from: &From) -> Option<u64> {
        if self.failed.is_some() || self.expired.is_some() || self.stopped && !self.finished {
            return None;
        }
        // The same start as the reader's: everything it fetched, if none was dropped.
        if *from == self.start && self.ring.base() == 0 {
            return Some(0);
        }
        match from {
            // Past the last record fetched, the reader would have to fetch what lies between
            // for nothing (the position may be far ahead): only a position it has reached.
            From::After(position) => match self.ring.seek_after(position) {
                Seek::At(index)
                    if index < self.ring.end() || self.ring.position_before(index) == *position =>
                {
                    Some(index)
                }
                _ => None,
            },
            From::AtTimestamp(at) => match self.ring.seek_time(*at) {
                Seek::At(index) => Some(index),
                Seek::TooOld => None,
            },
        }
    }
}

/// The shared window of one reader.
#[derive(Debug)]
pub struct Window {
    /// The shard read.
    pub shard_id: String,
    state: Mutex<WindowState>,
    /// Wakes the reader when a subscriber moved (it may want more).
    pub wanted: Notify,
}

impl Window {
    /// An empty window for a reader of `shard_id` starting at `start`.
    pub fn new(shard_id: String, start: From) -> Arc<Self> {
        let floor = match &start {
            From::After(Position::Start) => Floor::Origin,
            From::After(position) => Floor::After {
                position: position.clone(),
                arrival: None,
            },
            From::AtTimestamp(_) => Floor::Unknown,
        };
        Arc::new(Self {
            shard_id,
            state: Mutex::new(WindowState {
                ring: ShardRing::new(floor),
                start,
                finished: false,
                children: Vec::new(),
                millis_behind: 0,
                expired: None,
                failed: None,
                stopped: false,
                readers: HashMap::new(),
                next_id: 0,
            }),
            wanted: Notify::new(),
        })
    }

    /// Locks the state (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a subscriber at `next`; the returned id reports its progress.
    pub fn attach(&self, next: u64) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.readers.insert(id, next);
        id
    }

    /// Records how far subscriber `id` has read, and wakes the reader.
    pub fn progress(&self, id: u64, next: u64) {
        self.lock().readers.insert(id, next);
        self.wanted.notify_one();
    }

    /// Forgets subscriber `id`.
    pub fn detach(&self, id: u64) {
        self.lock().readers.remove(&id);
        self.wanted.notify_one();
    }
}

/// A subscriber's place in a window; detaches when dropped.
#[derive(Debug)]
pub struct Attached {
    /// The window.
    pub window: Arc<Window>,
    /// Absolute index of the next record to read.
    pub next: u64,
    id: u64,
}

impl Attached {
    /// Attaches at `next`.
    pub fn new(window: Arc<Window>, next: u64) -> Self {
        let id = window.attach(next);
        Self { window, next, id }
    }

    /// Reports the subscriber's progress to the reader.
    pub fn report(&self) {
        self.window.progress(self.id, self.next);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.window.detach(self.id);
    }
}
