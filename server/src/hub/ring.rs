//! The append-only ring of one shard.
//!
//! Records are addressed by an absolute index that only grows; the ring holds the window
//! `[base, base + len)`. Subscribers keep their own next index, so reading never copies a
//! record and replay from anywhere in the window is free. Eviction (by the stream's byte
//! budget and by age) moves `base` forward; a subscriber whose index falls below it has
//! lagged.

use std::{collections::VecDeque, time::SystemTime};

use kinesis_relay_api::cursor::Position;

use super::entry::Entry;

/// What is known of the records before the ring's first entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Floor {
    /// Nothing was evicted since the relay began reading the shard: every record the relay
    /// relayed from it is held, so any cursor position is served from the first entry on.
    Origin,
    /// Records up to and including this position are not held (evicted, or before the
    /// checkpoint the relay resumed from).
    After {
        /// The last record not held.
        position: Position,
        /// Its arrival time, when known.
        arrival: Option<SystemTime>,
    },
    /// The relay began reading part way through the shard (at LATEST or a timestamp) and
    /// does not know what precedes its first entry: only positions at or after an entry
    /// held are served from the ring.
    Unknown,
}

/// Where a requested position falls in the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seek {
    /// Read from this absolute index on.
    At(u64),
    /// The position is older than what the ring holds.
    TooOld,
}

/// One shard's window of records.
#[derive(Debug)]
pub struct ShardRing {
    /// The records held, oldest first.
    entries: VecDeque<Entry>,
    /// Absolute index of `entries[0]`.
    base: u64,
    /// What precedes `entries[0]`.
    floor: Floor,
    /// Sum of [`Entry::cost`] over `entries`.
    bytes: usize,
}

impl ShardRing {
    /// An empty ring with the given floor.
    pub fn new(floor: Floor) -> Self {
        Self {
            entries: VecDeque::new(),
            base: 0,
            floor,
            bytes: 0,
        }
    }

    /// Absolute index of the oldest entry held.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Absolute index the next appended entry gets.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The floor.
    pub fn floor(&self) -> &Floor {
        &self.floor
    }

    /// The oldest entry held.
    pub fn front(&self) -> Option<&Entry> {
        self.entries.front()
    }

    /// The newest entry held.
    pub fn back(&self) -> Option<&Entry> {
        self.entries.back()
    }

    /// Appends a record; the caller guarantees increasing positions.
    pub fn push(&mut self, entry: Entry) {
        self.bytes += entry.cost();
        self.entries.push_back(entry);
    }

    /// Drops the oldest entry and returns its cost.
    pub fn evict_front(&mut self) -> usize {
        match self.entries.pop_front() {
            Some(entry) => {
                self.base += 1;
                let cost = entry.cost();
                self.bytes -= cost;
                self.floor = Floor::After {
                    position: entry.position(),
                    arrival: Some(entry.arrival),
                };
                cost
            }
            None => 0,
        }
    }

