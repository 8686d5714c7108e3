//! Where a new subscription starts in each shard: in the ring, or (older than the ring) at a
//! catch-up start; and a subscription that waits for its stream to leave STARTING.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use kinesis_relay_api::cursor::{Cursor, Position};

use super::{
    OpenError, ShardPosition, Source, Start, Stop, Subscription, SubscriptionSpec, format_time,
};
use crate::{
    catchup::{CatchUp, From},
    hub::{SeekTo, ShardView, StreamHub, StreamView, ring::Seek},
};

impl Subscription {
    /// Positions a new subscription in the hub.
    pub fn open(
        hub: &StreamHub,
        catch_up: Option<Arc<CatchUp>>,
        spec: SubscriptionSpec,
    ) -> Result<Self, OpenError> {
        let view = hub.view();
        let stream = hub.name().to_owned();
        if !view.started() {
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
                    if !view.has_shard(id) {
                        return Err(OpenError::UnknownShard {
                            stream,
                            shard: id.clone(),
                        });
                    }
                }
                ids.iter().cloned().collect()
            }
            None => view.shards().map(|shard| shard.id().to_owned()).collect(),
        };
        let mut shards = BTreeMap::new();
        for id in wanted {
            // Every id wanted was found above, under the same lock.
            let Some(shard) = view.shard(&id) else {
                continue;
            };
            let position = match open_shard(&view, shard, &spec.start, catch_up.is_some()) {
                Some(position) => position,
                None => {
                    return Err(OpenError::OutOfRange {
                        shard: id,
                        oldest_cursor: oldest_cursor(&stream, &view),
                        oldest_time: view
                            .oldest_arrival()
                            .map(|at| format!(" (arrived {})", format_time(at)))
                            .unwrap_or_default(),
                    });
                }
            };
            shards.insert(id, position);
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
            catch_up,
            waiting: None,
        })
    }

    /// Like [`Subscription::open`], but while the stream is still STARTING, a subscription
    /// that opens once the relay knows the stream's shards (within `wait`; then `poll` ends
    /// it with [`OpenError::Starting`]).
    pub fn open_or_wait(
        hub: &StreamHub,
        catch_up: Option<Arc<CatchUp>>,
        spec: SubscriptionSpec,
        wait: Duration,
    ) -> Result<Self, OpenError> {
        match Self::open(hub, catch_up.clone(), spec.clone()) {
            Err(OpenError::Starting { .. }) if !wait.is_zero() => Ok(Self {
                stream: hub.name().to_owned(),
                all_shards: spec.shard_ids.is_none(),
                shards: BTreeMap::new(),
                filter: spec.filter.clone(),
                on_lag: spec.on_lag,
                max_batch: spec.max_batch.max(1),
                resumed: match &spec.start {
                    Start::AfterCursor(cursor) => cursor.shards.clone(),
                    _ => BTreeMap::new(),
                },
                catch_up,
                waiting: Some((spec, Instant::now() + wait)),
            }),
            opened => opened,
        }
    }

    /// Opens a subscription that was waiting for its stream to start, once it has.
    pub(super) fn open_waiting(&mut self, hub: &StreamHub) -> Result<bool, Stop> {
        let Some((spec, until)) = &self.waiting else {
            return Ok(false);
        };
        match Self::open(hub, self.catch_up.clone(), spec.clone()) {
            Ok(opened) => {
                *self = opened;
                Ok(true)
            }
            Err(OpenError::Starting { .. }) if Instant::now() < *until => Ok(false),
            Err(refused) => Err(Stop::Refused(refused)),
        }
    }
}

/// Where a new subscription starts reading one shard; `None` when the position is older
/// than the ring and the relay cannot read Kinesis.
fn open_shard(
    view: &StreamView<'_>,
    shard: ShardView<'_>,
    start: &Start,
    can_catch_up: bool,
) -> Option<ShardPosition> {
    let id = shard.id();
    let end = shard.end_index();
    let done = |last: Position| ShardPosition {
        next: end,
        last,
        announce: false,
        ended: true,
        behind: false,
        source: Source::Ring,
    };
    let (seek, from) = match start {
        Start::Latest => (shard.seek(SeekTo::Latest), None),
        Start::Earliest => (shard.seek(SeekTo::Earliest), None),
        Start::TrimHorizon => (
            shard.seek(SeekTo::After(&Position::Start)),
            Some(From::After(Position::Start)),
        ),
        Start::AfterCursor(cursor) => {
            let named = cursor.shards.get(id);
            // A closed shard the cursor does not name, and that descends from none it names,
            // is history from before the subscription: it is not read.
            if named.is_none()
                && !cursor.shards.is_empty()
                && shard.finished()
                && !descends_from(view, id, &cursor.shards)
            {
                return Some(done(shard.position_before(end)));
            }
            let last = named.cloned().unwrap_or(Position::Start);
            (shard.seek(SeekTo::After(&last)), Some(From::After(last)))
        }
        Start::AtTimestamp(at) => (
            shard.seek(SeekTo::ArrivedAt(*at)),
            Some(From::AtTimestamp(*at)),
        ),
    };
    let last_cursor = match start {
        // Keep the cursor's own position: the next cursor then covers what it did.
        Start::AfterCursor(cursor) => cursor.shards.get(id).cloned(),
        _ => None,
    };
    match seek {
        Seek::At(next) => {
            let last = last_cursor.unwrap_or_else(|| shard.position_before(next));
            // A shard that ended before this subscription reaches past it is done already:
            // no ENDED event for history the subscriber never asked about.
            let ended =
                shard.finished() && next >= end && matches!(start, Start::Latest | Start::Earliest);
            Some(ShardPosition {
                next,
                last,
                announce: false,
                ended,
                behind: false,
                source: Source::Ring,
            })
        }
        Seek::TooOld if can_catch_up => Some(ShardPosition {
            next: 0,
            last: last_cursor.unwrap_or(Position::Start),
            announce: false,
            ended: false,
            behind: false,
            source: Source::Pending(from.expect("every start that seeks has a catch-up start")),
        }),
        Seek::TooOld => None,
    }
}

/// Whether shard `id` descends (through the parents the hub knows) from a shard in `named`.
fn descends_from(view: &StreamView<'_>, id: &str, named: &BTreeMap<String, Position>) -> bool {
    let mut frontier = vec![id.to_owned()];
    let mut seen = BTreeSet::new();
    while let Some(shard) = frontier.pop() {
        if !seen.insert(shard.clone()) {
            continue;
        }
        let Some(known) = view.shard(&shard) else {
            continue;
        };
        for parent in known.parents() {
            if named.contains_key(parent) {
                return true;
            }
            frontier.push(parent.clone());
        }
    }
    false
}
/// A cursor at the oldest position held in every shard.
pub fn oldest_cursor(stream: &str, view: &StreamView<'_>) -> String {
    Cursor {
        stream: stream.to_owned(),
        shards: view
            .shards()
            .map(|shard| {
                let oldest = shard.position_before(shard.oldest_index());
                (shard.id().to_owned(), oldest)
            })
            .collect(),
    }
    .encode()
}
