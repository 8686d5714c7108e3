//! Which shard a record goes to: hash key ranges from ListShards, MD5 of the partition key.

use std::sync::Arc;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::Shard;
use md5::{Digest, Md5};

use crate::error::{ProducerError, RequestFailure, classify};

/// The open shards of a stream and their hash key ranges.
#[derive(Debug, Clone, Default)]
pub struct ShardMap {
    /// `(starting hash key, ending hash key, shard id)`, sorted, not overlapping.
    ranges: Vec<(u128, u128, Arc<str>)>,
}

/// The 128-bit hash Kinesis routes a record by: the explicit hash key if set, otherwise the
/// MD5 of the partition key read as a big-endian number.
pub fn hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> u128 {
    if let Some(explicit) = explicit_hash_key.and_then(|k| k.parse::<u128>().ok()) {
        return explicit;
    }
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

impl ShardMap {
    /// Builds the map from ListShards output, keeping only open shards (no ending
    /// sequence number): closed parents take no writes.
    pub fn from_shards(shards: &[Shard]) -> Self {
        let mut ranges: Vec<(u128, u128, Arc<str>)> = shards
            .iter()
            .filter(|shard| {
                shard
                    .sequence_number_range()
                    .is_none_or(|range| range.ending_sequence_number().is_none())
            })
            .filter_map(|shard| {
                let range = shard.hash_key_range()?;
                Some((
                    range.starting_hash_key().parse().ok()?,
                    range.ending_hash_key().parse().ok()?,
                    Arc::from(shard.shard_id()),
                ))
            })
            .collect();
        ranges.sort();
        ShardMap { ranges }
    }

    /// Number of open shards.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no shard is known.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The open shard ids.
    pub fn shard_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.ranges.iter().map(|(_, _, id)| id)
    }

    /// Whether `shard_id` is an open shard of this map.
    pub fn contains(&self, shard_id: &str) -> bool {
        self.ranges.iter().any(|(_, _, id)| &**id == shard_id)
    }

    /// The shard that owns `hash`.
    pub fn shard_for_hash(&self, hash: u128) -> Option<&Arc<str>> {
        let index = self.ranges.partition_point(|(start, _, _)| *start <= hash);
        let (start, end, id) = self.ranges.get(index.checked_sub(1)?)?;
        (*start <= hash && hash <= *end).then_some(id)
    }

    /// The shard a record with these keys goes to.
    pub fn predict(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
    ) -> Option<&Arc<str>> {
        self.shard_for_hash(hash_key(partition_key, explicit_hash_key))
    }

    /// Reads the shard map of `stream` with ListShards (all pages).
    pub async fn list(
        client: &Client,
        stream: &str,
        region: &str,
    ) -> Result<ShardMap, ProducerError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                // With a token, the stream name must not be repeated.
                Some(token) => client.list_shards().next_token(token),
                None => client.list_shards().stream_name(stream),
            };
            let output = request.send().await.map_err(|err| {
                match classify(&err, "ListShards", stream, region) {
                    RequestFailure::Fatal(fatal) => fatal,
                    RequestFailure::Retry { code, .. }
                        if code == "DispatchFailure" || code == "Timeout" =>
                    {
                        ProducerError::EndpointUnreachable(crate::error::chain(&err))
                    }
                    RequestFailure::Retry { code, .. } => ProducerError::Aws {
                        operation: "ListShards",
                        message: format!("{code}: {}", crate::error::chain(&err)),
                    },
                    RequestFailure::FailEntries { code, message } => ProducerError::Aws {
                        operation: "ListShards",
                        message: format!("{code}: {message}"),
                    },
                }
            })?;
            shards.extend_from_slice(output.shards());
            next_token = output.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        Ok(ShardMap::from_shards(&shards))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        let mut range = SequenceNumberRange::builder().starting_sequence_number("1");
        if closed {
            range = range.ending_sequence_number("2");
        }
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key(start.to_string())
                    .ending_hash_key(end.to_string())
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(range.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn predicts_by_md5_and_skips_closed_shards() {
        let half = u128::MAX / 2;
        let map = ShardMap::from_shards(&[
            shard("parent", 0, u128::MAX, true),
            shard("low", 0, half, false),
            shard("high", half + 1, u128::MAX, false),
        ]);
        assert_eq!(map.len(), 2);
        assert!(!map.contains("parent"));
        // MD5("a") = 0cc175b9..., in the low half; MD5("b") = 92eb5ffe..., in the high half.
        assert_eq!(&**map.predict("a", None).unwrap(), "low");
        assert_eq!(&**map.predict("b", None).unwrap(), "high");
        assert_eq!(&**map.predict("b", Some("0")).unwrap(), "low");
        assert_eq!(&**map.shard_for_hash(u128::MAX).unwrap(), "high");
    }

    #[test]
    fn hash_is_big_endian_md5() {
        assert_eq!(hash_key("a", None), 0x0cc175b9c0f1b6a831c399e269772661);
        assert_eq!(hash_key("a", Some("42")), 42);
    }

    #[test]
    fn gaps_predict_nothing() {
        let map = ShardMap::from_shards(&[shard("only", 10, 20, false)]);
        assert!(map.shard_for_hash(5).is_none());
        assert!(map.shard_for_hash(21).is_none());
        assert_eq!(&**map.shard_for_hash(15).unwrap(), "only");
    }
}
