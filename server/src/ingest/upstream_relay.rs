//! Ingest from another relay instead of Kinesis (`--upstream-relay URL`), so relays form a
//! tree: the first tier holds the EFO consumers (Kinesis allows 20 per stream), the next
//! tiers fan out further.
//!
//! The subscription is the API crate's resuming [`Subscriber`] (reconnect with backoff,
//! resume after the last cursor, never a record twice), as in the client; this file adds
//! what a relay needs around it: the upstream's shards learnt into the hub before each
//! subscription, records appended to the hub, and the cursor kept in the stream's
//! checkpoint file. The upstream's records keep their Kinesis sequence and sub-sequence
//! numbers, so this relay's hub holds the same positions and a cursor from either relay
//! resumes on the other.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use kinesis_relay_api::{
    subscriber::{Action, Event, Interruption, Open, Options, Subscriber},
    v1::{
        self, SubscribeRequest, SubscribeResponse, relay_client::RelayClient,
        subscribe_request::StartingPosition, subscribe_response::Event as Response,
    },
};
use tokio::sync::watch;
use tonic::{
    Code, Request, Status, Streaming,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};
use tracing::{info, warn};

mod positions;

use self::positions::Positions;
use super::{IngestError, IngestSettings, InitialPosition};
use crate::hub::{
    ConsumerInfo, ReaderState, ShardMeta, StreamHub, entry::RelayRecord, ring::Floor,
};

/// How to reach the upstream relay.
#[derive(Debug, Clone)]
pub struct UpstreamRelay {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// Bearer token sent to it, when it requires one.
    pub token: Option<String>,
    /// PEM CA to trust for `https://`.
    pub ca_cert: Option<PathBuf>,
}

impl UpstreamRelay {
    /// A lazily connecting channel.
    pub fn channel(&self) -> Result<Channel, IngestError> {
        let config = |cause: String| IngestError::UpstreamConfig {
            url: self.url.clone(),
            cause,
        };
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|err| config(format!("not a URL: {err}")))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20));
        if self.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                let pem = std::fs::read(ca).map_err(|source| IngestError::UpstreamCa {
                    path: ca.clone(),
                    source,
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|err| config(format!("TLS configuration: {err}")))?;
        }
        Ok(endpoint.connect_lazy())
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

/// The streams the upstream serves (for a relay started without --stream).
pub async fn list_streams(upstream: &UpstreamRelay) -> Result<Vec<String>, IngestError> {
    let mut client = RelayClient::new(upstream.channel()?);
    let listed = client
        .list_streams(upstream.request(v1::ListStreamsRequest {}))
        .await
        .map_err(|status| IngestError::UpstreamListing {
            url: upstream.url.clone(),
            message: status.message().to_owned(),
        })?;
    Ok(listed
        .into_inner()
        .streams
        .into_iter()
        .map(|s| s.name)
        .collect())
}

