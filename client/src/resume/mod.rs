//! A subscription that survives relay restarts: it reconnects with backoff and resumes
//! from the last cursor, reports gaps and lag on stderr, and never hands out a record twice.
//!
//! This is the part other clients should copy: keep the last `cursor` of every response,
//! and on UNAVAILABLE, RESOURCE_EXHAUSTED (with a cursor) or a lost connection, subscribe
//! again with `after_cursor` set to it.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::Context;
use kinesis_relay_api::{
    cursor::{Cursor, Position},
    sequence::SequenceNumber,
    v1::{
        self, Earliest, Latest, SubscribeRequest, SubscribeResponse,
        subscribe_request::StartingPosition, subscribe_response::Event,
    },
};
use tonic::{Status, Streaming};
use tracing::{debug, info};

use kinesis_relay_api::{backoff::Backoff, resume::cursor_of};

use crate::{
    cli::{OnLag, SelectionArgs, StartFrom},
    connect::{Client, Connector},
    error::{Failure, is_retryable},
    notice,
    output::timestamp,
};

mod delivered;

pub use self::delivered::{Delivered, cursor_after};

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
    /// How to reach the relay.
    connector: Connector,
    /// The request, without its starting position.
    template: SubscribeRequest,
    /// Where the first subscription starts (later ones start after `cursor`).
    initial: StartFrom,
    /// Where `initial`'s cursor came from, for error messages.
    origin: Option<String>,
    /// The last cursor received: where the next subscription resumes.
    cursor: Option<String>,
    /// The open subscription.
    stream: Option<Streaming<SubscribeResponse>>,
    /// Delay between attempts.
    backoff: Backoff,
    /// When the relay became unreachable (None while things work).
    failing_since: Option<Instant>,
    /// Why the last attempt failed.
    last_failure: Option<Failure>,
    /// Give up after failing for this long.
    retry_timeout: Duration,
    /// A subscription silent for this long is dead.
    idle_timeout: Duration,
    /// Relay lag worth a warning.
    lag_warning: Duration,
    /// Shards currently reported as lagging, so each crossing is reported once.
    lagging: HashSet<String>,
    /// The last record handed out per shard, to drop anything at or before it.
    delivered: Delivered,
    /// The stream name (resolved from the relay when not given).
    stream_name: Option<String>,
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
        let mut delivered = Delivered::default();
        if let StartFrom::Cursor(cursor) = &start {
            delivered.seed(cursor);
        }
        Self {
            connector,
            stream_name: selection.stream.clone(),
            template,
            initial: start,
            origin,
            cursor: None,
            stream: None,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
            failing_since: None,
            last_failure: None,
            retry_timeout: selection.retry_timeout,
            idle_timeout: selection.idle_timeout,
            lag_warning: selection.lag_warning,
            lagging: HashSet::new(),
            delivered,
            last_notice: None,
        }
    }

    /// The stream name, once known (after the first delivery at the latest).
    pub fn stream_name(&self) -> &str {
        self.stream_name.as_deref().unwrap_or("")
    }

    /// The next delivery. Reconnects as long as failures are transient and the relay comes
    /// back within the retry timeout; returns the failure otherwise.
    pub async fn next(&mut self) -> anyhow::Result<Delivery> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.open().await?;
                continue;
            };
            let message = match tokio::time::timeout(self.idle_timeout, stream.message()).await {
                Err(_) => {
                    self.lost(
                        format!("no message for {:?}", self.idle_timeout),
                        self.connector
                            .unreachable("the subscription went silent".into()),
                    );
                    continue;
                }
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => {
                    self.lost(
                        "the relay ended the subscription".into(),
                        self.connector.unreachable("subscription ended".into()),
                    );
                    continue;
                }
                Ok(Err(status)) => {
                    self.ended_with(status)?;
                    continue;
                }
            };
            self.failing_since = None;
            self.last_failure = None;
            self.last_notice = None;
            self.backoff.reset();
            if !message.cursor.is_empty() {
                self.cursor = Some(message.cursor.clone());
            }
            return Ok(self.deliver(message));
        }
    }

    /// Turns a response into a delivery, reporting what is not records on stderr.
    fn deliver(&mut self, message: SubscribeResponse) -> Delivery {
        let cursor = message.cursor;
        match message.event {
            Some(Event::Records(batch)) => {
                let records = self.delivered.admit(&batch.shard_id, batch.records);
                Delivery::Records {
                    shard_id: batch.shard_id,
                    records,
                    cursor,
                }
            }
            Some(Event::Heartbeat(heartbeat)) => {
                self.check_lag(&heartbeat.shards);
                Delivery::Progress { cursor }
            }
            Some(Event::Gap(gap)) => {
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
            Some(Event::ShardEvent(event)) => {
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

    /// Handles a status that ended the subscription: resume or fail.
    fn ended_with(&mut self, status: Status) -> anyhow::Result<()> {
        let failure = self.connector.failure(&status);
        if !is_retryable(&status) {
            self.stream = None;
            return Err(anyhow::Error::new(failure));
        }
        if let Some(cursor) = cursor_of(&status) {
            self.cursor = Some(cursor);
        }
        let why = if status.code() == tonic::Code::ResourceExhausted {
            "this client fell behind and was disconnected".to_owned()
        } else {
            format!("{:?}: {}", status.code(), status.message())
        };
        self.lost(why, failure);
        Ok(())
    }

    /// Drops the subscription; the next call reconnects.
    fn lost(&mut self, why: String, failure: Failure) {
        notice!("subscription lost ({why}); resuming from the last cursor");
        self.stream = None;
        self.failing_since.get_or_insert_with(Instant::now);
        self.last_failure = Some(failure);
    }

    /// Connects and subscribes, retrying transient failures until `retry_timeout`.
    async fn open(&mut self) -> anyhow::Result<()> {
        loop {
            if let Some(since) = self.failing_since {
                if since.elapsed() >= self.retry_timeout {
                    let failure = self
                        .last_failure
                        .take()
                        .unwrap_or_else(|| self.connector.unreachable("unavailable".into()));
                    return Err(anyhow::Error::new(failure).context(format!(
                        "giving up after {:.1}s of failures (--retry-timeout)",
                        since.elapsed().as_secs_f64()
                    )));
                }
                // Never sleep past the retry budget: the last attempt comes at its end.
                let delay = self
                    .backoff
                    .next_delay()
                    .min(self.retry_timeout.saturating_sub(since.elapsed()));
                debug!(?delay, "waiting before reconnecting");
                tokio::time::sleep(delay).await;
            }
            match self.attempt().await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(Attempt::Transient(failure)) => {
                    debug!(cause = %failure, "attempt failed");
                    let since = *self.failing_since.get_or_insert_with(Instant::now);
                    let quiet = self
                        .last_notice
                        .is_some_and(|at| at.elapsed() < RETRY_NOTICE_INTERVAL);
                    if !self.retry_timeout.is_zero() && !quiet {
                        notice!(
                            "{failure}; retrying for up to {:.0}s more",
                            self.retry_timeout
                                .saturating_sub(since.elapsed())
                                .as_secs_f64()
                        );
                        self.last_notice = Some(Instant::now());
                    }
                    self.last_failure = Some(failure);
                }
                Err(Attempt::Fatal(failure)) => {
                    let err = anyhow::Error::new(failure);
                    return Err(match (&self.cursor, &self.origin) {
                        (None, Some(origin)) => {
                            err.context(format!("subscribing with the cursor from {origin}"))
                        }
                        _ => err,
                    });
                }
            }
        }
    }

    /// One connection and Subscribe call.
    async fn attempt(&mut self) -> Result<Streaming<SubscribeResponse>, Attempt> {
        let mut client = self.connector.connect().await.map_err(Attempt::Transient)?;
        if self.stream_name.is_none() {
            self.stream_name = Some(self.resolve_stream(&mut client).await?);
        }
        let mut request = self.template.clone();
        request.starting_position = Some(match (&self.cursor, &self.initial) {
            (Some(cursor), _) | (None, StartFrom::Cursor(cursor)) => {
                StartingPosition::AfterCursor(cursor.clone())
            }
            (None, StartFrom::Latest) => StartingPosition::Latest(Latest {}),
            (None, StartFrom::Earliest) => StartingPosition::Earliest(Earliest {}),
            (None, StartFrom::Timestamp(at)) => StartingPosition::AtTimestamp(timestamp(*at)),
        });
        match tokio::time::timeout(self.connector.timeout(), client.subscribe(request)).await {
            Err(_) => Err(Attempt::Transient(self.connector.unreachable(format!(
                "Subscribe not answered within {:?}",
                self.connector.timeout()
            )))),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) if is_retryable(&status) => {
                Err(Attempt::Transient(self.connector.failure(&status)))
            }
            Ok(Err(status)) => Err(Attempt::Fatal(self.connector.failure(&status))),
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
        match listing {
            Ok(response) => {
                let streams = response.into_inner().streams;
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
            Err(status) if is_retryable(&status) => {
                Err(Attempt::Transient(self.connector.failure(&status)))
            }
            Err(status) => Err(Attempt::Fatal(self.connector.failure(&status))),
        }
    }
}

/// How an attempt failed.
enum Attempt {
    /// Worth retrying.
    Transient(Failure),
    /// Not worth retrying.
    Fatal(Failure),
}
