//! Shared test scaffolding: a real emulator, a real relay, real gRPC clients, and waits on
//! conditions with deadlines.

#![allow(dead_code)]

pub mod proxy;

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use aws_sdk_kinesis::{primitives::Blob, types::PutRecordsRequestEntry};
use kinesis_emulator::{Emulator, EmulatorBuilder};
use kinesis_relay::{
    RelayConfig, RunningRelay,
    catchup::CatchUpSettings,
    embedded::client_for,
    hub::RingLimits,
    ingest::{IngestSettings, InitialPosition},
    service::{ServeSettings, TransportSettings},
};
use kinesis_relay_api::v1::{
    self, SubscribeRequest, SubscribeResponse, relay_client::RelayClient, subscribe_response::Event,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Streaming, transport::Channel};

/// Upper bound for any wait in a test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// An emulator with short EFO durations, so lifecycles run in seconds.
pub fn fast_emulator() -> EmulatorBuilder {
    Emulator::builder()
        .consumer_activation_delay(Duration::from_millis(100))
        .idle_event_interval(Duration::from_millis(500))
        .takeover_window(Duration::from_secs(1))
        .push_delay(Duration::ZERO)
}

/// Relay settings tuned to the fast emulator.
pub fn fast_config(streams: &[&str]) -> RelayConfig {
    RelayConfig {
        streams: streams.iter().map(|s| s.to_string()).collect(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ingest: IngestSettings {
            consumer_name: "relay-test".into(),
            initial_position: InitialPosition::TrimHorizon,
            checkpoint_interval: Duration::from_millis(200),
            watchdog: Duration::from_secs(3),
            list_shards_interval: Duration::from_secs(1),
            consumer_deadline: Duration::from_secs(20),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
            takeover_wait: Duration::from_millis(1100),
            min_subscribe_interval: Duration::from_millis(100),
            ..IngestSettings::default()
        },
        rings: RingLimits::default(),
        catch_up: CatchUpSettings {
            idle_poll: Duration::from_millis(200),
            idle_grace: Duration::from_secs(1),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
            ..CatchUpSettings::default()
        },
        serve: ServeSettings {
            heartbeat_interval: Duration::from_millis(500),
            ..ServeSettings::default()
        },
        transport: TransportSettings::default(),
        security: Default::default(),
        admin: Default::default(),
    }
}

/// Starts a relay on `emulator`.
pub async fn start_relay(emulator: &Emulator, config: RelayConfig) -> RunningRelay {
    kinesis_relay::start(config, client_for(&emulator.endpoint_url()))
        .await
        .expect("relay starts")
}

/// An emulator holding `stream` (one shard) and a relay on it with `config`, reading
/// every shard.
pub async fn relay_on_one_shard(stream: &str, config: RelayConfig) -> (Emulator, RunningRelay) {
    let emulator = fast_emulator().stream(stream, 1).start().await.unwrap();
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    (emulator, relay)
}

/// A gRPC client of the relay.
pub async fn connect(addr: SocketAddr) -> RelayClient<Channel> {
    RelayClient::connect(format!("http://{addr}"))
        .await
        .expect("relay accepts connections")
}

/// Waits until `check` holds, polling, or panics after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every shard of every stream of the relay has a live subscription.
pub async fn wait_active(relay: &RunningRelay) {
    for hub in &relay.hubs {
        eventually("the relay to read every shard", || async {
            let state = hub.read();
            state.status() == v1::StreamStatus::Active
                && state.shards.values().all(|slot| {
                    slot.finished() || slot.state == kinesis_relay::hub::ReaderState::Reading
                })
        })
        .await;
    }
}

/// Writes records (key, data) with PutRecords and returns their sequence numbers.
pub async fn put(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> Vec<String> {
    let mut sequences = Vec::new();
    for chunk in records.chunks(500) {
        let entries = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        let output = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(output.failed_record_count(), Some(0), "no record may fail");
        sequences.extend(
            output
                .records()
                .iter()
                .map(|r| r.sequence_number().unwrap_or_default().to_owned()),
        );
    }
    sequences
}

/// `n` records `prefix-i` with keys spread over `keys` partition keys.
pub fn numbered(prefix: &str, n: usize, keys: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{}", i % keys),
                format!("{prefix}-{i}").into_bytes(),
            )
        })
        .collect()
}

/// A received record with its shard.
#[derive(Debug, Clone)]
pub struct Received {
    pub shard_id: String,
    pub record: v1::Record,
}

/// What a subscription delivered until it held `n` records (or the deadline).
#[derive(Debug, Default)]
pub struct Delivery {
    pub records: Vec<Received>,
    pub events: Vec<Event>,
    pub last_cursor: String,
}

/// Reads `stream` until `n` records arrived.
pub async fn receive(stream: &mut Streaming<SubscribeResponse>, n: usize) -> Delivery {
    let mut delivery = Delivery::default();
    let start = Instant::now();
    while delivery.records.len() < n {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let message = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} records", delivery.records.len()))
            .expect("stream stays healthy")
            .expect("stream stays open");
        delivery.last_cursor = message.cursor.clone();
        match message.event {
            Some(Event::Records(batch)) => {
                for record in batch.records {
                    delivery.records.push(Received {
                        shard_id: batch.shard_id.clone(),
                        record,
                    });
                }
            }
            Some(event) => delivery.events.push(event),
            None => {}
        }
    }
    delivery
}

/// Opens a subscription.
pub async fn subscribe(
    client: &mut RelayClient<Channel>,
    request: SubscribeRequest,
) -> Streaming<SubscribeResponse> {
    client
        .subscribe(request)
        .await
        .expect("Subscribe accepted")
        .into_inner()
}

/// Asserts per-shard sequence order and no duplicates, and returns the data strings.
pub fn check_order(records: &[Received]) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let mut last: HashMap<&str, (kinesis_relay_api::sequence::SequenceNumber, Option<u64>)> =
        HashMap::new();
    let mut seen = HashSet::new();
    for received in records {
        let sequence = received.record.sequence_number.parse().unwrap();
        let key = (sequence, received.record.sub_sequence_number);
        if let Some(previous) = last.get(received.shard_id.as_str()) {
            assert!(
                key > *previous,
                "out of order in {}: {key:?} after {previous:?}",
                received.shard_id
            );
        }
        assert!(
            seen.insert((received.shard_id.clone(), key.clone())),
            "duplicate record {key:?}"
        );
        last.insert(&received.shard_id, key);
    }
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.data).into_owned())
        .collect()
}

/// Whether a test that needs an external tool must fail (in CI) or may skip (locally)
/// when the tool is missing.
pub fn require_tool(name: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is required in CI (.ci/run installs it)");
    }
    eprintln!("skipping: {name} is not installed (.ci/run installs it)");
    false
}

/// `GET path` over HTTP/1.1; the status code and the whole response.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// The value of the first sample of metric `name` whose line contains `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line.contains(labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Waits until the relay's rings hold `records` records of its first stream.
pub async fn wait_held(relay: &RunningRelay, records: usize) {
    eventually("the relay to hold the records", || async {
        relay.hubs[0]
            .read()
            .shards
            .values()
            .map(|s| s.ring.len())
            .sum::<usize>()
            >= records
    })
    .await;
}
