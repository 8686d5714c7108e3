//! One catch-up reader: GetShardIterator and GetRecords over one shard, from where its
//! first subscriber asked, into a window shared by every subscriber near it.
//!
//! It fetches only while a subscriber wants more (the window holds less than its buffer,
//! or the fastest subscriber read all of it), drops what every subscriber has read, keeps
//! within the shard's GetRecords budget, backs off on throttling, renews expired iterators,
//! and stops once nobody is attached, the shard is read to its end, or it fails for good.

use std::{sync::Arc, time::SystemTime};

use aws_sdk_kinesis::{
    primitives::DateTime,
    types::{Record, ShardIteratorType},
};
use kinesis_relay_api::{backoff::Backoff, cursor::Position, sequence::SequenceNumber};
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, warn};

use super::{
    CatchUp, From,
    window::{Expired, Window},
};
use crate::{
    hub::{
        SeekTo,
        entry::{Entry, RelayRecord},
        ring::Seek,
    },
    ingest::{
        errors::{CallError, ErrorKind},
        records,
    },
};

/// How one call went, for the loop.
enum Step {
    /// Go on.
    Continue,
    /// Nothing to do: wait this long or until a subscriber moves.
    Idle(std::time::Duration),
    /// Back off this long after a failure.
    Wait(std::time::Duration),
    /// Stop reading.
    Stop,
}

/// Reads `window`'s shard until nobody needs it.
pub(super) async fn run(catch_up: Arc<CatchUp>, window: Arc<Window>) {
    let mut reader = Reader::new(catch_up.clone(), window);
    let mut shutdown = catch_up.shutdown.clone();
    loop {
        let step = tokio::select! {
            step = reader.step() => step,
            _ = crate::stopped(&mut shutdown) => Step::Stop,
        };
        match step {
            Step::Continue => {}
            Step::Idle(delay) => {
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = reader.window.wanted.notified() => {}
                    _ = crate::stopped(&mut shutdown) => break,
                }
            }
            Step::Wait(delay) => {
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = crate::stopped(&mut shutdown) => break,
                }
            }
            Step::Stop => break,
        }
    }
    reader.window.lock().stopped = true;
    catch_up.notify();
    catch_up
        .counters
        .readers_running
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    debug!(stream = catch_up.hub.name(), shard = %reader.window.shard_id, "catch-up reader stopped");
}

struct Reader {
    catch_up: Arc<CatchUp>,
    window: Arc<Window>,
    /// The current shard iterator, if one is held.
    iterator: Option<String>,
    /// Position of the last record put in the window.
    last: Option<Position>,
    /// The sequence number the start position names, until the first record shows whether
    /// Kinesis still holds it.
    check_expiry: Option<SequenceNumber>,
    backoff: Backoff,
    /// Failures in a row other than throttling.
    failures: u32,
    /// Since when no subscriber is attached.
    idle_since: Option<Instant>,
    /// Whether it stopped fetching because the ring holds what follows (counted once).
    handed_over: bool,
}

impl Reader {
    fn new(catch_up: Arc<CatchUp>, window: Arc<Window>) -> Self {
        let start = window.lock().start.clone();
        let settings = &catch_up.settings;
        Self {
            backoff: Backoff::new(settings.backoff_base, settings.backoff_cap),
            check_expiry: match &start {
                From::After(Position::After { sequence, .. }) => Some(sequence.clone()),
                _ => None,
            },
            catch_up,
            window,
            iterator: None,
            last: None,
            failures: 0,
            idle_since: None,
            handed_over: false,
        }
    }

