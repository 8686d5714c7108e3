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
            Floor::Origin => Position::Start,
            Floor::After { position, .. } => position.clone(),
        }
    }

    /// Where to read from to resume right after `position`.
    pub fn seek_after(&self, position: &Position) -> Seek {
        if let Floor::After {
            position: floor, ..
        } = &self.floor
            && position < floor
        {
            return Seek::TooOld;
        }
        let offset = self
            .entries
            .partition_point(|entry| entry.position() <= *position);
        Seek::At(self.base + offset as u64)
    }

    /// Where to read from to start at the first record that arrived at or after `at`.
    pub fn seek_time(&self, at: SystemTime) -> Seek {
        if let Floor::After {
            arrival: Some(arrival),
            ..
        } = &self.floor
            && *arrival >= at
        {
            return Seek::TooOld;
        }
        let offset = self.entries.partition_point(|entry| entry.arrival < at);
        Seek::At(self.base + offset as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;

    use super::*;
    use crate::hub::entry::RelayRecord;

    fn entry(seq: u64) -> Entry {
        Entry::encode(RelayRecord {
            partition_key: "k".into(),
            data: Bytes::from_static(b"x"),
            sequence: seq.to_string().parse().unwrap(),
            sub_sequence: None,
            arrival: UNIX_EPOCH + Duration::from_secs(seq),
            explicit_hash_key: None,
        })
    }

    fn after(seq: u64) -> Position {
        Position::After {
            sequence: seq.to_string().parse().unwrap(),
            sub_sequence: None,
        }
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
