//! One subscriber's reading of a stream hub: its position in every shard, its filter, and
//! the events it has yet to send.
//!
//! A [`Subscription`] is plain state driven by [`Subscription::poll`]: it reads what is new
//! in the rings since its positions, applies the lag policy, and turns it into encoded
//! responses. The gRPC task around it only waits for changes and writes.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    time::SystemTime,
};

use bytes::Bytes;
use kinesis_relay_api::{
    cursor::{Cursor, Position, encode_positions},
    v1,
};

use crate::{
    hub::{
        StreamHub, StreamState,
        entry::Entry,
        ring::{Floor, Seek, ShardRing},
    },
    service::encode::EncodedResponse,
};

/// A batch ends once it holds this many bytes of records. Small enough that a response is
/// copied and written while it is in the CPU cache, and that the response each subscriber
/// has in flight costs little memory (1,000 subscribers under load held 5 times less than
/// with 3 MiB batches, and the relay delivered about 1.3 times more); large enough that the
/// per-response cost is spread over many records.
const BATCH_BYTES: usize = 64 << 10;
/// Never more than this in one batch: with a Kinesis record at most 1 MiB, responses stay
/// under gRPC's default 4 MiB message limit.
const MAX_BATCH_BYTES: usize = 3 << 20;
/// Records looked at per batch, sent or filtered out, so that a filtering subscriber holds
/// the hub's read lock only briefly.
const MAX_SCAN: u64 = 4096;

/// Where a subscription starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// At the next record to arrive.
    Latest,
    /// At the oldest record held.
    Earliest,
    /// Right after the positions of a cursor.
    AfterCursor(Cursor),
    /// At the first record that arrived at or after this time.
    AtTimestamp(SystemTime),
}

/// What a subscriber lagging behind the ring's tail gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagPolicy {
    /// End the stream with RESOURCE_EXHAUSTED and the cursor.
    Disconnect,
    /// Report a gap and continue from the oldest record held.
    Skip,
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
    /// The position is older than what the relay holds.
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

/// The subscriber fell behind and its policy is DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lagged {
    /// Its cursor, to resume from.
    pub cursor: String,
    /// The shard where it fell behind.
    pub shard: String,
}

/// A subscriber's position in one shard.
#[derive(Debug, Clone)]
struct ShardPosition {
    /// Absolute ring index of the next record to read.
    next: u64,
    /// Position of the last record read (sent or filtered out).
    last: Position,
    /// Whether a STARTED event is due when the shard becomes readable (shards that appear
    /// after the subscription started).
    announce: bool,
    /// Whether the shard was read to its end and ENDED was sent.
    ended: bool,
    /// Whether the position is older than the ring although `next` is not below its base
    /// (a shard learned after resuming from an old cursor): the lag policy applies.
    behind: bool,
}

/// One subscriber's state.
#[derive(Debug)]
pub struct Subscription {
    /// The stream.
    stream: String,
    /// Whether shards appearing later are followed.
    all_shards: bool,
    /// Position per shard read.
    shards: BTreeMap<String, ShardPosition>,
    /// Record filter.
    filter: KeyFilter,
    /// Lag policy.
    on_lag: LagPolicy,
    /// Most records per batch.
    max_batch: usize,
    /// Positions of the cursor it resumed from, for shards the relay learns later.
    resumed: BTreeMap<String, Position>,
}

