//! The client's subscription that survives relay restarts: the API crate's resuming
//! [`Subscriber`] (reconnect with backoff, resume after the last cursor, never a record
//! twice), with this client's connection, stream-name lookup, failure classes and stderr
//! reports of reconnections, gaps and lag.
//!
//! Clients in other languages should copy the rules listed in
//! `kinesis_relay_api::subscriber`: keep the last `cursor` of every response, and on
//! UNAVAILABLE, RESOURCE_EXHAUSTED (with a cursor) or a lost connection, subscribe again
//! with `after_cursor` set to it.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use kinesis_relay_api::{
    subscriber::{Action, Error, Event, Interruption, Open, Options, Subscriber},
    v1::{
        self, Earliest, Latest, SubscribeRequest, SubscribeResponse,
        subscribe_request::StartingPosition, subscribe_response::Event as Response,
    },
};
use tonic::Streaming;
use tracing::{debug, info};

pub use kinesis_relay_api::subscriber::{Delivered, cursor_after};

use crate::{
    cli::{OnLag, SelectionArgs, StartFrom},
    connect::{Client, Connector},
    error::{Failure, is_retryable},
    notice,
    output::timestamp,
};

/// First reconnection delay.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest reconnection delay.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Least time between two reports of a relay that stays unreachable.
const RETRY_NOTICE_INTERVAL: Duration = Duration::from_secs(10);

/// What one response brought, after reconnections and duplicate removal.
#[derive(Debug)]
pub enum Delivery {
    /// Records of one shard, in order (possibly none left after duplicate removal).
    Records {
        /// The shard.
        shard_id: String,
        /// The records.
        records: Vec<v1::Record>,
        /// The cursor covering them.
        cursor: String,
    },
    /// Anything else (heartbeat, shard event, gap): only the cursor matters to callers.
    Progress {
        /// The cursor of the response.
        cursor: String,
    },
}

/// A subscription that reconnects on its own.
pub struct Resuming {
    /// The resuming subscriber, opening subscriptions through this client's connection.
    subscriber: Subscriber<Opener>,
    /// Where the start cursor came from, for error messages.
    origin: Option<String>,
    /// Give up after failing for this long (for the retry notices).
    retry_timeout: Duration,
    /// Relay lag worth a warning.
    lag_warning: Duration,
    /// Shards currently reported as lagging, so each crossing is reported once.
    lagging: HashSet<String>,
    /// When a retry was last reported, so a long outage is reported now and then.
    last_notice: Option<Instant>,
}

impl Resuming {
    /// A subscription of `selection` starting at `start`; `origin` says where a cursor start
    /// came from ("checkpoint FILE").
    pub fn new(
        connector: Connector,
        selection: &SelectionArgs,
        start: StartFrom,
        origin: Option<String>,
    ) -> Self {
        let template = SubscribeRequest {
            stream: selection.stream.clone().unwrap_or_default(),
            shard_ids: selection.shards.clone(),
            partition_keys: selection.keys.clone(),
            partition_key_prefixes: selection.key_prefixes.clone(),
            on_lag: match selection.on_lag {
                None => v1::LagPolicy::Unspecified,
                Some(OnLag::Disconnect) => v1::LagPolicy::Disconnect,
                Some(OnLag::Skip) => v1::LagPolicy::Skip,
            }
            .into(),
            ..SubscribeRequest::default()
        };
        let start = match start {
            StartFrom::Cursor(cursor) => StartingPosition::AfterCursor(cursor),
            StartFrom::Latest => StartingPosition::Latest(Latest {}),
            StartFrom::Earliest => StartingPosition::Earliest(Earliest {}),
            StartFrom::Timestamp(at) => StartingPosition::AtTimestamp(timestamp(at)),
        };
        let opener = Opener {
            connector,
            stream_name: selection.stream.clone(),
        };
        let options = Options {
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            idle_timeout: selection.idle_timeout,
            retry_timeout: Some(selection.retry_timeout),
        };
        Self {
            subscriber: Subscriber::new(opener, template, start, options),
            origin,
            retry_timeout: selection.retry_timeout,
            lag_warning: selection.lag_warning,
            lagging: HashSet::new(),
            last_notice: None,
        }
    }

    /// The stream name, once known (after the first delivery at the latest).
    pub fn stream_name(&self) -> &str {
        self.subscriber
            .opener()
            .stream_name
            .as_deref()
            .unwrap_or("")
    }

