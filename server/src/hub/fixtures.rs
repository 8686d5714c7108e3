//! Fixtures for the unit tests of the hub and of the subscriptions that read it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use kinesis_relay_api::cursor::Position;

use super::{ReaderState, RingLimits, ShardMeta, StreamHub, entry::RelayRecord, ring::Floor};

/// The position right after sequence number `seq`.
pub fn after(seq: u64) -> Position {
    Position::After {
        sequence: seq.to_string().parse().unwrap(),
        sub_sequence: None,
    }
}

/// A record of sequence number `seq` under `key`, arriving now.
pub fn record(seq: u64, key: &str, data: Bytes) -> RelayRecord {
    RelayRecord {
        partition_key: key.into(),
        data,
        sequence: seq.to_string().parse().unwrap(),
        sub_sequence: None,
        arrival: SystemTime::now(),
        explicit_hash_key: None,
    }
}

/// A hub of stream "s" with one shard, "a", read from its origin; rings of `max_bytes`.
pub fn hub_with_shard_a(max_bytes: usize) -> Arc<StreamHub> {
    let hub = StreamHub::new(
        "s",
        RingLimits {
            max_bytes,
            max_age: Duration::from_secs(60),
        },
    );
    let meta = ShardMeta {
        shard_id: "a".into(),
        parents: vec![],
        hash_key_range: ("0".into(), "1".into()),
    };
    hub.add_shard(meta, Floor::Origin, ReaderState::Reading);
    hub
}