    async fn step(&mut self) -> Step {
        let settings = self.catch_up.settings.clone();
        // The registry holds the window weakly: a count of one is this reader alone.
        if Arc::strong_count(&self.window) <= 1 {
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= settings.idle_grace {
                return Step::Stop;
            }
            return Step::Idle(settings.idle_grace);
        }
        self.idle_since = None;
        {
            let mut state = self.window.lock();
            if state.finished || state.failed.is_some() {
                return Step::Stop;
            }
            // What was read stays for subscribers that come later from nearby positions
            // (a hundred clients resuming with the same cursor do not arrive at once);
            // once the buffer is full, what every subscriber has read goes first.
            if state.ring.bytes() >= settings.buffer_bytes {
                let slowest = state.slowest();
                while state.ring.base() < slowest && state.ring.bytes() > settings.buffer_bytes / 2
                {
                    state.ring.evict_front();
                }
            }
            let fastest_done = state.fastest().is_some_and(|next| next >= state.ring.end());
            if state.ring.bytes() >= settings.buffer_bytes && !fastest_done {
                return Step::Idle(settings.idle_poll);
            }
        }
        // Once the hub's ring holds the record after the last one fetched, a subscriber
        // that gets there joins the ring: fetching on would buffer live records the ring
        // holds anyway, spend the budget, and fill the window until a slow subscriber
        // falls off it onto a second reader. Checked every step: should the ring's floor
        // move past that record first, fetching resumes.
        if let Some(last) = &self.last
            && self.ring_holds_after(last)
        {
            if !std::mem::replace(&mut self.handed_over, true) {
                self.catch_up
                    .counters
                    .handed_over
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return Step::Idle(settings.idle_poll);
        }
        self.handed_over = false;
        let iterator = match self.iterator.take() {
            Some(iterator) => iterator,
            None => match self.new_iterator().await {
                Ok(iterator) => iterator,
                Err(step) => return step,
            },
        };
        self.catch_up
            .budget
            .before_call(&self.window.shard_id)
            .await;
        self.get_records(iterator).await
    }

    /// Whether the hub's ring holds the record after `last` in this reader's shard (or
    /// would hold it as the next one appended).
    fn ring_holds_after(&self, last: &Position) -> bool {
        self.catch_up
            .hub
            .view()
            .shard(&self.window.shard_id)
            .is_some_and(|shard| matches!(shard.seek(SeekTo::After(last)), Seek::At(_)))
    }

    /// A shard iterator at the reader's position: after the last record it read, else at
    /// its start (AT_SEQUENCE_NUMBER for a cursor, so that the rest of a KPL aggregate is
    /// read again and an expired position shows).
    async fn new_iterator(&mut self) -> Result<String, Step> {
        let catch_up = &self.catch_up;
        let request = catch_up
            .reader_client
            .get_shard_iterator()
            .stream_name(catch_up.hub.name())
            .shard_id(&self.window.shard_id);
        let start = self.window.lock().start.clone();
        let request = match (&self.last, &start) {
            (Some(Position::After { sequence, .. }), _) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence.as_str()),
            (_, From::After(Position::After { sequence, .. })) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(sequence.as_str()),
            (_, From::AtTimestamp(at)) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from(*at)),
            _ => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let result = timeout(catch_up.settings.call_timeout, request.send()).await;
        match result {
            Ok(Ok(output)) => output
                .shard_iterator()
                .map(str::to_owned)
                .ok_or(Step::Wait(catch_up.settings.idle_poll)),
            Ok(Err(err)) => Err(match CallError::from_sdk(&err) {
                // The sequence number is not one Kinesis holds (trimmed, or the position
                // just before the oldest record that an expiry's resume cursor names; some
                // implementations answer ResourceNotFound): read from the oldest record,
                // and the expiry check tells whether anything after the position is gone.
                CallError {
                    kind: ErrorKind::InvalidArgument | ErrorKind::NotFound,
                    ..
                } if self.last.is_none()
                    && self.check_expiry.is_some()
                    && matches!(start, From::After(Position::After { .. })) =>
                {
                    self.window.lock().start = From::After(Position::Start);
                    Step::Continue
                }
                error => self.failed_call(error),
            }),
            Err(_) => Err(self.failed_call(CallError::transient(
                "GetShardIterator did not answer in time",
            ))),
        }
    }

