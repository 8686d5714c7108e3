//! One subscriber's response stream: reads its subscription's batches from the hub when
//! the connection can take them, heartbeats when idle, and the status that ends it (lag
//! policy, shutdown, deadline), logged and counted with the reason it ended.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use kinesis_relay_api::resume::with_cursor;
use tokio::{
    sync::watch,
    time::{Instant, Sleep},
};
use tonic::{Code, Status};
use tracing::{debug, info};

use crate::{
    catchup::turns::Turns,
    connections::{ConnectionFate, limits::CloseReason},
    hub::{StreamHub, SubscriberGuard, ends::SubscriberEnd},
    log_budget::LogBudget,
    security::limits::Ticket,
    subscription::{Stop, Subscription},
    wire::EncodedResponse,
};

/// One subscription's source of responses.
pub(super) struct Feed {
    pub(super) hub: Arc<StreamHub>,
    /// Holds the subscriber's place in the limits until the stream is dropped.
    pub(super) _ticket: Ticket,
    /// Counts the subscriber in the hub until the stream is dropped.
    pub(super) _guard: SubscriberGuard,
    pub(super) subscription: Subscription,
    /// Ticks whenever the hub changes.
    pub(super) changes: watch::Receiver<u64>,
    /// Ticks whenever a catch-up reader of the stream fetched records (none for a relay
    /// that reads another relay); waited on only while this subscriber catches up.
    pub(super) catch_up_changes: Option<watch::Receiver<u64>>,
    /// Turns to read while catching up (see `crate::catchup::turns`); none for a relay
    /// that reads another relay.
    pub(super) turns: Option<Turns>,
    /// Responses read from the ring, not yet handed to the transport.
    pub(super) pending: VecDeque<EncodedResponse>,
    /// Where a read of the ring puts its responses (kept to reuse its allocation).
    pub(super) read: Vec<EncodedResponse>,
    pub(super) heartbeat_interval: Duration,
    /// Fires at the earliest time a heartbeat may be due. Moved only when it fires, not at
    /// every response: arming a timer per wait cost more than the rare early wake-up.
    pub(super) heartbeat: Pin<Box<Sleep>>,
    pub(super) last_sent: Instant,
    /// When the last heartbeat went out.
    pub(super) last_heartbeat: Instant,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Set once the stream has ended with a status.
    pub(super) done: bool,
    /// A response was just handed over; see [`Feed::next`].
    pub(super) just_sent: bool,
    /// When the call's `grpc-timeout` passes.
    pub(super) deadline: Option<Instant>,
    /// Fires at `deadline`, while the subscriber waits for records.
    pub(super) deadline_timer: Option<Pin<Box<Sleep>>>,
    /// Who it is, and why it ended, for the log line and counter at its end.
    pub(super) log: Log,
}

/// What the line logged at a subscriber's end says.
pub(super) struct Log {
    pub(super) peer: Option<SocketAddr>,
    pub(super) principal: String,
    pub(super) started: Instant,
    /// How the connection ended, read when the client went away without a status.
    pub(super) fate: Option<ConnectionFate>,
    /// Set when the relay ended the call with a status.
    pub(super) end: Option<SubscriberEnd>,
    pub(super) budget: Arc<LogBudget>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        let log = &self.log;
        let end = log
            .end
            .unwrap_or_else(|| match log.fate.as_ref().and_then(|f| f.reason()) {
                Some(CloseReason::Keepalive) => SubscriberEnd::Keepalive,
                Some(CloseReason::Shutdown | CloseReason::ShutdownGrace) => SubscriberEnd::Shutdown,
                _ => SubscriberEnd::ClientCancel,
            });
        self.hub.counters.subscriber_ends.count(end);
        if let Some(left_out) = log.budget.admit() {
            info!(
                stream = self.hub.name(),
                peer = ?log.peer,
                principal = %log.principal,
                reason = end.as_str(),
                duration_ms = log.started.elapsed().as_millis() as u64,
                similar_lines_left_out = left_out,
                "subscriber ended"
            );
        }
    }
}

