//! What a subscriber asked for, and why a subscription cannot start or must end.

use std::{
    collections::{BTreeSet, HashSet},
    time::SystemTime,
};

use kinesis_relay_api::cursor::Cursor;

/// Where a subscription starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// At the next record to arrive.
    Latest,
    /// At the oldest record the relay holds.
    Earliest,
    /// Right after the positions of a cursor.
    AfterCursor(Cursor),
    /// At the first record that arrived at or after this time.
    AtTimestamp(SystemTime),
    /// At the oldest record Kinesis holds.
    TrimHorizon,
}

/// What a subscriber lagging behind the ring's tail gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagPolicy {
    /// End the stream with RESOURCE_EXHAUSTED and the cursor.
    Disconnect,
    /// Report a gap and continue from the oldest record held.
    Skip,
    /// Read what it missed from Kinesis, then rejoin the ring.
    CatchUp,
}

/// Partition key filter: empty means everything.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// Exact keys.
    pub keys: HashSet<String>,
    /// Key prefixes.
    pub prefixes: Vec<String>,
}

impl KeyFilter {
    /// Whether a record with this key is sent.
    pub fn matches(&self, key: &str) -> bool {
        (self.keys.is_empty() && self.prefixes.is_empty())
            || self.keys.contains(key)
            || self.prefixes.iter().any(|prefix| key.starts_with(prefix))
    }
}

/// A validated Subscribe request.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// Shards asked for; `None` means all, including later children.
    pub shard_ids: Option<BTreeSet<String>>,
    /// Where to start.
    pub start: Start,
    /// Which records to send.
    pub filter: KeyFilter,
    /// What to do on lag.
    pub on_lag: LagPolicy,
    /// Most records per batch.
    pub max_batch: usize,
}

/// Why a subscription cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// A shard id that the stream does not have.
    #[error("stream {stream:?} has no shard {shard:?}; DescribeStream lists its shards")]
    UnknownShard {
        /// The stream.
        stream: String,
        /// The shard asked for.
        shard: String,
    },
    /// The relay has not listed the stream's shards yet.
    #[error("the relay is still starting to read stream {stream:?}; retry in a moment")]
    Starting {
        /// The stream.
        stream: String,
    },
    /// A cursor of another stream.
    #[error(
        "the cursor belongs to stream {cursor_stream:?}, not {stream:?}; use a cursor from this stream"
    )]
    WrongStream {
        /// The stream subscribed to.
        stream: String,
        /// The stream named in the cursor.
        cursor_stream: String,
    },
    /// The position is older than what the relay holds, and it cannot read older records
    /// itself (it reads another relay, not Kinesis).
    #[error(
        "the requested position in shard {shard:?} is older than the oldest record the relay still holds{oldest_time}; resume with after_cursor {oldest_cursor:?} (the oldest position available) or start from earliest"
    )]
    OutOfRange {
        /// The first shard found out of range.
        shard: String,
        /// A cursor at the oldest position available.
        oldest_cursor: String,
        /// Human description of the oldest arrival time held.
        oldest_time: String,
    },
}

/// Why a running subscription ends early. Each carries the cursor to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// It fell behind the ring under DISCONNECT (or under CATCH_UP on a relay that reads
    /// another relay, which cannot read Kinesis).
    Lagged {
        /// The shard where it fell behind.
        shard: String,
        /// Its cursor.
        cursor: String,
    },
    /// Its position is older than the stream's retention in Kinesis.
    Expired {
        /// What to tell the subscriber.
        message: String,
        /// A cursor positioned before the oldest record Kinesis holds.
        cursor: String,
    },
    /// It waited for its stream to start, and the stream did not start in time or its
    /// request does not fit the stream (an unknown shard).
    Refused(OpenError),
    /// Reading older records from Kinesis failed or found no free reader.
    CatchUpFailed {
        /// What to tell the subscriber.
        message: String,
        /// Its cursor.
        cursor: String,
    },
}