    async fn get_records(&mut self, iterator: String) -> Step {
        let catch_up = self.catch_up.clone();
        let shard = self.window.shard_id.clone();
        let call = catch_up
            .reader_client
            .get_records()
            .shard_iterator(&iterator)
            .limit(catch_up.settings.records_per_call)
            .send();
        catch_up
            .counters
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let output = match timeout(catch_up.settings.call_timeout, call).await {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => {
                let error = CallError::from_sdk(&err);
                if error.kind == ErrorKind::ExpiredIterator {
                    // Renewed from the last record read at the next step.
                    catch_up
                        .counters
                        .expired_iterators
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Step::Continue;
                }
                // Keep the iterator for the retry: it is still good.
                self.iterator = Some(iterator);
                return self.failed_call(error);
            }
            Err(_) => {
                self.iterator = Some(iterator);
                return self.failed_call(CallError::transient("GetRecords did not answer in time"));
            }
        };
        self.failures = 0;
        self.backoff.reset();
        let bytes: usize = output
            .records()
            .iter()
            .map(|record| record.data().as_ref().len() + record.partition_key().len())
            .sum();
        catch_up.budget.charge(&shard, bytes);
        catch_up
            .counters
            .bytes
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        let expired = self.check_expiry(output.records());
        let mut relay_records: Vec<RelayRecord> = output
            .records()
            .iter()
            .flat_map(|record| records::convert(record, &shard))
            .collect();
        let start = self.window.lock().start.clone();
        let floor = match (&self.last, &start) {
            (Some(last), _) => Some(last.clone()),
            (None, From::After(position)) if expired.is_none() => Some(position.clone()),
            _ => None,
        };
        if let Some(floor) = &floor {
            relay_records.retain(|record| record_position(record) > *floor);
        }
        if let Some(last) = relay_records.last() {
            self.last = Some(record_position(last));
        }
        let fetched = relay_records.len();
        let entries = Entry::encode_all(relay_records);
        let millis_behind = output.millis_behind_latest().unwrap_or(0);
        let next = output.next_shard_iterator().map(str::to_owned);
        {
            let mut state = self.window.lock();
            if let Some(expired) = expired {
                state.expired = Some(expired);
            }
            for entry in entries {
                state.ring.push(entry);
            }
            // Over the buffer: drop the oldest even if a slow subscriber still needs it
            // (it attaches again further back); the fastest must not wait for it.
            while state.ring.bytes() > catch_up.settings.buffer_bytes
                && state.ring.base() < state.fastest().unwrap_or(0)
            {
                state.ring.evict_front();
            }
            state.millis_behind = millis_behind;
            match &next {
                Some(_) => {}
                None => {
                    state.finished = true;
                    state.children = output
                        .child_shards()
                        .iter()
                        .map(|child| child.shard_id().to_owned())
                        .collect();
                }
            }
        }
        catch_up.notify();
        match next {
            None => Step::Stop,
            Some(next) => {
                self.iterator = Some(next);
                // At the tip: poll gently until records come (or a subscriber joins the ring).
                if fetched == 0 && millis_behind == 0 {
                    Step::Idle(catch_up.settings.idle_poll)
                } else {
                    Step::Continue
                }
            }
        }
    }

    /// On the first record read after a cursor's position: whether that position's record
    /// is still held (an AT_SEQUENCE_NUMBER read starts with it), else what is oldest.
    fn check_expiry(&mut self, records: &[Record]) -> Option<Expired> {
        let first = records.first()?;
        let asked = self.check_expiry.take()?;
        let oldest: SequenceNumber = first.sequence_number().parse().ok()?;
        if oldest <= asked {
            return None;
        }
        let start = self.window.lock().start.clone();
        let asked_position = match start {
            From::After(position @ Position::After { .. }) => position,
            _ => Position::After {
                sequence: asked,
                sub_sequence: None,
            },
        };
        warn!(
            stream = self.catch_up.hub.name(), shard = %self.window.shard_id,
            oldest = %oldest, "a subscriber's position is older than the stream's retention"
        );
        Some(Expired {
            asked: asked_position,
            oldest,
            oldest_arrival: first
                .approximate_arrival_timestamp()
                .and_then(|at| SystemTime::try_from(*at).ok())
                .unwrap_or_else(SystemTime::now),
        })
    }

    /// Backs off after a failed call; gives up after too many failures in a row.
    fn failed_call(&mut self, error: CallError) -> Step {
        let catch_up = &self.catch_up;
        let CallError {
            kind,
            message: cause,
        } = error;
        if kind == ErrorKind::Throttled {
            catch_up
                .counters
                .throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Throttling is expected when others poll the stream: never fatal.
            return Step::Wait(self.backoff.next_delay());
        }
        self.failures += 1;
        if self.failures >= catch_up.settings.max_failures || kind == ErrorKind::NotFound {
            warn!(stream = catch_up.hub.name(), shard = %self.window.shard_id, kind = kind.label(), cause, "catch-up reader gave up");
            self.window.lock().failed = Some(cause);
            catch_up.notify();
            return Step::Stop;
        }
        debug!(stream = catch_up.hub.name(), shard = %self.window.shard_id, kind = kind.label(), cause, "catch-up call failed, backing off");
        Step::Wait(self.backoff.next_delay())
    }
}

fn record_position(record: &RelayRecord) -> Position {
    Position::After {
        sequence: record.sequence.clone(),
        sub_sequence: record.sub_sequence,
    }
}
