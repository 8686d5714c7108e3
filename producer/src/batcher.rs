//! One PutRecords request being filled: at most 500 entries and 5 MiB, and under
//! `--ordered` no two entries whose relative order a partial failure could swap.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::record::Entry;

/// Most entries in one PutRecords request.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Most bytes (data and partition keys) in one PutRecords request.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;

/// Whether an entry can join the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// It fits.
    Yes,
    /// The batch is full.
    Full,
    /// Under `--ordered`, the entry must wait for this batch's outcome.
    Conflict,
}

/// What an ordered batch holds for one shard.
#[derive(Debug, Default)]
struct ShardPart {
    /// Partition keys of plain entries.
    keys: HashSet<String>,
    /// Whether an aggregate (many keys at once) is in.
    has_aggregate: bool,
    /// Entries of this shard.
    count: usize,
}

/// A PutRecords request being filled.
#[derive(Debug)]
pub struct Batch {
    /// The entries, in the order they will be sent.
    pub entries: Vec<Entry>,
    /// Bytes counted by Kinesis.
    bytes: usize,
    /// When the batch must go (oldest entry's birth plus linger).
    deadline: Option<Instant>,
    /// Whether per-key order is kept.
    ordered: bool,
    /// Per shard, what is in (ordered batches only).
    parts: HashMap<Arc<str>, ShardPart>,
    /// Set when an entry could not join because of order: send without waiting for linger.
    pub blocked: bool,
    /// Set when an entry could not join because the batch is full.
    pub full: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new(ordered: bool) -> Self {
        Batch {
            entries: Vec::new(),
            bytes: 0,
            deadline: None,
            ordered,
            parts: HashMap::new(),
            blocked: false,
            full: false,
        }
    }

    /// Whether nothing is in.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `entry` can join.
    pub fn admit(&self, entry: &Entry) -> Admit {
        if self.entries.len() >= MAX_BATCH_RECORDS || self.bytes + entry.size() > MAX_BATCH_BYTES {
            return Admit::Full;
        }
        if self.ordered
            && let Some(part) = self.parts.get(&entry.shard)
        {
            // A partial failure could fail one and land the other: never put two entries
            // with a key in common in one request.
            let conflict = part.has_aggregate
                || (entry.aggregated && part.count > 0)
                || part.keys.contains(&entry.partition_key);
            if conflict {
                return Admit::Conflict;
            }
        }
        Admit::Yes
    }

    /// Adds an entry that [`admit`](Self::admit) accepted.
    pub fn push(&mut self, entry: Entry, linger: Duration) {
        let deadline = entry.born + linger;
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        self.bytes += entry.size();
        if self.ordered {
            let part = self.parts.entry(entry.shard.clone()).or_default();
            part.count += 1;
            if entry.aggregated {
                part.has_aggregate = true;
            } else {
                part.keys.insert(entry.partition_key.clone());
            }
        }
        self.entries.push(entry);
    }

    /// When the batch must be sent even if not full.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether it should be sent now.
    pub fn ready(&self, now: Instant, draining: bool) -> bool {
        !self.is_empty()
            && (self.full
                || self.blocked
                || draining
                || self.deadline.is_some_and(|deadline| now >= deadline))
    }

    /// Takes the entries out and resets the batch.
    pub fn take(&mut self) -> Vec<Entry> {
        let entries = std::mem::take(&mut self.entries);
        *self = Batch::new(self.ordered);
        entries
    }

    /// The shards with entries in (ordered batches: the shards to mark busy).
    pub fn shards(&self) -> impl Iterator<Item = &Arc<str>> {
        self.parts.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use bytes::Bytes;

    fn entry(key: &str, shard: &str, size: usize) -> Entry {
        Entry::plain(
            Record {
                seq: 0,
                partition_key: key.into(),
                explicit_hash_key: None,
                data: Bytes::from(vec![0; size]),
                read_at: Instant::now(),
            },
            Arc::from(shard),
        )
    }

    #[test]
    fn limits_count_and_bytes() {
        let mut batch = Batch::new(false);
        for i in 0..MAX_BATCH_RECORDS {
            let e = entry(&i.to_string(), "s", 10);
            assert_eq!(batch.admit(&e), Admit::Yes);
            batch.push(e, Duration::ZERO);
        }
        assert_eq!(batch.admit(&entry("x", "s", 10)), Admit::Full);

        let mut batch = Batch::new(false);
        for i in 0..5 {
            let e = entry(&i.to_string(), "s", 1024 * 1024 - 10);
            assert_eq!(batch.admit(&e), Admit::Yes);
            batch.push(e, Duration::ZERO);
        }
        assert_eq!(batch.admit(&entry("x", "s", 100)), Admit::Full);
    }

    #[test]
    fn ordered_batches_hold_a_key_once_per_shard() {
        let mut batch = Batch::new(true);
        batch.push(entry("a", "s1", 1), Duration::ZERO);
        assert_eq!(batch.admit(&entry("a", "s1", 1)), Admit::Conflict);
        assert_eq!(batch.admit(&entry("b", "s1", 1)), Admit::Yes);
        let mut aggregate = entry("c", "s1", 1);
        aggregate.aggregated = true;
        assert_eq!(batch.admit(&aggregate), Admit::Conflict);
        aggregate.shard = Arc::from("s2");
        assert_eq!(batch.admit(&aggregate), Admit::Yes);
        // Unordered batches take anything.
        let mut batch = Batch::new(false);
        batch.push(entry("a", "s1", 1), Duration::ZERO);
        assert_eq!(batch.admit(&entry("a", "s1", 1)), Admit::Yes);
    }

    #[test]
    fn deadline_is_oldest_birth_plus_linger() {
        let mut batch = Batch::new(false);
        let e = entry("a", "s", 1);
        let born = e.born;
        batch.push(e, Duration::from_millis(100));
        assert_eq!(batch.deadline(), Some(born + Duration::from_millis(100)));
        assert!(!batch.ready(born, false));
        assert!(batch.ready(born, true));
        assert!(batch.ready(born + Duration::from_millis(100), false));
        assert_eq!(batch.take().len(), 1);
        assert!(batch.is_empty() && batch.deadline().is_none());
    }
}