    /// The next delivery. Reconnects as long as failures are transient and the relay comes
    /// back within the retry timeout; returns the failure otherwise.
    pub async fn next(&mut self) -> anyhow::Result<Delivery> {
        loop {
            match self.subscriber.next().await {
                Ok(Event::Subscribed) => {}
                Ok(Event::Response { response, repeats }) => {
                    self.last_notice = None;
                    return Ok(self.deliver(response, repeats));
                }
                Ok(Event::Interrupted { cause, retry_in }) => self.report(cause, retry_in),
                Err(err) => return Err(self.failure(err)),
            }
        }
    }

    /// Turns a response into a delivery, reporting what is not records on stderr.
    fn deliver(&mut self, message: SubscribeResponse, repeats: u64) -> Delivery {
        let cursor = message.cursor;
        match message.event {
            Some(Response::Records(batch)) => {
                if repeats > 0 {
                    notice!(
                        "the relay re-sent {repeats} records of shard {} already delivered; they were skipped",
                        batch.shard_id
                    );
                }
                Delivery::Records {
                    shard_id: batch.shard_id,
                    records: batch.records,
                    cursor,
                }
            }
            Some(Response::Heartbeat(heartbeat)) => {
                self.check_lag(&heartbeat.shards);
                Delivery::Progress { cursor }
            }
            Some(Response::Gap(gap)) => {
                let reason = match v1::GapReason::try_from(gap.reason) {
                    Ok(v1::GapReason::SubscriberTooSlow) => {
                        "this client read too slowly (--on-lag skip)"
                    }
                    Ok(v1::GapReason::UpstreamExpired) => {
                        "they expired from Kinesis before the relay read them"
                    }
                    _ => "unknown reason",
                };
                for shard in &gap.shards {
                    notice!(
                        "gap: {} records of shard {} were missed (after sequence {:?} up to {}): {reason}",
                        shard.records_missed,
                        shard.shard_id,
                        shard.from_sequence_number,
                        shard.to_sequence_number
                    );
                }
                Delivery::Progress { cursor }
            }
            Some(Response::ShardEvent(event)) => {
                match v1::ShardEventKind::try_from(event.kind) {
                    Ok(v1::ShardEventKind::Ended) => info!(
                        shard = event.shard_id,
                        children = ?event.child_shard_ids,
                        "shard ended"
                    ),
                    _ => {
                        info!(shard = event.shard_id, parents = ?event.parent_shard_ids, "shard started")
                    }
                }
                Delivery::Progress { cursor }
            }
            None => Delivery::Progress { cursor },
        }
    }

    /// Warns once when a shard's relay lag crosses `lag_warning`, and once when it recovers.
    fn check_lag(&mut self, shards: &[v1::ShardLag]) {
        let limit = self.lag_warning.as_millis() as i64;
        for shard in shards {
            let behind = shard.millis_behind_latest > limit;
            if behind && self.lagging.insert(shard.shard_id.clone()) {
                notice!(
                    "lag: the relay is {:.1}s behind the tip of shard {}",
                    shard.millis_behind_latest as f64 / 1000.0,
                    shard.shard_id
                );
            } else if !behind && self.lagging.remove(&shard.shard_id) {
                notice!("lag: shard {} caught up", shard.shard_id);
            }
        }
    }

    /// Reports an interruption on stderr: every lost subscription, and a relay that stays
    /// unreachable now and then.
    fn report(&mut self, cause: Interruption<Attempt>, retry_in: Duration) {
        debug!(delay = ?retry_in, "waiting before reconnecting");
        let why = match cause {
            Interruption::Open(Attempt::Transient(failure) | Attempt::Fatal(failure)) => {
                debug!(cause = %failure, "attempt failed");
                let failing_for = self.subscriber.failing_for().unwrap_or_default();
                let quiet = self
                    .last_notice
                    .is_some_and(|at| at.elapsed() < RETRY_NOTICE_INTERVAL);
                if !self.retry_timeout.is_zero() && !quiet {
                    notice!(
                        "{failure}; retrying for up to {:.0}s more",
                        self.retry_timeout.saturating_sub(failing_for).as_secs_f64()
                    );
                    self.last_notice = Some(Instant::now());
                }
                return;
            }
            Interruption::Silent(after) => format!("no message for {after:?}"),
            Interruption::Ended => "the relay ended the subscription".to_owned(),
            Interruption::Status(status) if status.code() == tonic::Code::ResourceExhausted => {
                "this client fell behind and was disconnected".to_owned()
            }
            Interruption::Status(status) => format!("{:?}: {}", status.code(), status.message()),
        };
        notice!("subscription lost ({why}); resuming from the last cursor");
    }