impl Subscription {
    /// Positions a new subscription in the hub.
    pub fn open(hub: &StreamHub, spec: SubscriptionSpec) -> Result<Self, OpenError> {
        let state = hub.read();
        let stream = hub.name().to_owned();
        if !state.started {
            return Err(OpenError::Starting { stream });
        }
        if let Start::AfterCursor(cursor) = &spec.start
            && cursor.stream != stream
        {
            return Err(OpenError::WrongStream {
                stream,
                cursor_stream: cursor.stream.clone(),
            });
        }
        let wanted: Vec<String> = match &spec.shard_ids {
            Some(ids) => {
                for id in ids {
                    if !state.shards.contains_key(id) {
                        return Err(OpenError::UnknownShard {
                            stream,
                            shard: id.clone(),
                        });
                    }
                }
                ids.iter().cloned().collect()
            }
            None => state.shards.keys().cloned().collect(),
        };
        let mut shards = BTreeMap::new();
        for id in wanted {
            let ring = &state.shards[&id].ring;
            let seek = match &spec.start {
                Start::Latest => Seek::At(ring.end()),
                Start::Earliest => Seek::At(ring.base()),
                Start::AfterCursor(cursor) => {
                    ring.seek_after(cursor.shards.get(&id).unwrap_or(&Position::Start))
                }
                Start::AtTimestamp(at) => ring.seek_time(*at),
            };
            let next = match seek {
                Seek::At(next) => next,
                Seek::TooOld => {
                    return Err(OpenError::OutOfRange {
                        shard: id,
                        oldest_cursor: oldest_cursor(&stream, &state),
                        oldest_time: state
                            .oldest_arrival()
                            .map(|at| format!(" (arrived {})", format_time(at)))
                            .unwrap_or_default(),
                    });
                }
            };
            let last = match &spec.start {
                // Keep the cursor's own position: the next cursor then covers what it did.
                Start::AfterCursor(cursor) => cursor
                    .shards
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| ring.position_before(next)),
                _ => ring.position_before(next),
            };
            // A shard that ended before this subscription reaches past it is done already:
            // no ENDED event for history the subscriber never asked about.
            let ended = state.shards[&id].finished()
                && next >= ring.end()
                && !matches!(spec.start, Start::AfterCursor(_));
            shards.insert(
                id,
                ShardPosition {
                    next,
                    last,
                    announce: false,
                    ended,
                    behind: false,
                },
            );
        }
        Ok(Self {
            stream,
            all_shards: spec.shard_ids.is_none(),
            shards,
            filter: spec.filter,
            on_lag: spec.on_lag,
            max_batch: spec.max_batch.max(1),
            resumed: match spec.start {
                Start::AfterCursor(cursor) => cursor.shards,
                _ => BTreeMap::new(),
            },
        })
    }

    /// The current cursor, encoded (once per response sent, so without an intermediate
    /// [`Cursor`]).
    pub fn encoded_cursor(&self) -> String {
        encode_positions(
            &self.stream,
            self.shards
                .iter()
                .map(|(id, position)| (id.as_str(), &position.last)),
        )
    }

    /// Reads what is new and appends the responses to send to `out`. Returns `Ok(true)` when
    /// it made progress (call again: more may be readable), `Err` when the subscriber lagged
    /// under DISCONNECT.
    pub fn poll(
        &mut self,
        hub: &StreamHub,
        out: &mut Vec<EncodedResponse>,
    ) -> Result<bool, Lagged> {
        let state = hub.read();
        let mut progressed = false;
        if self.all_shards {
            for (id, slot) in &state.shards {
                if self.shards.contains_key(id) {
                    continue;
                }
                // A shard that appeared after the subscription started: a child after
                // resharding, read from its first record, or a shard the relay learned
                // after this subscription resumed from a cursor that names it.
                let last = self.resumed.get(id).cloned().unwrap_or(Position::Start);
                let (next, behind) = match slot.ring.seek_after(&last) {
                    Seek::At(next) => (next, false),
                    // Older than the ring: the lag policy applies below.
                    Seek::TooOld => (slot.ring.base(), true),
                };
                self.shards.insert(
                    id.clone(),
                    ShardPosition {
                        next,
                        last,
                        announce: !self.resumed.contains_key(id),
                        ended: false,
                        behind,
                    },
                );
            }
        }
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            let Some(slot) = state.shards.get(&id) else {
                continue;
            };
            if self.shards[&id].ended || !self.parents_done(&slot.meta.parents) {
                continue;
            }
            if self.shards[&id].announce {
                if let Some(position) = self.shards.get_mut(&id) {
                    position.announce = false;
                }
                out.push(
                    self.event(v1::subscribe_response::Event::ShardEvent(v1::ShardEvent {
                        shard_id: id.clone(),
                        kind: v1::ShardEventKind::Started.into(),
                        child_shard_ids: vec![],
                        parent_shard_ids: slot.meta.parents.clone(),
                    })),
                );
                progressed = true;
            }
            if self.shards[&id].next < slot.ring.base() || self.shards[&id].behind {
                match self.on_lag {
                    LagPolicy::Disconnect => {
                        return Err(Lagged {
                            cursor: self.encoded_cursor(),
                            shard: id,
                        });
                    }
                    LagPolicy::Skip => {
                        hub.counters
                            .gaps
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        out.push(self.skip_gap(&id, &slot.ring));
                        progressed = true;
                    }
                }
            }
            let (batch, advanced) = self.read_batch(&id, &slot.ring);
            if let Some(batch) = batch {
                out.push(batch);
            }
            progressed |= advanced;
            let position = &self.shards[&id];
            if slot.finished() && position.next >= slot.ring.end() {
                if let Some(position) = self.shards.get_mut(&id) {
                    position.ended = true;
                }
                out.push(
                    self.event(v1::subscribe_response::Event::ShardEvent(v1::ShardEvent {
                        shard_id: id.clone(),
                        kind: v1::ShardEventKind::Ended.into(),
                        child_shard_ids: slot.children.clone(),
                        parent_shard_ids: vec![],
                    })),
                );
                progressed = true;
            }
        }
        Ok(progressed)
    }

    /// A heartbeat with the distance to the tip of every shard being read.
    pub fn heartbeat(&self, hub: &StreamHub) -> EncodedResponse {
        let state = hub.read();
        let shards = self
            .shards
            .iter()
            .filter(|(_, position)| !position.ended)
            .filter_map(|(id, _)| {
                state.shards.get(id).map(|slot| v1::ShardLag {
                    shard_id: id.clone(),
                    millis_behind_latest: slot.millis_behind,
                })
            })
            .collect();
        self.event(v1::subscribe_response::Event::Heartbeat(v1::Heartbeat {
            shards,
            server_time: Some(timestamp(SystemTime::now())),
        }))
    }

    fn parents_done(&self, parents: &[String]) -> bool {
        parents.iter().all(|parent| {
            self.shards
                .get(parent)
                .is_none_or(|position| position.ended)
        })
    }

    fn event(&self, event: v1::subscribe_response::Event) -> EncodedResponse {
        EncodedResponse::from_message(&v1::SubscribeResponse {
            event: Some(event),
            cursor: self.encoded_cursor(),
        })
    }

    fn skip_gap(&mut self, id: &str, ring: &ShardRing) -> EncodedResponse {
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        let from = sequence_text(&position.last);
        let to = match ring.floor() {
            Floor::After { position, .. } => sequence_text(position),
            Floor::Origin => String::new(),
        };
        let missed = ring.base().saturating_sub(position.next);
        position.next = ring.base();
        position.behind = false;
        position.last = ring.position_before(ring.base());
        self.event(v1::subscribe_response::Event::Gap(v1::Gap {
            shards: vec![v1::ShardGap {
                shard_id: id.to_owned(),
                from_sequence_number: from,
                to_sequence_number: to,
                records_missed: missed,
            }],
            reason: v1::GapReason::SubscriberTooSlow.into(),
        }))
    }

    /// Reads the next batch of `id`. Returns the batch, if any record passed the filter,
    /// and whether the position moved (filtered records move it too).
    fn read_batch(&mut self, id: &str, ring: &ShardRing) -> (Option<EncodedResponse>, bool) {
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        // Consecutive records of one block go out as one slice of it: a run is its first
        // entry and the bytes it spans. A record skipped (filtered out, or already sent)
        // leaves a hole in the block, which ends the run.
        let mut runs: Vec<Bytes> = Vec::new();
        let mut run: Option<(&Entry, usize)> = None;
        let slice =
            |(first, len): (&Entry, usize)| first.block.slice(first.offset..first.offset + len);
        let mut records = 0;
        let mut bytes = 0;
        let mut oldest = None;
        let start = position.next;
        while records < self.max_batch && bytes < BATCH_BYTES && position.next - start < MAX_SCAN {
            let Some(entry) = ring.get(position.next) else {
                break;
            };
            if records > 0 && bytes + entry.encoded.len() > MAX_BATCH_BYTES {
                break;
            }
            position.next += 1;
            let entry_position = entry.position();
            // Never send a record at or before what the subscriber has: after a relay
            // restart the ring may re-read records older than a resumed cursor.
            if entry_position <= position.last {
                continue;
            }
            position.last = entry_position;
            if !self.filter.matches(&entry.partition_key) {
                continue;
            }
            records += 1;
            bytes += entry.encoded.len();
            oldest.get_or_insert(entry.received);
            match &mut run {
                Some((first, len))
                    if first.adjoins_block(entry) && first.offset + *len == entry.offset =>
                {
                    *len += entry.encoded.len();
                }
                _ => runs.extend(run.replace((entry, entry.encoded.len())).map(slice)),
            }
        }
        runs.extend(run.map(slice));
        let advanced = position.next != start;
        if records == 0 {
            return (None, advanced);
        }
        let batch =
            EncodedResponse::record_batch(id, runs, records, &self.encoded_cursor(), oldest);
        (Some(batch), advanced)
    }
}

