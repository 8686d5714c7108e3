//! A subscription that survives relay restarts: it reconnects with backoff, resumes after
//! the last cursor, and never hands out a record twice. The client's `subscribe` and
//! `archive` commands and a relay reading another relay (`--upstream-relay`) are built on
//! it; Rust programs can use it the same way (feature `subscriber`).
//!
//! The rules, for clients in other languages to copy:
//! - Keep the `cursor` of every response (and the one a RESOURCE_EXHAUSTED or UNAVAILABLE
//!   status carries, see [`crate::resume`]); subscribe again with `after_cursor` set to it.
//! - The first subscription starts where asked; every later one after the cursor.
//! - Wait between attempts with [`Backoff`]; reset it once a response arrives.
//! - A subscription silent for longer than the heartbeat interval allows is dead.
//! - Per shard, drop records at or before the last one handed out ([`Delivered`]).
//!
//! # Example
//!
//! ```no_run
//! use kinesis_relay_api::subscriber::{Event, Options, Subscriber};
//! use kinesis_relay_api::v1::{
//!     Earliest, SubscribeRequest, relay_client::RelayClient,
//!     subscribe_request::StartingPosition, subscribe_response,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RelayClient::connect("http://127.0.0.1:50051").await?;
//! let request = SubscribeRequest { stream: "orders".into(), ..Default::default() };
//! let mut subscriber = Subscriber::new(
//!     client,
//!     request,
//!     StartingPosition::Earliest(Earliest {}),
//!     Options::default(),
//! );
//! loop {
//!     match subscriber.next().await? {
//!         Event::Response { response, .. } => {
//!             if let Some(subscribe_response::Event::Records(batch)) = response.event {
//!                 for record in batch.records {
//!                     println!("{} {}", batch.shard_id, record.sequence_number);
//!                 }
//!             }
//!             // Store `response.cursor` to resume here after a restart of this program.
//!         }
//!         Event::Interrupted { cause, retry_in } => {
//!             eprintln!("subscription lost ({cause:?}); resuming in {retry_in:?}");
//!         }
//!         Event::Subscribed => {}
//!     }
//! }
//! # }
//! ```

mod delivered;
mod open;

use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tonic::{Status, Streaming};

pub use self::{
    delivered::{CursorAfterError, Delivered, cursor_after},
    open::{Action, Open, is_transient},
};
use crate::{
    backoff::Backoff,
    resume::cursor_of,
    v1::{SubscribeRequest, SubscribeResponse, subscribe_request::StartingPosition},
};

/// How a [`Subscriber`] waits and when it gives up.
#[derive(Debug, Clone)]
pub struct Options {
    /// First delay between attempts (doubling, with jitter, up to `backoff_cap`).
    pub backoff_base: Duration,
    /// Largest delay between attempts.
    pub backoff_cap: Duration,
    /// A subscription that sends nothing for this long is dead (the relay sends
    /// heartbeats, so a live one is never silent for long).
    pub idle_timeout: Duration,
    /// Give up after failing for this long with no response in between; `None` retries
    /// for ever. Zero gives up at the first failure.
    pub retry_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            retry_timeout: None,
        }
    }
}

/// What [`Subscriber::next`] brings.
#[derive(Debug)]
pub enum Event<E> {
    /// A subscription was opened (the first one, or one after an interruption).
    Subscribed,
    /// A response. Records already handed out were removed from it (`repeats` says how
    /// many); its cursor covers them all the same.
    Response {
        /// The response, records de-duplicated.
        response: SubscribeResponse,
        /// Records of it dropped as already handed out.
        repeats: u64,
    },
    /// The subscription was lost or could not be opened; the next call waits `retry_in`
    /// and subscribes again.
    Interrupted {
        /// What happened.
        cause: Interruption<E>,
        /// The wait before the next attempt (shortened to what is left of the retry
        /// timeout).
        retry_in: Duration,
    },
}

/// Why a subscription was lost.
#[derive(Debug, Clone)]
pub enum Interruption<E> {
    /// Opening failed.
    Open(E),
    /// The relay ended the subscription with this status.
    Status(Status),
    /// Nothing arrived for this long.
    Silent(Duration),
    /// The relay ended the subscription without a status.
    Ended,
}