/// Reads `stream` from the upstream relay into `hub` until shutdown. Never gives up on the
/// upstream: every failure is retried with backoff, as Kinesis failures are.
pub async fn run_stream(
    upstream: UpstreamRelay,
    stream: String,
    hub: Arc<StreamHub>,
    settings: Arc<IngestSettings>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let client = RelayClient::new(upstream.channel()?);
    let mut positions = Positions::load(&settings, &stream)?;
    let mut upstream_shards = Upstream {
        upstream: upstream.clone(),
        client,
        stream: stream.clone(),
        hub: hub.clone(),
        deadline: settings.watchdog,
    };
    let options = Options {
        backoff_base: settings.backoff_base,
        backoff_cap: settings.backoff_cap,
        idle_timeout: settings.watchdog,
        retry_timeout: None,
    };
    let template = SubscribeRequest {
        stream: stream.clone(),
        ..Default::default()
    };
    let start = starting_position(&settings.initial_position);
    let mut subscriber = Subscriber::new(upstream_shards.clone(), template, start, options)
        .resume_after(positions.saved.clone());
    loop {
        let event = tokio::select! {
            event = subscriber.next() => event,
            _ = crate::stopped(&mut shutdown) => break,
        };
        let event = match event {
            Ok(Event::Response { response, .. }) => {
                let applied = tokio::select! {
                    applied = upstream_shards.apply(response) => applied,
                    _ = crate::stopped(&mut shutdown) => {
                        // Not in the hub: the position saved at shutdown must precede it.
                        subscriber.retry_last(Interruption::Ended);
                        break;
                    }
                };
                match applied {
                    Ok(()) => {
                        positions.save_now_and_then(subscriber.cursor());
                        continue;
                    }
                    // The hub lacks the shard of these records: subscribe again from
                    // before them, once the upstream's shards can be learnt.
                    Err(status) => subscriber.retry_last(Interruption::Status(status)),
                }
            }
            Ok(event) => event,
            // Unreachable in practice: every failure resumes or restarts, for ever.
            Err(err) => {
                warn!(stream, upstream = %upstream.url, cause = %err, "upstream subscription failed for good");
                break;
            }
        };
        match event {
            Event::Subscribed => {
                mark(&hub, ReaderState::Reading);
                info!(stream, upstream = %upstream.url, "subscribed to the upstream relay");
            }
            Event::Interrupted { cause, retry_in } => {
                mark(&hub, ReaderState::Reconnecting);
                report(&upstream, &stream, cause, retry_in);
            }
            Event::Response { .. } => {}
        }
    }
    positions.save(subscriber.cursor());
    hub.set_stopped();
    info!(stream, "upstream ingest stopped");
    Ok(())
}

/// Where a subscription starts when there is no saved position (or after OUT_OF_RANGE).
fn starting_position(initial: &InitialPosition) -> StartingPosition {
    match initial {
        InitialPosition::Latest => StartingPosition::Latest(v1::Latest {}),
        // The oldest record Kinesis holds: the upstream relay reads it from Kinesis when
        // its ring no longer holds it.
        InitialPosition::TrimHorizon => StartingPosition::TrimHorizon(v1::TrimHorizon {}),
        InitialPosition::AtTimestamp(at) => {
            StartingPosition::AtTimestamp(prost_types::Timestamp::from(*at))
        }
    }
}

/// Logs why the upstream subscription was lost.
fn report(upstream: &UpstreamRelay, stream: &str, cause: Interruption<Status>, delay: Duration) {
    let url = &upstream.url;
    match cause {
        Interruption::Status(status) | Interruption::Open(status)
            if status.code() == Code::OutOfRange =>
        {
            warn!(stream, upstream = %url, cause = status.message(), "our position is older than what the upstream holds; continuing from its oldest record (records in between are lost)")
        }
        Interruption::Status(status) | Interruption::Open(status) => {
            warn!(stream, upstream = %url, code = ?status.code(), cause = status.message(), ?delay, "upstream subscription ended, reconnecting")
        }
        Interruption::Silent(after) => {
            warn!(stream, upstream = %url, silent = ?after, ?delay, "the upstream relay sent nothing for longer than the watchdog timeout, reconnecting")
        }
        Interruption::Ended => {
            warn!(stream, upstream = %url, ?delay, "upstream stream ended, reconnecting")
        }
    }
}

/// The upstream relay as the subscriber's opener, and the hub its responses go to.
#[derive(Clone)]
struct Upstream {
    /// Its address and token.
    upstream: UpstreamRelay,
    /// Its client (clones share the connection).
    client: RelayClient<Channel>,
    /// The stream read.
    stream: String,
    /// Where records go.
    hub: Arc<StreamHub>,
    /// How long a call to the upstream may take (`--watchdog`): an upstream that stops
    /// answering is an outage like any other, retried with backoff.
    deadline: Duration,
}

impl Open for Upstream {
    type Error = Status;

    /// Learns the upstream's shards (so that the hub holds them before their records
    /// arrive), then subscribes.
    async fn open(
        &mut self,
        request: SubscribeRequest,
    ) -> Result<Streaming<SubscribeResponse>, Status> {
        self.describe().await?;
        let request = self.upstream.request(request);
        let subscribed = tokio::time::timeout(self.deadline, self.client.subscribe(request))
            .await
            .map_err(|_| {
                Status::deadline_exceeded("the upstream relay did not answer Subscribe in time")
            })??;
        Ok(subscribed.into_inner())
    }

