//! Ingest from another relay instead of Kinesis (`--upstream-relay URL`), so relays form a
//! tree: the first tier holds the EFO consumers (Kinesis allows 20 per stream), the next
//! tiers fan out further.
//!
//! The upstream's records keep their Kinesis sequence and sub-sequence numbers, so this
//! relay's hub holds the same positions and a cursor from either relay resumes on the other.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use kinesis_relay_api::resume::cursor_of;
use kinesis_relay_api::v1::{
    self, relay_client::RelayClient, subscribe_request::StartingPosition, subscribe_response::Event,
};
use tokio::sync::watch;
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};
use tracing::{info, warn};

use super::{IngestSettings, InitialPosition};
use crate::hub::{
    ConsumerInfo, ReaderState, ShardMeta, StreamHub, entry::RelayRecord, ring::Floor,
};
use kinesis_relay_api::backoff::Backoff;

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
    pub fn channel(&self) -> anyhow::Result<Channel> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .with_context(|| format!("--upstream-relay {:?} is not a URL", self.url))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20));
        if self.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls)?;
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
pub async fn list_streams(upstream: &UpstreamRelay) -> anyhow::Result<Vec<String>> {
    let mut client = RelayClient::new(upstream.channel()?);
    let listed = client
        .list_streams(upstream.request(v1::ListStreamsRequest {}))
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "listing the streams of {}: {}",
                upstream.url,
                status.message()
            )
        })?;
    Ok(listed
        .into_inner()
        .streams
        .into_iter()
        .map(|s| s.name)
        .collect())
}