/// Why a [`Subscriber`] stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error<E: std::fmt::Debug> {
    /// Opening failed, and [`Open::after_open_error`] said not to retry.
    #[error("subscribing failed: {0:?}")]
    Open(E),
    /// The subscription ended with a status [`Open::after_status`] said not to resume.
    #[error("the relay ended the subscription: {0}")]
    Status(Status),
    /// Failures went on for longer than [`Options::retry_timeout`]; the last one.
    #[error("giving up after {:.1}s of failures; the last: {cause:?}", after.as_secs_f64())]
    GaveUp {
        /// The last failure.
        cause: Interruption<E>,
        /// How long failures went on.
        after: Duration,
    },
}

/// A subscription that reconnects on its own. See the [module documentation](self).
pub struct Subscriber<O: Open> {
    /// Opens each subscription.
    opener: O,
    /// The request, without its starting position.
    template: SubscribeRequest,
    /// Where a subscription starts when there is no cursor yet (or after a restart).
    start: StartingPosition,
    /// The last cursor received: where the next subscription resumes.
    cursor: Option<String>,
    /// The open subscription.
    stream: Option<Streaming<SubscribeResponse>>,
    /// Timeouts and backoff bounds.
    options: Options,
    /// Delay between attempts.
    backoff: Backoff,
    /// When the next attempt may start, chosen when the last interruption was reported (so
    /// that the caller is told the wait that really comes) and kept until it has passed (so
    /// that a call cancelled during the wait resumes it rather than starting a longer one).
    retry_at: Option<Instant>,
    /// When failures began (None while things work); a response ends them.
    failing_since: Option<Instant>,
    /// The last failure, returned when giving up.
    last_cause: Option<Interruption<O::Error>>,
    /// The last record handed out per shard, to drop anything at or before it.
    delivered: Delivered,
    /// What the last response changed, for [`Subscriber::retry_last`].
    undo: Option<Undo>,
}

/// The cursor and never-twice guard from before the last response.
struct Undo {
    /// The cursor before it.
    cursor: Option<String>,
    /// Its shard and the last record handed out of that shard before it (records only).
    shard: Option<(String, Option<delivered::LastHandedOut>)>,
}

impl<O: Open> std::fmt::Debug for Subscriber<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("stream", &self.template.stream)
            .field("cursor", &self.cursor)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

impl<O: Open> Subscriber<O> {
    /// A subscriber sending `template` (its starting position replaced) through `opener`,
    /// starting at `start`. Starting after a cursor seeds the never-twice guard with it.
    pub fn new(
        opener: O,
        template: SubscribeRequest,
        start: StartingPosition,
        options: Options,
    ) -> Self {
        let mut delivered = Delivered::default();
        if let StartingPosition::AfterCursor(cursor) = &start {
            delivered.seed(cursor);
        }
        Self {
            opener,
            template,
            start,
            cursor: None,
            stream: None,
            backoff: Backoff::new(options.backoff_base, options.backoff_cap),
            options,
            retry_at: None,
            failing_since: None,
            last_cause: None,
            delivered,
            undo: None,
        }
    }

    /// Resumes after `cursor` (saved by an earlier run) instead of the starting position;
    /// an [`Action::Restart`] still goes back to the starting position.
    pub fn resume_after(mut self, cursor: Option<String>) -> Self {
        if let Some(cursor) = &cursor {
            self.delivered.seed(cursor);
        }
        self.cursor = cursor;
        self
    }

    /// The last cursor received (or given to [`Self::resume_after`]).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The opener, e.g. for what it learnt while opening.
    pub fn opener(&self) -> &O {
        &self.opener
    }

    /// How long failures have gone on without a response in between.
    pub fn failing_for(&self) -> Option<Duration> {
        self.failing_since.map(|since| since.elapsed())
    }

    /// The next event. Reconnects as long as [`Open`] says failures are worth it and they
    /// stop within [`Options::retry_timeout`]. Cancel-safe: a call dropped mid-way loses
    /// no response.
    pub async fn next(&mut self) -> Result<Event<O::Error>, Error<O::Error>>
    where
        O::Error: std::fmt::Debug,
    {
        let Some(stream) = self.stream.as_mut() else {
            return self.open().await;
        };
        let cause = match timeout(self.options.idle_timeout, stream.message()).await {
            Ok(Ok(Some(response))) => return Ok(self.received(response)),
            Err(_) => Interruption::Silent(self.options.idle_timeout),
            Ok(Ok(None)) => Interruption::Ended,
            Ok(Err(status)) => match self.opener.after_status(&status) {
                Action::Fail => {
                    self.stream = None;
                    return Err(Error::Status(status));
                }
                Action::Restart => {
                    self.cursor = None;
                    Interruption::Status(status)
                }
                Action::Resume => {
                    if let Some(cursor) = cursor_of(&status) {
                        self.cursor = Some(cursor);
                    }
                    Interruption::Status(status)
                }
            },
        };
        Ok(self.interrupt(cause))
    }