    fn after_open_error(&self, status: &Status) -> Action {
        self.after_status(status)
    }

    /// Every failure is retried: a relay outlives its upstream's outages. A position
    /// older than the upstream holds starts again from the starting position.
    fn after_status(&self, status: &Status) -> Action {
        if status.code() == Code::OutOfRange {
            Action::Restart
        } else {
            Action::Resume
        }
    }
}

impl Upstream {
    /// Learns the upstream's shards into the hub.
    async fn describe(&mut self) -> Result<(), Status> {
        let request = self.upstream.request(v1::DescribeStreamRequest {
            stream: self.stream.clone(),
        });
        let described = tokio::time::timeout(self.deadline, self.client.describe_stream(request))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(
                    "the upstream relay did not answer DescribeStream in time",
                )
            })??
            .into_inner();
        self.hub.set_consumer(ConsumerInfo {
            name: format!("upstream relay {}", self.upstream.url),
            arn: String::new(),
            status: described.consumer.map(|c| c.status).unwrap_or_default(),
        });
        for shard in &described.shards {
            let parents = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
                .into_iter()
                .filter(|id| !id.is_empty())
                .cloned()
                .collect();
            let range = shard.hash_key_range.clone().unwrap_or_default();
            self.hub.add_shard(
                ShardMeta {
                    shard_id: shard.shard_id.clone(),
                    parents,
                    hash_key_range: (range.starting_hash_key, range.ending_hash_key),
                },
                Floor::Origin,
                ReaderState::Reconnecting,
            );
        }
        self.hub.set_started();
        Ok(())
    }

    /// Hands a response to the hub, learning the shards again when it names a new one.
    async fn apply(&mut self, response: SubscribeResponse) -> Result<(), Status> {
        let hub = self.hub.clone();
        match response.event {
            Some(Response::Records(batch)) => {
                if !hub.view().has_shard(&batch.shard_id) {
                    self.describe().await?;
                    hub.set_state(&batch.shard_id, ReaderState::Reading);
                }
                let records = batch.records.into_iter().filter_map(convert).collect();
                hub.append(&batch.shard_id, records, 0);
            }
            Some(Response::Heartbeat(heartbeat)) => {
                for lag in heartbeat.shards {
                    hub.set_millis_behind(&lag.shard_id, lag.millis_behind_latest);
                }
            }
            Some(Response::ShardEvent(event)) => {
                if event.kind == v1::ShardEventKind::Ended as i32 {
                    hub.finish_shard(&event.shard_id, event.child_shard_ids);
                } else {
                    self.describe().await?;
                    hub.set_state(&event.shard_id, ReaderState::Reading);
                }
            }
            Some(Response::Gap(gap)) => {
                warn!(
                    stream = self.stream,
                    missed = gap.shards.iter().map(|s| s.records_missed).sum::<u64>(),
                    "the upstream relay reported a gap"
                );
            }
            None => {}
        }
        Ok(())
    }
}

/// Sets every open shard's reader state.
fn mark(hub: &StreamHub, state: ReaderState) {
    let open: Vec<String> = hub
        .view()
        .shards()
        .filter(|shard| !shard.finished())
        .map(|shard| shard.id().to_owned())
        .collect();
    for id in open {
        hub.set_state(&id, state);
    }
}

/// An upstream record as the hub holds it; `None` for a sequence number that does not
/// parse (the upstream relay never sends one).
fn convert(record: v1::Record) -> Option<RelayRecord> {
    let arrival = record
        .approximate_arrival_timestamp
        .and_then(|at| SystemTime::try_from(at).ok())
        .unwrap_or_else(SystemTime::now);
    Some(RelayRecord {
        sequence: record.sequence_number.parse().ok()?,
        partition_key: record.partition_key,
        data: record.data,
        sub_sequence: record.sub_sequence_number,
        arrival,
        explicit_hash_key: (!record.explicit_hash_key.is_empty())
            .then_some(record.explicit_hash_key),
    })
}
