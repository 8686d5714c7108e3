//! One subscriber's reading of a stream: its position in every shard, its filter, and the
//! events it has yet to send.
//!
//! A [`Subscription`] is plain state driven by [`Subscription::poll`]: it reads what is new
//! since its positions, from the hub's ring or, for positions older than the ring, from a
//! catch-up reader (see `crate::catchup`) until it can join the ring at the next record;
//! applies the lag policy; and says what to send: the runs of encoded records it read and
//! the events, which `crate::wire` encodes. The gRPC task around it only waits for changes
//! and writes.
//!
//! # Layout
//! - `mod.rs`: positions and polling.
//! - `open.rs`: where a new subscription starts in each shard (and waiting for STARTING).
//! - `catching_up.rs`: reading a catch-up reader's window, expired positions.
//! - `events.rs`: the responses a subscription sends besides records' runs: batches,
//!   shard ends, heartbeats, gaps.
//! - `spec.rs`: the request as validated, and why a subscription cannot start or ends.
//!
//! It reads the hub only through its read API ([`StreamHub::view`]): seeking, batches of
//! encoded records and floors are the hub's; positions, filters and lag are its own.

mod catching_up;
mod events;
mod open;
mod spec;

pub use self::open::oldest_cursor;

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Instant, SystemTime},
};

use kinesis_relay_api::{
    cursor::{Position, encode_positions},
    v1,
};

pub use self::spec::{KeyFilter, LagPolicy, OpenError, Start, Stop, SubscriptionSpec};
use crate::{
    catchup::{CatchUp, From, window::Attached},
    hub::{SeekTo, ShardView, StreamHub, StreamView, ring::Seek},
    wire::EncodedResponse,
};

/// Where a subscriber reads a shard from.
#[derive(Debug)]
enum Source {
    /// The hub's ring, at [`ShardPosition::next`].
    Ring,
    /// Kinesis, from here, once the shard is readable (its parents are done).
    Pending(From),
    /// A catch-up reader's window.
    CatchUp(Attached),
}

/// A subscriber's position in one shard.
#[derive(Debug)]
struct ShardPosition {
    /// Absolute ring index of the next record to read (while the source is the ring).
    next: u64,
    /// Position of the last record read (sent or filtered out).
    last: Position,
    /// Whether a STARTED event is due when the shard becomes readable (shards that appear
    /// after the subscription started).
    announce: bool,
    /// Whether the shard was read to its end and ENDED was sent.
    ended: bool,
    /// Whether the position is older than the ring although `next` is not below its base,
    /// and the relay cannot read Kinesis itself: the lag policy applies.
    behind: bool,
    /// Where the records come from.
    source: Source,
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
    /// Reads records older than the rings from Kinesis; `None` for a relay that reads
    /// another relay.
    catch_up: Option<Arc<CatchUp>>,
    /// Set while the stream is still STARTING: the request, opened once the shards are
    /// known, and until when to wait for that.
    waiting: Option<(SubscriptionSpec, Instant)>,
}

impl Subscription {
    /// Until when a subscription waits for its stream to start, while it does.
    pub fn waiting_until(&self) -> Option<Instant> {
        self.waiting.as_ref().map(|(_, until)| *until)
    }

    /// The current cursor, encoded (once per response sent, so without an intermediate
    /// [`Cursor`]).
    pub fn encoded_cursor(&self) -> String {
        if self.waiting.is_some() {
            // Nothing read yet: the cursor resumed from, or none at all (an empty cursor
            // field) rather than one that would mean "every shard from its start".
            if self.resumed.is_empty() {
                return String::new();
            }
            return encode_positions(
                &self.stream,
                self.resumed
                    .iter()
                    .map(|(id, position)| (id.as_str(), position)),
            );
        }
        encode_positions(
            &self.stream,
            self.shards
                .iter()
                .map(|(id, position)| (id.as_str(), &position.last)),
        )
    }

    /// Whether some shard is being read from Kinesis rather than the ring.
    pub fn catching_up(&self) -> bool {
        self.shards.values().any(|position| {
            !position.ended && matches!(position.source, Source::Pending(_) | Source::CatchUp(_))
        })
    }

