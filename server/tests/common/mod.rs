//! Scaffolding of the relay's tests: the shared pieces from `kinesis-relay-test-support`
//! (emulator, relay, waits, proxy), and what only these tests use: gRPC subscriptions read
//! and checked, HTTP requests, metric samples.

// Each test binary uses part of this module, and of what it re-exports.
#![allow(dead_code, unused_imports)]

use std::{net::SocketAddr, path::PathBuf, time::Instant};

use kinesis_emulator::Emulator;
use kinesis_relay::{RelayConfig, RunningRelay};
use kinesis_relay_api::v1::{
    self, SubscribeRequest, SubscribeResponse, relay_client::RelayClient, subscribe_response::Event,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Streaming, transport::Channel};

pub use kinesis_relay_test_support::{
    DEADLINE, Proxy, create_stream, eventually, fast_config, fast_emulator, held, numbered,
    peer_url, put, require_tool, start_relay, unique_name, wait_active, wait_held,
};

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

/// The repository's root (the server crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether node and the `@grpc/grpc-js` peers (installed by scripts/peers.sh) are here.
pub async fn node_grpc_js_available() -> bool {
    let modules = repo_root().join(".peers/node_modules");
    modules.join("@grpc/grpc-js").is_dir()
        && modules.join("@grpc/proto-loader").is_dir()
        && tokio::process::Command::new("node")
            .arg("--version")
            .output()
            .await
            .is_ok_and(|out| out.status.success())
}

/// The relay's `/metrics`, asked over HTTP/1.0 so that the body is not chunked (a chunk
/// boundary could split a sample's line).
pub async fn metrics_page(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut page))
        .await
        .expect("the metrics arrive")
        .unwrap();
    page
}

/// Generates the Python client from `proto/` with grpcio-tools, into a directory of its own
/// per test (`name`); `None` when the tools are missing and the test may skip.
pub async fn python_client(name: &str) -> Option<PathBuf> {
    let has_tools = tokio::process::Command::new("python3")
        .args(["-c", "import grpc_tools, grpc"])
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !require_tool("python3 with grpcio-tools", has_tools) {
        return None;
    }
    let generated =
        std::env::temp_dir().join(format!("relay-python-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&generated).unwrap();
    let status = tokio::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo_root().join("proto"))
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .arg("kinesis_relay/v1/relay.proto")
        .status()
        .await
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc generates the client");
    Some(generated)
}

/// Reads an HTTP/1.x response head from `reader` (within the deadline): the status code
/// and the headers, names and values trimmed; the body is left in `reader`.
pub async fn read_http_head<R>(reader: &mut R) -> (u16, Vec<(String, String)>)
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let lines = tokio::time::timeout(DEADLINE, async {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break lines;
            }
            lines.push(line);
        }
    })
    .await
    .expect("the relay answers");
    let status = lines[0].split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines[1..]
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// Runs a client program of another language to its end (within the deadline, plus its
/// start-up); its standard output. Fails the test when the program fails.
pub async fn run_client(mut command: tokio::process::Command, what: &str) -> String {
    let timeout = DEADLINE + std::time::Duration::from_secs(10);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} finishes"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