/// Reads `stream` from the upstream relay into `hub` until shutdown.
pub async fn run_stream(
    upstream: UpstreamRelay,
    stream: String,
    hub: Arc<StreamHub>,
    settings: Arc<IngestSettings>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut client = RelayClient::new(upstream.channel()?);
    let cursor_file = settings
        .state_dir
        .as_ref()
        .map(|dir| dir.join(format!("{stream}.upstream-cursor")));
    let mut cursor: Option<String> = cursor_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let mut backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
    let mut saved = cursor.clone();
    let mut last_save = tokio::time::Instant::now();
    loop {
        let result = tokio::select! {
            result = follow(&upstream, &mut client, &stream, &hub, &settings, &mut cursor, &mut backoff, |cursor| {
                // Persist the cursor at a bounded interval so a restart resumes near it.
                if last_save.elapsed() >= settings.checkpoint_interval && saved.as_deref() != Some(cursor) {
                    save(cursor_file.as_ref(), cursor);
                    saved = Some(cursor.to_owned());
                    last_save = tokio::time::Instant::now();
                }
            }) => result,
            _ = crate::stopped(&mut shutdown) => break,
        };
        mark(&hub, ReaderState::Reconnecting);
        let delay = backoff.next_delay();
        match result {
            Err(status) if status.code() == Code::OutOfRange => {
                warn!(stream, upstream = %upstream.url, cause = status.message(), "our position is older than what the upstream holds; continuing from its oldest record (records in between are lost)");
                cursor = None;
            }
            Err(status) => {
                if let Some(resume) = cursor_of(&status) {
                    cursor = Some(resume);
                }
                warn!(stream, upstream = %upstream.url, code = ?status.code(), cause = status.message(), ?delay, "upstream subscription ended, reconnecting");
            }
            Ok(()) => {
                warn!(stream, upstream = %upstream.url, ?delay, "upstream stream ended, reconnecting")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::stopped(&mut shutdown) => break,
        }
    }
    if let Some(cursor) = &cursor {
        save(cursor_file.as_ref(), cursor);
    }
    hub.set_stopped();
    info!(stream, "upstream ingest stopped");
    Ok(())
}

fn save(path: Option<&PathBuf>, cursor: &str) {
    let Some(path) = path else { return };
    if let Err(err) = kinesis_relay_api::atomic_file::write_atomically(path, cursor.as_bytes()) {
        warn!(path = %path.display(), cause = %err, "writing the upstream cursor failed");
    }
}

fn mark(hub: &StreamHub, state: ReaderState) {
    let open: Vec<String> = hub
        .read()
        .shards
        .iter()
        .filter(|(_, slot)| !slot.finished())
        .map(|(id, _)| id.clone())
        .collect();
    for id in open {
        hub.set_state(&id, state);
    }
}

/// Learns the upstream's shards into the hub.
async fn describe(
    upstream: &UpstreamRelay,
    client: &mut RelayClient<Channel>,
    stream: &str,
    hub: &StreamHub,
) -> Result<(), Status> {
    let described = client
        .describe_stream(upstream.request(v1::DescribeStreamRequest {
            stream: stream.to_owned(),
        }))
        .await?
        .into_inner();
    hub.set_consumer(ConsumerInfo {
        name: format!("upstream relay {}", upstream.url),
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
        hub.add_shard(
            ShardMeta {
                shard_id: shard.shard_id.clone(),
                parents,
                hash_key_range: (range.starting_hash_key, range.ending_hash_key),
            },
            Floor::Origin,
            ReaderState::Reconnecting,
        );
    }
    hub.set_started();
    Ok(())
}

/// One upstream subscription, followed until it ends.
#[allow(clippy::too_many_arguments)]
async fn follow(
    upstream: &UpstreamRelay,
    client: &mut RelayClient<Channel>,
    stream: &str,
    hub: &StreamHub,
    settings: &IngestSettings,
    cursor: &mut Option<String>,
    backoff: &mut Backoff,
    mut on_cursor: impl FnMut(&str),
) -> Result<(), Status> {
    describe(upstream, client, stream, hub).await?;
    let starting_position = match (cursor.clone(), &settings.initial_position) {
        (Some(cursor), _) => StartingPosition::AfterCursor(cursor),
        (None, InitialPosition::Latest) => StartingPosition::Latest(v1::Latest {}),
        // The oldest record Kinesis holds: the upstream relay reads it from Kinesis when
        // its ring no longer holds it.
        (None, InitialPosition::TrimHorizon) => StartingPosition::TrimHorizon(v1::TrimHorizon {}),
        (None, InitialPosition::AtTimestamp(at)) => {
            StartingPosition::AtTimestamp(crate::subscription::timestamp(*at))
        }
    };
    let mut responses = client
        .subscribe(upstream.request(v1::SubscribeRequest {
            stream: stream.to_owned(),
            starting_position: Some(starting_position),
            ..Default::default()
        }))
        .await?
        .into_inner();
    mark(hub, ReaderState::Reading);
    info!(stream, upstream = %upstream.url, "subscribed to the upstream relay");
    loop {
        let message = tokio::time::timeout(settings.watchdog, responses.message())
            .await
            .map_err(|_| {
                Status::unavailable(
                    "the upstream relay sent nothing for longer than the watchdog timeout",
                )
            })??;
        let Some(message) = message else {
            return Ok(());
        };
        backoff.reset();
        match message.event {
            Some(Event::Records(batch)) => {
                if !hub.read().shards.contains_key(&batch.shard_id) {
                    describe(upstream, client, stream, hub).await?;
                    hub.set_state(&batch.shard_id, ReaderState::Reading);
                }
                let records = batch.records.into_iter().filter_map(convert).collect();
                hub.append(&batch.shard_id, records, 0);
            }
            Some(Event::Heartbeat(heartbeat)) => {
                for lag in heartbeat.shards {
                    hub.set_millis_behind(&lag.shard_id, lag.millis_behind_latest);
                }
            }
            Some(Event::ShardEvent(event)) => {
                if event.kind == v1::ShardEventKind::Ended as i32 {
                    hub.finish_shard(&event.shard_id, event.child_shard_ids);
                } else {
                    describe(upstream, client, stream, hub).await?;
                    hub.set_state(&event.shard_id, ReaderState::Reading);
                }
            }
            Some(Event::Gap(gap)) => {
                warn!(
                    stream,
                    missed = gap.shards.iter().map(|s| s.records_missed).sum::<u64>(),
                    "the upstream relay reported a gap"
                );
            }
            None => {}
        }
        *cursor = Some(message.cursor);
        if let Some(cursor) = cursor.as_deref() {
            on_cursor(cursor);
        }
    }
}

fn convert(record: v1::Record) -> Option<RelayRecord> {
    let arrival = record
        .approximate_arrival_timestamp
        .and_then(|ts| {
            UNIX_EPOCH.checked_add(Duration::new(
                u64::try_from(ts.seconds).ok()?,
                u32::try_from(ts.nanos).ok()?,
            ))
        })
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