    /// The failure a subscription stopped with, as the user should read it.
    fn failure(&self, err: Error<Attempt>) -> anyhow::Error {
        let connector = &self.subscriber.opener().connector;
        match err {
            Error::Status(status) => anyhow::Error::new(connector.failure(&status)),
            Error::Open(Attempt::Fatal(failure) | Attempt::Transient(failure)) => {
                let err = anyhow::Error::new(failure);
                match (self.subscriber.cursor(), &self.origin) {
                    (None, Some(origin)) => {
                        err.context(format!("subscribing with the cursor from {origin}"))
                    }
                    _ => err,
                }
            }
            Error::GaveUp { cause, after } => {
                let failure = match cause {
                    Interruption::Open(Attempt::Transient(failure) | Attempt::Fatal(failure)) => {
                        failure
                    }
                    Interruption::Status(status) => connector.failure(&status),
                    Interruption::Silent(_) => {
                        connector.unreachable("the subscription went silent".into())
                    }
                    Interruption::Ended => connector.unreachable("subscription ended".into()),
                };
                anyhow::Error::new(failure).context(format!(
                    "giving up after {:.1}s of failures (--retry-timeout)",
                    after.as_secs_f64()
                ))
            }
        }
    }
}

/// Opens this client's subscriptions: a connection and a Subscribe call, each within
/// `--connect-timeout`, after learning the stream name when none was given.
struct Opener {
    /// How to reach the relay.
    connector: Connector,
    /// The stream name (resolved from the relay when not given).
    stream_name: Option<String>,
}

/// How an attempt failed.
#[derive(Debug, Clone)]
enum Attempt {
    /// Worth retrying.
    Transient(Failure),
    /// Not worth retrying.
    Fatal(Failure),
}

impl Open for Opener {
    type Error = Attempt;

    async fn open(
        &mut self,
        request: SubscribeRequest,
    ) -> Result<Streaming<SubscribeResponse>, Attempt> {
        let mut client = self.connector.connect().await.map_err(Attempt::Transient)?;
        if self.stream_name.is_none() {
            self.stream_name = Some(self.resolve_stream(&mut client).await?);
        }
        let timeout = self.connector.timeout();
        match tokio::time::timeout(timeout, client.subscribe(request)).await {
            Err(_) => Err(Attempt::Transient(
                self.connector
                    .unreachable(format!("Subscribe not answered within {timeout:?}")),
            )),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.classify(&status)),
        }
    }

    fn after_open_error(&self, error: &Attempt) -> Action {
        match error {
            Attempt::Transient(_) => Action::Resume,
            Attempt::Fatal(_) => Action::Fail,
        }
    }
}

impl Opener {
    /// A refused call: transient or fatal.
    fn classify(&self, status: &tonic::Status) -> Attempt {
        if is_retryable(status) {
            Attempt::Transient(self.connector.failure(status))
        } else {
            Attempt::Fatal(self.connector.failure(status))
        }
    }

    /// The name of the only stream the relay serves (several: the relay's own error asks
    /// for --stream when subscribing).
    async fn resolve_stream(&self, client: &mut Client) -> Result<String, Attempt> {
        let listing = tokio::time::timeout(
            self.connector.timeout(),
            client.list_streams(v1::ListStreamsRequest {}),
        )
        .await
        .map_err(|_| {
            Attempt::Transient(
                self.connector
                    .unreachable("ListStreams not answered in time".into()),
            )
        })?;
        let streams = listing
            .map_err(|status| self.classify(&status))?
            .into_inner()
            .streams;
        match streams.as_slice() {
            [only] => Ok(only.name.clone()),
            [] => Err(Attempt::Fatal(Failure::NotFound {
                message: "the relay serves no stream".into(),
            })),
            many => Err(Attempt::Fatal(Failure::Usage(format!(
                "--stream is required: the relay serves {}",
                many.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))),
        }
    }
}
