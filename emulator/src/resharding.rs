//! SplitShard, MergeShards and UpdateShardCount: closing shards and creating their children.

use crate::error::KinesisError;
use crate::keyspace::{FULL_RANGE, HashKeyRange};
use crate::state::Store;

impl Store {
    /// Closes `shard_id` and creates two children split at `new_starting_hash_key`.
    pub(crate) fn split_shard(
        &self,
        stream: &str,
        shard_id: &str,
        new_starting_hash_key: u128,
    ) -> Result<(), KinesisError> {
        let mut inner = self.lock();
        let (stream, seqs) = inner.stream_and_seqs(stream)?;
        let shard = stream.shard_mut(shard_id)?;
        if !shard.is_open() {
            return Err(KinesisError::ResourceInUse(format!(
                "Shard {shard_id} is closed"
            )));
        }
        let range = shard.range;
        if new_starting_hash_key <= range.start || new_starting_hash_key > range.end {
            return Err(KinesisError::InvalidArgument(format!(
                "NewStartingHashKey {new_starting_hash_key} is not inside shard {shard_id}'s range ({}, {}]",
                range.start, range.end
            )));
        }
        shard.close(seqs);
        let parents = vec![shard_id.to_owned()];
        let low = HashKeyRange {
            start: range.start,
            end: new_starting_hash_key - 1,
        };
        let high = HashKeyRange {
            start: new_starting_hash_key,
            end: range.end,
        };
        stream.add_shard(parents.clone(), low, seqs);
        stream.add_shard(parents, high, seqs);
        Ok(())
    }

    /// Closes two adjacent shards and creates their merged child.
    pub(crate) fn merge_shards(
        &self,
        stream: &str,
        shard_id: &str,
        adjacent_id: &str,
    ) -> Result<(), KinesisError> {
        let mut inner = self.lock();
        let (stream, seqs) = inner.stream_and_seqs(stream)?;
        let a = stream.shard(shard_id)?;
        let b = stream.shard(adjacent_id)?;
        if !a.is_open() || !b.is_open() {
            return Err(KinesisError::ResourceInUse(
                "both shards to merge must be open".into(),
            ));
        }
        let range = if a.range.end.checked_add(1) == Some(b.range.start) {
            HashKeyRange {
                start: a.range.start,
                end: b.range.end,
            }
        } else if b.range.end.checked_add(1) == Some(a.range.start) {
            HashKeyRange {
                start: b.range.start,
                end: a.range.end,
            }
        } else {
            return Err(KinesisError::InvalidArgument(format!(
                "shards {shard_id} and {adjacent_id} are not adjacent"
            )));
        };
        stream.shard_mut(shard_id)?.close(seqs);
        stream.shard_mut(adjacent_id)?.close(seqs);
        stream.add_shard(
            vec![shard_id.to_owned(), adjacent_id.to_owned()],
            range,
            seqs,
        );
        Ok(())
    }

    /// Closes every open shard and creates `target` uniform shards; each new shard's parents
    /// are the old shards its range overlaps. Returns the previous open shard count.
    pub(crate) fn update_shard_count(
        &self,
        stream: &str,
        target: u32,
    ) -> Result<usize, KinesisError> {
        let mut inner = self.lock();
        let (stream, seqs) = inner.stream_and_seqs(stream)?;
        let current = stream.open_shard_count();
        let target_usize = target as usize;
        if target == 0 || target_usize > current * 2 || target_usize * 2 < current {
            return Err(KinesisError::InvalidArgument(format!(
                "TargetShardCount {target} must be between half and double the open shard count {current}"
            )));
        }
        let old: Vec<(String, HashKeyRange)> = stream
            .shards
            .iter()
            .filter(|s| s.is_open())
            .map(|s| (s.id.clone(), s.range))
            .collect();
        for shard in stream.shards.iter_mut().filter(|s| s.is_open()) {
            shard.close(seqs);
        }
        for range in FULL_RANGE.split_evenly(target) {
            let parents = old
                .iter()
                .filter(|(_, r)| r.start <= range.end && range.start <= r.end)
                .map(|(id, _)| id.clone())
                .collect();
            stream.add_shard(parents, range, seqs);
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::state::{Store, shard_id};
    use std::sync::Arc;

    #[test]
    fn split_then_merge_builds_the_tree() {
        let store = Store::new(Arc::new(Settings::default()));
        store.create_stream("s", 1, false).unwrap();
        store.split_shard("s", &shard_id(0), 1 << 127).unwrap();
        store.merge_shards("s", &shard_id(2), &shard_id(1)).unwrap();
        let inner = store.lock();
        let stream = inner.stream("s").unwrap();
        assert_eq!(stream.open_shard_count(), 1);
        assert_eq!(stream.shards[3].parents, vec![shard_id(2), shard_id(1)]);
        assert_eq!(stream.shards[3].range.start, 0);
        assert_eq!(stream.shards[3].range.end, u128::MAX);
        assert!(stream.shards[0].ending_seq.unwrap() < stream.shards[1].starting_seq);
    }

    #[test]
    fn split_outside_the_range_is_refused() {
        let store = Store::new(Arc::new(Settings::default()));
        store.create_stream("s", 2, false).unwrap();
        assert!(store.split_shard("s", &shard_id(1), 5).is_err());
        assert!(store.merge_shards("s", &shard_id(0), &shard_id(0)).is_err());
    }
}