impl Feed {
    /// The next response, or the status that ends the stream: the client lagged under
    /// DISCONNECT or the relay shuts down. `None` after that.
    pub(super) async fn next(&mut self) -> Option<Result<EncodedResponse, Status>> {
        if self.done {
            return None;
        }
        loop {
            if *self.shutdown.borrow() {
                return Some(Err(self.shutdown_status()));
            }
            if self.deadline.is_some_and(|at| Instant::now() >= at) {
                return Some(Err(self.deadline_status()));
            }
            // While records come from Kinesis, heartbeats say how far behind the tip they
            // are, even though responses flow.
            if self.subscription.catching_up()
                && self.last_heartbeat.elapsed() >= self.heartbeat_interval
            {
                self.last_heartbeat = Instant::now();
                return Some(Ok(self.subscription.heartbeat(&self.hub)));
            }
            if let Some(response) = self.pending.pop_front() {
                let counters = &self.hub.counters;
                counters
                    .records_out
                    .fetch_add(response.records as u64, Ordering::Relaxed);
                counters
                    .bytes_out
                    .fetch_add(response.len() as u64, Ordering::Relaxed);
                self.last_sent = Instant::now();
                if let Some(oldest) = response.oldest {
                    counters.delivery_delay.observe(
                        self.last_sent.into_std().saturating_duration_since(oldest),
                        response.records as u64,
                    );
                }
                self.just_sent = true;
                return Some(Ok(response));
            }
            // hyper asks for the next response as soon as it has queued the last one, long
            // before that one is written. Letting the connections write first means that
            // what arrives meanwhile joins this subscriber's next batch: fewer, larger
            // writes under load, and no delay when there is nothing else to run.
            if std::mem::take(&mut self.just_sent) {
                tokio::task::yield_now().await;
                continue;
            }
            // Mark the version seen before reading, so that an append after the read wakes
            // the wait below.
            self.changes.borrow_and_update();
            if let Some(changes) = &mut self.catch_up_changes {
                changes.borrow_and_update();
            }
            // A catching-up subscriber reads in its turn, and keeps it until the scheduler
            // has run what was queued meanwhile, live subscribers first among them.
            let turn = match &self.turns {
                Some(turns) if self.subscription.catching_up() => Some(turns.take().await),
                _ => None,
            };
            match self.subscription.poll(&self.hub, &mut self.read) {
                Err(stop) => return Some(Err(self.stopped_status(stop))),
                Ok(progressed) => {
                    self.pending.extend(self.read.drain(..));
                    if turn.is_some() && !self.pending.is_empty() {
                        tokio::task::yield_now().await;
                    }
                    drop(turn);
                    if progressed || !self.pending.is_empty() {
                        continue;
                    }
                }
            }
            let catching_up = self.subscription.catching_up();
            let deadline_timer = &mut self.deadline_timer;
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() { return None },
                Some(Ok(())) = async {
                    match &mut self.catch_up_changes {
                        Some(changes) => Some(changes.changed().await),
                        None => None,
                    }
                }, if catching_up => {}
                () = async {
                    match deadline_timer {
                        Some(timer) => timer.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => return Some(Err(self.deadline_status())),
                () = &mut self.heartbeat => {
                    let due = self.last_sent + self.heartbeat_interval;
                    let now = Instant::now();
                    if now < due {
                        self.heartbeat.as_mut().reset(due);
                        continue;
                    }
                    self.heartbeat.as_mut().reset(now + self.heartbeat_interval);
                    self.last_sent = now;
                    self.last_heartbeat = now;
                    return Some(Ok(self.subscription.heartbeat(&self.hub)));
                }
                // Also when the shutdown sender is gone: the relay is going away either way.
                _ = crate::stopped(&mut self.shutdown) => return Some(Err(self.shutdown_status())),
            }
        }
    }

    /// Ends the stream for what the subscription reported.
    fn stopped_status(&mut self, stop: Stop) -> Status {
        self.done = true;
        let counters = &self.hub.counters;
        match stop {
            Stop::Lagged { shard, cursor } => {
                counters.lag_disconnects.fetch_add(1, Ordering::Relaxed);
                debug!(stream = self.hub.name(), shard = %shard, "subscriber too slow, disconnecting");
                self.log.end = Some(SubscriberEnd::LagPolicy);
                with_cursor(
                    Code::ResourceExhausted,
                    format!(
                        "this subscriber read too slowly and fell behind the oldest record the relay holds in shard {shard}; resume with the cursor in the status details (trailer kinesis-relay-cursor), read faster, or subscribe with on_lag LAG_POLICY_CATCH_UP or LAG_POLICY_SKIP"
                    ),
                    &cursor,
                )
            }
            Stop::Expired { message, cursor } => {
                self.log.end = Some(SubscriberEnd::Expired);
                with_cursor(Code::OutOfRange, message, &cursor)
            }
            Stop::CatchUpFailed { message, cursor } => {
                self.log.end = Some(SubscriberEnd::CatchUpFailed);
                with_cursor(Code::Unavailable, message, &cursor)
            }
            Stop::Refused(refused) => {
                self.log.end = Some(SubscriberEnd::Refused);
                Status::new(super::relay::open_error_code(&refused), refused.to_string())
            }
        }
    }

    /// Ends the stream: the relay shuts down.
    fn shutdown_status(&mut self) -> Status {
        self.end_with(
            SubscriberEnd::Shutdown,
            Code::Unavailable,
            "the relay is shutting down; resume on another relay (or this one when it is back)",
        )
    }

    /// Ends the stream: the call's deadline passed.
    fn deadline_status(&mut self) -> Status {
        self.end_with(
            SubscriberEnd::Deadline,
            Code::DeadlineExceeded,
            "the call's deadline (grpc-timeout) passed; resume",
        )
    }

    /// Marks the stream ended for `end` and builds its status, which carries the cursor.
    fn end_with(&mut self, end: SubscriberEnd, code: Code, what: &str) -> Status {
        self.done = true;
        self.log.end = Some(end);
        with_cursor(
            code,
            format!("{what} with the cursor in the status details (trailer kinesis-relay-cursor)"),
            &self.subscription.encoded_cursor(),
        )
    }
}