/// A cursor at the oldest position held in every shard.
pub fn oldest_cursor(stream: &str, state: &StreamState) -> String {
    Cursor {
        stream: stream.to_owned(),
        shards: state
            .shards
            .iter()
            .map(|(id, slot)| (id.clone(), slot.ring.position_before(slot.ring.base())))
            .collect(),
    }
    .encode()
}

fn sequence_text(position: &Position) -> String {
    match position {
        Position::Start => String::new(),
        Position::After { sequence, .. } => sequence.to_string(),
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// RFC 3339 text of a time, for messages.
pub fn format_time(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "an unknown time".to_owned())
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::Duration};

    use super::*;
    use crate::hub::{ReaderState, RingLimits, ShardMeta, entry::RelayRecord};

    fn records(keys: &[(u64, &str)]) -> Vec<RelayRecord> {
        keys.iter()
            .map(|&(seq, key)| RelayRecord {
                partition_key: key.into(),
                data: Bytes::from(vec![seq as u8; 100]),
                sequence: seq.to_string().parse().unwrap(),
                sub_sequence: None,
                arrival: SystemTime::now(),
                explicit_hash_key: None,
            })
            .collect()
    }

    /// Segments of the first response of a subscription from the start with `filter`.
    fn segments(filter: KeyFilter) -> (usize, usize) {
        let hub = StreamHub::new(
            "s",
            RingLimits {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(60),
            },
        );
        let meta = ShardMeta {
            shard_id: "a".into(),
            parents: vec![],
            hash_key_range: ("0".into(), "1".into()),
        };
        hub.add_shard(meta, Floor::Origin, ReaderState::Reading);
        hub.set_started();
        hub.append(
            "a",
            records(&[(1, "x"), (2, "x"), (3, "y"), (4, "x"), (5, "x")]),
            0,
        );
        hub.append("a", records(&[(6, "x"), (7, "x")]), 0);
        let spec = SubscriptionSpec {
            shard_ids: None,
            start: Start::Earliest,
            filter,
            on_lag: LagPolicy::Disconnect,
            max_batch: 500,
        };
        let mut subscription = Subscription::open(&hub, spec).unwrap();
        let mut out = Vec::new();
        subscription.poll(&hub, &mut out).unwrap();
        let batch = out
            .iter()
            .find(|response| response.records > 0)
            .expect("a record batch");
        // Header and cursor around the runs of records.
        (batch.segments.len() - 2, batch.records)
    }

    #[test]
    fn consecutive_records_of_one_block_go_out_as_one_slice() {
        assert_eq!(segments(KeyFilter::default()), (2, 7));
        let only_x = KeyFilter {
            keys: HashSet::from(["x".to_owned()]),
            prefixes: vec![],
        };
        // The filtered-out record 3 splits the first block in two.
        assert_eq!(segments(only_x), (3, 6));
    }
}