    /// The entry at an absolute index, if held.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(self.base)
            .and_then(|offset| self.entries.get(offset as usize))
    }

    /// The position just before absolute index `index` (what a cursor records once the
    /// entries before `index` were read).
    pub fn position_before(&self, index: u64) -> Position {
        if index > self.base
            && let Some(entry) = self.get(index - 1)
        {
            return entry.position();
        }
        match &self.floor {
            // Unknown: an empty ring that began at LATEST; the next record is the first the
            // subscriber wants, so "before the first record" is what the cursor says.
            Floor::Origin | Floor::Unknown => Position::Start,
            Floor::After { position, .. } => position.clone(),
        }
    }

    /// Where to read from to resume right after `position`.
    pub fn seek_after(&self, position: &Position) -> Seek {
        let held = match &self.floor {
            Floor::Origin => true,
            Floor::After {
                position: floor, ..
            } => position >= floor,
            // Only from an entry held on: what lies between it and its predecessor is unknown.
            Floor::Unknown => self
                .entries
                .front()
                .is_some_and(|first| first.position() <= *position),
        };
        if !held {
            return Seek::TooOld;
        }
        let offset = self
            .entries
            .partition_point(|entry| entry.position() <= *position);
        Seek::At(self.base + offset as u64)
    }

    /// Where to read from to start at the first record that arrived at or after `at`.
    pub fn seek_time(&self, at: SystemTime) -> Seek {
        let held = match &self.floor {
            Floor::Origin => true,
            Floor::After {
                arrival: Some(arrival),
                ..
            } => *arrival < at,
            // The floor's arrival time is not known: only a held entry that arrived before
            // `at` proves that nothing arriving at or after it is missing.
            Floor::After { arrival: None, .. } | Floor::Unknown => {
                self.entries.front().is_some_and(|first| first.arrival < at)
            }
        };
        if !held {
            return Seek::TooOld;
        }
        let offset = self.entries.partition_point(|entry| entry.arrival < at);
        Seek::At(self.base + offset as u64)
    }

    /// Learns what precedes the first entry of a ring whose floor was unknown, while it is
    /// still empty (the continuation of a subscription's first event).
    pub fn settle_floor(&mut self, position: Position) {
        if self.floor == Floor::Unknown && self.entries.is_empty() {
            self.floor = Floor::After {
                position,
                arrival: None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;

    use super::*;
    use crate::hub::{
        entry::RelayRecord,
        fixtures::{after, record},
    };

    /// A record that arrived `seq` seconds after the epoch, for seeking by time.
    fn entry(seq: u64) -> Entry {
        Entry::encode(RelayRecord {
            arrival: UNIX_EPOCH + Duration::from_secs(seq),
            ..record(seq, "k", Bytes::from_static(b"x"))
        })
    }

    #[test]
    fn seeks_and_evicts() {
        let mut ring = ShardRing::new(Floor::Origin);
        for seq in [10, 20, 30] {
            ring.push(entry(seq));
        }
        assert_eq!(ring.seek_after(&Position::Start), Seek::At(0));
        assert_eq!(ring.seek_after(&after(10)), Seek::At(1));
        assert_eq!(ring.seek_after(&after(15)), Seek::At(1));
        assert_eq!(ring.seek_after(&after(30)), Seek::At(3));
        assert_eq!(
            ring.seek_time(UNIX_EPOCH + Duration::from_secs(20)),
            Seek::At(1)
        );
        ring.evict_front();
        assert_eq!(ring.base(), 1);
        assert_eq!(ring.seek_after(&Position::Start), Seek::TooOld);
        assert_eq!(ring.seek_after(&after(5)), Seek::TooOld);
        assert_eq!(ring.seek_after(&after(10)), Seek::At(1));
        assert_eq!(
            ring.seek_time(UNIX_EPOCH + Duration::from_secs(10)),
            Seek::TooOld
        );
        assert_eq!(ring.position_before(1), after(10));
        assert_eq!(ring.position_before(3), after(30));
        assert!(ring.get(0).is_none());
        assert_eq!(ring.get(2).unwrap().sequence.as_str(), "30");
    }

    #[test]
    fn an_unknown_floor_serves_only_from_a_held_entry() {
        let mut ring = ShardRing::new(Floor::Unknown);
        assert_eq!(ring.seek_after(&after(5)), Seek::TooOld);
        assert_eq!(ring.seek_time(UNIX_EPOCH), Seek::TooOld);
        ring.push(entry(10));
        ring.push(entry(20));
        assert_eq!(ring.seek_after(&after(5)), Seek::TooOld);
        assert_eq!(ring.seek_after(&after(10)), Seek::At(1));
        assert_eq!(
            ring.seek_time(UNIX_EPOCH + Duration::from_secs(10)),
            Seek::TooOld
        );
        assert_eq!(
            ring.seek_time(UNIX_EPOCH + Duration::from_secs(11)),
            Seek::At(1)
        );
        let mut settled = ShardRing::new(Floor::Unknown);
        settled.settle_floor(after(7));
        assert_eq!(settled.seek_after(&after(7)), Seek::At(0));
        assert_eq!(settled.seek_after(&after(6)), Seek::TooOld);
    }

    #[test]
    fn byte_accounting_returns_to_zero() {
        let mut ring = ShardRing::new(Floor::Origin);
        ring.push(entry(1));
        ring.push(entry(2));
        assert!(ring.bytes() > 0);
        ring.evict_front();
        ring.evict_front();
        assert_eq!(ring.bytes(), 0);
        assert_eq!(ring.evict_front(), 0);
    }
}