    /// Reads what is new and appends the responses to send to `out`. Returns `Ok(true)` when
    /// it made progress (call again: more may be readable), `Err` when the subscription
    /// must end (lag under DISCONNECT, an expired position, catch-up failure).
    pub fn poll(&mut self, hub: &StreamHub, out: &mut Vec<EncodedResponse>) -> Result<bool, Stop> {
        if self.waiting.is_some() {
            return self.open_waiting(hub);
        }
        let view = hub.view();
        let mut progressed = false;
        if self.all_shards {
            self.learn_shards(&view);
        }
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        for id in ids {
            let Some(shard) = view.shard(&id) else {
                continue;
            };
            if self.shards[&id].ended || !self.parents_done(shard.parents()) {
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
                        parent_shard_ids: shard.parents().to_vec(),
                    })),
                );
                progressed = true;
            }
            progressed |= self.poll_shard(hub, shard, out)?;
        }
        Ok(progressed)
    }

    /// Adds shards that appeared after the subscription started: a child after resharding,
    /// read from its first record, or a shard the relay learned after this subscription
    /// resumed from a cursor that names it.
    fn learn_shards(&mut self, view: &StreamView<'_>) {
        for shard in view.shards() {
            let id = shard.id();
            if self.shards.contains_key(id) {
                continue;
            }
            let last = self.resumed.get(id).cloned().unwrap_or(Position::Start);
            let (next, behind, source) = match shard.seek(SeekTo::After(&last)) {
                Seek::At(next) => (next, false, Source::Ring),
                Seek::TooOld => match self.catch_up {
                    Some(_) => (0, false, Source::Pending(From::After(last.clone()))),
                    // Older than the ring: the lag policy applies.
                    None => (shard.oldest_index(), true, Source::Ring),
                },
            };
            self.shards.insert(
                id.to_owned(),
                ShardPosition {
                    next,
                    last,
                    announce: !self.resumed.contains_key(id),
                    ended: false,
                    behind,
                    source,
                },
            );
        }
    }

    /// Reads one readable shard from its source. Returns whether it made progress.
    fn poll_shard(
        &mut self,
        hub: &StreamHub,
        shard: ShardView<'_>,
        out: &mut Vec<EncodedResponse>,
    ) -> Result<bool, Stop> {
        let id = shard.id();
        let mut progressed = false;
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        if let Source::Pending(from) = &position.source {
            let catch_up = self.catch_up.as_ref().expect("pending only with catch-up");
            match catch_up.attach(id, from) {
                Ok(attached) => position.source = Source::CatchUp(attached),
                Err(busy) => {
                    return Err(Stop::CatchUpFailed {
                        message: busy.to_string(),
                        cursor: self.encoded_cursor(),
                    });
                }
            }
        }
        // Join the ring as soon as it holds the record after this position.
        if matches!(position.source, Source::CatchUp(_))
            && let Seek::At(next) = shard.seek(SeekTo::After(&position.last))
        {
            position.source = Source::Ring;
            position.next = next;
            progressed = true;
        }
        if matches!(position.source, Source::CatchUp(_)) {
            return Ok(self.poll_catch_up(hub, id, shard.children(), out)? || progressed);
        }
        if position.next < shard.oldest_index() || position.behind {
            match (self.on_lag, &self.catch_up) {
                (LagPolicy::CatchUp, Some(_)) => {
                    position.behind = false;
                    position.source = Source::Pending(From::After(position.last.clone()));
                    return Ok(true);
                }
                (LagPolicy::Disconnect | LagPolicy::CatchUp, _) => {
                    return Err(Stop::Lagged {
                        cursor: self.encoded_cursor(),
                        shard: id.to_owned(),
                    });
                }
                (LagPolicy::Skip, _) => {
                    hub.counters.gaps.fetch_add(1, Ordering::Relaxed);
                    out.push(self.skip_gap(shard));
                    progressed = true;
                }
            }
        }
        let position = self.shards.get_mut(id).expect("caller checked the shard");
        let filter = &self.filter;
        let read = shard.read_batch(
            &mut position.next,
            &mut position.last,
            |key| filter.matches(key),
            self.max_batch,
        );
        progressed |= read.advanced;
        self.push_batch(id, read, out);
        let position = &self.shards[id];
        if shard.finished() && position.next >= shard.end_index() {
            out.push(self.end_shard(id, shard.children().to_vec()));
            progressed = true;
        }
        Ok(progressed)
    }

    fn parents_done(&self, parents: &[String]) -> bool {
        parents.iter().all(|parent| {
            self.shards
                .get(parent)
                .is_none_or(|position| position.ended)
        })
    }
}

pub(crate) fn sequence_text(position: &Position) -> String {
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
    use std::collections::HashSet;

    use bytes::Bytes;

    use super::*;
    use crate::hub::{
        entry::RelayRecord,
        fixtures::{hub_with_shard_a, record},
    };

    fn records(keys: &[(u64, &str)]) -> Vec<RelayRecord> {
        keys.iter()
            .map(|&(seq, key)| record(seq, key, Bytes::from(vec![seq as u8; 100])))
            .collect()
    }

    /// Segments of the first response of a subscription from the start with `filter`.
    fn segments(filter: KeyFilter) -> (usize, usize) {
        let hub = hub_with_shard_a(1 << 20);
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
        let mut subscription = Subscription::open(&hub, None, spec).unwrap();
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