    /// Drops the open subscription, if any, for `cause` (e.g. something the caller does
    /// with a response failed); the next call to [`Self::next`] subscribes again after a
    /// backoff. Returns the event to report, as [`Self::next`] would have.
    pub fn interrupt(&mut self, cause: Interruption<O::Error>) -> Event<O::Error> {
        self.stream = None;
        self.undo = None;
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let delay = self.next_delay(since);
        self.retry_at = Some(Instant::now() + delay);
        self.last_cause = Some(cause.clone());
        Event::Interrupted {
            cause,
            retry_in: delay,
        }
    }

    /// Takes back the last response, which the caller could not use (e.g. a write of its
    /// records failed): the open subscription is dropped and the next one resumes before
    /// that response, whose records are handed out again. Otherwise as [`Self::interrupt`].
    pub fn retry_last(&mut self, cause: Interruption<O::Error>) -> Event<O::Error> {
        if let Some(undo) = self.undo.take() {
            self.cursor = undo.cursor;
            if let Some((shard, last)) = undo.shard {
                self.delivered.restore(&shard, last);
            }
        }
        self.interrupt(cause)
    }

    /// Subscribes, after the wait an interruption chose.
    async fn open(&mut self) -> Result<Event<O::Error>, Error<O::Error>>
    where
        O::Error: std::fmt::Debug,
    {
        if let Some(since) = self.failing_since {
            if let Some(budget) = self.options.retry_timeout
                && since.elapsed() >= budget
            {
                return Err(Error::GaveUp {
                    cause: self.last_cause.take().unwrap_or(Interruption::Ended),
                    after: since.elapsed(),
                });
            }
            let at = match self.retry_at {
                Some(at) => at,
                // A call cancelled during its attempt: wait before the next one all the same.
                None => {
                    let at = Instant::now() + self.next_delay(since);
                    *self.retry_at.insert(at)
                }
            };
            sleep_until(at).await;
            self.retry_at = None;
        }
        let mut request = self.template.clone();
        request.starting_position = Some(match &self.cursor {
            Some(cursor) => StartingPosition::AfterCursor(cursor.clone()),
            None => self.start.clone(),
        });
        match self.opener.open(request).await {
            Ok(stream) => {
                self.stream = Some(stream);
                Ok(Event::Subscribed)
            }
            Err(err) => match self.opener.after_open_error(&err) {
                Action::Fail => Err(Error::Open(err)),
                Action::Restart => {
                    self.cursor = None;
                    Ok(self.interrupt(Interruption::Open(err)))
                }
                Action::Resume => Ok(self.interrupt(Interruption::Open(err))),
            },
        }
    }

    /// The wait before the next attempt of failures that began at `since`: the backoff's,
    /// never past the retry budget (the last attempt comes at its end).
    fn next_delay(&mut self, since: Instant) -> Duration {
        let delay = self.backoff.next_delay();
        match self.options.retry_timeout {
            Some(budget) => delay.min(budget.saturating_sub(since.elapsed())),
            None => delay,
        }
    }

    /// A response arrived: failures are over; its cursor is where the next subscription
    /// resumes; records already handed out are dropped.
    fn received(&mut self, mut response: SubscribeResponse) -> Event<O::Error> {
        self.failing_since = None;
        self.last_cause = None;
        self.retry_at = None;
        self.backoff.reset();
        // The cursor replaced is kept rather than cloned: most responses carry one.
        let mut undo = Undo {
            cursor: if response.cursor.is_empty() {
                self.cursor.clone()
            } else {
                self.cursor.replace(response.cursor.clone())
            },
            shard: None,
        };
        let mut repeats = 0;
        if let Some(crate::v1::subscribe_response::Event::Records(batch)) = &mut response.event {
            undo.shard = Some((batch.shard_id.clone(), self.delivered.last(&batch.shard_id)));
            let before = batch.records.len();
            batch.records = self
                .delivered
                .admit(&batch.shard_id, std::mem::take(&mut batch.records));
            repeats = (before - batch.records.len()) as u64;
        }
        self.undo = Some(undo);
        Event::Response { response, repeats }
    }
}

#[cfg(test)]
mod tests;
