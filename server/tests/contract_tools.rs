//! The contract from outside Rust: grpcurl through server reflection (v1alpha, as grpcurl
//! 1.8 speaks it) and a Python client generated from `proto/` by grpcio-tools, including
//! cursors that resume past the relay's ring and `trim_horizon` (catch-up from Kinesis).

mod common;

use std::{process::Stdio, sync::atomic::Ordering, time::Duration};

use common::*;
use kinesis_relay::{hub::RingLimits, ingest::InitialPosition};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

async fn grpcurl(args: &[&str]) -> (bool, String) {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn grpcurl_available() -> bool {
    Command::new("grpcurl")
        .arg("-version")
        .output()
        .await
        .is_ok()
}

#[tokio::test]
async fn grpcurl_lists_describes_checks_health_and_subscribes() {
    if !require_tool("grpcurl", grpcurl_available().await) {
        return;
    }
    let emulator = fast_emulator()
        .stream("grpcurl-stream", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["grpcurl-stream"])).await;
    wait_active(&relay).await;
    let addr = relay.local_addr.to_string();

    let (ok, listed) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{listed}");
    assert!(listed.contains("kinesis_relay.v1.Relay"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    let (ok, described) =
        grpcurl(&["-plaintext", &addr, "describe", "kinesis_relay.v1.Relay"]).await;
    assert!(ok, "{described}");
    assert!(described.contains("rpc Subscribe"), "{described}");
    assert!(
        described.contains("stream .kinesis_relay.v1.SubscribeResponse"),
        "{described}"
    );
    // Comments of the proto travel through reflection.
    assert!(described.contains("Every"), "{described}");

    let (ok, message) =
        grpcurl(&["-plaintext", &addr, "describe", "kinesis_relay.v1.Record"]).await;
    assert!(ok && message.contains("sequence_number"), "{message}");

    // Health turns SERVING once every stream has a live subscription.
    eventually("grpcurl to report the relay SERVING", || {
        let addr = addr.clone();
        async move {
            let (ok, health) = grpcurl(&[
                "-plaintext",
                "-d",
                r#"{"service":"kinesis_relay.v1.Relay"}"#,
                &addr,
                "grpc.health.v1.Health/Check",
            ])
            .await;
            ok && health.contains("\"SERVING\"")
        }
    })
    .await;

    let (ok, streams) = grpcurl(&["-plaintext", &addr, "kinesis_relay.v1.Relay/ListStreams"]).await;
    assert!(ok && streams.contains("grpcurl-stream"), "{streams}");

    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, "grpcurl-stream", &numbered("via-grpcurl", 3, 3)).await;
    let mut child = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-max-time",
            "30",
            "-d",
            r#"{"stream":"grpcurl-stream","earliest":{}}"#,
            &addr,
            "kinesis_relay.v1.Relay/Subscribe",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let wanted: Vec<String> = (0..3)
        .map(|i| base64_of(format!("via-grpcurl-{i}").as_bytes()))
        .collect();
    tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            for data in &wanted {
                if line.contains(data.as_str()) && !seen.contains(data) {
                    seen.push(data.clone());
                }
            }
            if seen.len() == wanted.len() {
                break;
            }
        }
    })
    .await
    .expect("grpcurl prints the records");
    assert_eq!(seen.len(), 3);
    child.kill().await.ok();
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn python_client_generated_from_the_proto_subscribes() {
    let Some(generated) = python_client("subscribes").await else {
        return;
    };
    let emulator = fast_emulator()
        .stream("python-stream", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["python-stream"])).await;
    wait_active(&relay).await;
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, "python-stream", &numbered("from-python", 5, 5)).await;

    // Once plain, once with every request compressed with gzip.
    for compression in ["none", "gzip"] {
        let mut python = Command::new("python3");
        python
            .arg(repo_root().join("server/tests/python/relay_client.py"))
            .arg(&generated)
            .arg(relay.local_addr.to_string())
            .arg("python-stream")
            .arg("5")
            .arg(compression);
        let stdout = run_client(python, &format!("python client ({compression})")).await;
        assert!(
            stdout.contains(r#""streams": ["python-stream"]"#),
            "{stdout}"
        );
        assert!(stdout.contains(r#""shards": 2"#), "{stdout}");
        expect_records(&stdout, "from-python", 5);
    }
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&generated);
}

#[tokio::test]
async fn node_grpc_js_client_with_gzip_requests_subscribes() {
    let has_tools = node_grpc_js_available().await;
    if !require_tool("node with @grpc/grpc-js (scripts/peers.sh)", has_tools) {
        return;
    }
    let emulator = fast_emulator()
        .stream("node-stream", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["node-stream"])).await;
    wait_active(&relay).await;
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, "node-stream", &numbered("from-node", 5, 5)).await;

    let mut node = Command::new("node");
    node.arg(repo_root().join("server/tests/node/relay_client.js"))
        .arg(repo_root().join("proto"))
        .arg(relay.local_addr.to_string())
        .arg("node-stream")
        .arg("5")
        .env("NODE_PATH", repo_root().join(".peers/node_modules"));
    let stdout = run_client(node, "node client").await;
    assert!(
        stdout.contains(r#"{"streams":["node-stream"]}"#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"{"shards":2}"#), "{stdout}");
    expect_records(&stdout, "from-node", 5);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// Records written before the subscriber stops; it reads about half of them.
const FIRST: usize = 40;
/// Records written while it is away: far more than the small ring holds.
const SECOND: usize = 1500;

/// An emulator holding `stream` (one shard, no write limits: the tests write bursts), a
/// relay on it whose ring holds [`FIRST`] records but not [`SECOND`], and [`FIRST`] records
/// written and held.
async fn relay_with_small_ring(
    stream: &str,
) -> (
    kinesis_emulator::Emulator,
    kinesis_relay::RunningRelay,
    aws_sdk_kinesis::Client,
) {
    let emulator = fast_emulator()
        .limits(false)
        .stream(stream, 1)
        .start()
        .await
        .unwrap();
    let mut config = fast_config(&[stream]);
    // About 140 records of this test (an entry costs some 450 bytes).
    config.rings = RingLimits {
        max_bytes: 64 << 10,
        max_age: Duration::from_secs(600),
    };
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, stream, &numbered("first", FIRST, 4)).await;
    eventually("the ring to hold the first write", || async {
        relay.hubs[0]
            .view()
            .shards()
            .all(|shard| shard.oldest_index() == 0 && shard.records_held() == FIRST)
    })
    .await;
    (emulator, relay, kinesis)
}

/// Writes [`SECOND`] records and waits until the ring holds none of the first ones: a
/// cursor among those is served from Kinesis or not at all.
async fn overrun(relay: &kinesis_relay::RunningRelay, kinesis: &aws_sdk_kinesis::Client) {
    let stream = relay.hubs[0].name().to_owned();
    put(kinesis, &stream, &numbered("second", SECOND, 4)).await;
    eventually(
        "the ring to drop every record of the first write",
        || async {
            relay.hubs[0]
                .view()
                .shards()
                .all(|shard| shard.oldest_index() > FIRST as u64)
        },
    )
    .await;
}

/// The data of every record written by [`relay_with_small_ring`] and [`overrun`], in order.
fn all_written() -> Vec<String> {
    numbered("first", FIRST, 4)
        .into_iter()
        .chain(numbered("second", SECOND, 4))
        .map(|(_, data)| String::from_utf8(data).unwrap())
        .collect()
}

/// Asserts that the records of the first run and of the resumed one are every record
/// written, each once, in order.
fn assert_exactly_once(before: &[String], after: &[String]) {
    assert!(
        before.len() >= FIRST / 2 && before.len() < FIRST,
        "the first run read about half: {before:?}"
    );
    let got: Vec<&String> = before.iter().chain(after).collect();
    let want = all_written();
    if got.len() != want.len() || got.iter().zip(&want).any(|(got, want)| *got != want) {
        let at = got
            .iter()
            .zip(&want)
            .take_while(|(got, want)| *got == want)
            .count();
        panic!(
            "{} records instead of {}, first difference at {at}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

#[tokio::test]
async fn python_client_resumes_past_the_ring_exactly_once() {
    let Some(generated) = python_client("resumes").await else {
        return;
    };
    let (emulator, relay, kinesis) = relay_with_small_ring("python-resume").await;
    let resume_client = |count: usize, from: &str| {
        let mut python = Command::new("python3");
        python
            .arg(repo_root().join("server/tests/python/resume_client.py"))
            .arg(&generated)
            .arg(relay.local_addr.to_string())
            .arg("python-resume")
            .arg(count.to_string())
            .arg(from);
        python
    };
    let (before, cursor) = python_records(
        &run_client(
            resume_client(FIRST / 2, "earliest"),
            "python client (first half)",
        )
        .await,
    );
    overrun(&relay, &kinesis).await;
    let rest = FIRST + SECOND - before.len();
    let (after, _) = python_records(
        &run_client(
            resume_client(rest, &format!("cursor:{cursor}")),
            "python client (resumed)",
        )
        .await,
    );
    assert_exactly_once(&before, &after);
    assert!(relay.catch_ups[0].counters.calls.load(Ordering::Relaxed) >= 1);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&generated);
}

/// The records' data and the last cursor that `resume_client.py` printed.
fn python_records(stdout: &str) -> (Vec<String>, String) {
    let mut data = Vec::new();
    let mut cursor = String::new();
    for line in stdout.lines() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}"));
        if let Some(text) = value["data"].as_str() {
            data.push(text.to_owned());
        }
        if let Some(last) = value["cursor"].as_str() {
            cursor = last.to_owned();
        }
    }
    assert!(!cursor.is_empty(), "no cursor printed: {stdout}");
    (data, cursor)
}

#[tokio::test]
async fn grpcurl_resumes_past_the_ring_exactly_once() {
    if !require_tool("grpcurl", grpcurl_available().await) {
        return;
    }
    let (emulator, relay, kinesis) = relay_with_small_ring("grpcurl-resume").await;
    let addr = relay.local_addr.to_string();
    let mut first = GrpcurlSubscription::start(
        &addr,
        &json!({"stream": "grpcurl-resume", "earliest": {}, "max_records_per_batch": 10}),
    );
    let (before, cursor) = first.read(FIRST / 2, false).await;
    first.stop().await;
    overrun(&relay, &kinesis).await;
    let mut resumed = GrpcurlSubscription::start(
        &addr,
        &json!({"stream": "grpcurl-resume", "after_cursor": cursor}),
    );
    let (after, _) = resumed.read(FIRST + SECOND - before.len(), true).await;
    resumed.stop().await;
    assert_exactly_once(&before, &after);
    assert!(relay.catch_ups[0].counters.calls.load(Ordering::Relaxed) >= 1);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn grpcurl_subscribes_from_trim_horizon_and_sees_the_retention() {
    if !require_tool("grpcurl", grpcurl_available().await) {
        return;
    }
    let emulator = fast_emulator()
        .stream("grpcurl-horizon", 1)
        .start()
        .await
        .unwrap();
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    let history = numbered("history", 50, 4);
    put(&kinesis, "grpcurl-horizon", &history).await;
    // A relay that starts at LATEST holds none of the history: only Kinesis has it.
    let mut config = fast_config(&["grpcurl-horizon"]);
    config.ingest.initial_position = InitialPosition::Latest;
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let addr = relay.local_addr.to_string();

    let (ok, described) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"stream":"grpcurl-horizon"}"#,
        &addr,
        "kinesis_relay.v1.Relay/DescribeStream",
    ])
    .await;
    assert!(ok, "{described}");
    let described: Value = serde_json::from_str(&described).expect("one JSON response");
    assert_eq!(described["upstreamRetentionHours"], 24, "{described}");
    assert!(
        described["upstreamOldestTimestamp"].is_string(),
        "{described}"
    );

    let mut horizon = GrpcurlSubscription::start(
        &addr,
        &json!({"stream": "grpcurl-horizon", "trim_horizon": {}}),
    );
    let (old, _) = horizon.read(history.len(), false).await;
    // Live records follow the ones read from Kinesis.
    let live = numbered("live", 5, 2);
    put(&kinesis, "grpcurl-horizon", &live).await;
    let (new, _) = horizon.read(live.len(), true).await;
    horizon.stop().await;
    let want: Vec<String> = history
        .iter()
        .chain(&live)
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect();
    assert_eq!([old, new].concat(), want, "every record once, in order");
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// A running `grpcurl ... Relay/Subscribe`, whose responses are parsed as it prints them.
struct GrpcurlSubscription {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl GrpcurlSubscription {
    fn start(addr: &str, request: &Value) -> Self {
        let mut child = Command::new("grpcurl")
            .args(["-plaintext", "-max-time", "60", "-d"])
            .arg(request.to_string())
            .args([addr, "kinesis_relay.v1.Relay/Subscribe"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("grpcurl runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The next response: grpcurl prints each as an indented JSON object whose last line
    /// is a lone `}`.
    async fn next(&mut self) -> Value {
        let mut text = String::new();
        loop {
            let line = tokio::time::timeout(DEADLINE, self.lines.next_line())
                .await
                .expect("grpcurl prints a response in time")
                .unwrap()
                .unwrap_or_else(|| panic!("grpcurl ended (see its stderr) after: {text}"));
            text.push_str(&line);
            text.push('\n');
            if line == "}" {
                return serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text}"));
            }
        }
    }

    /// Reads responses until at least `count` records arrived and, with
    /// `until_heartbeat`, on to the next heartbeat (a record sent twice would come before
    /// it); the records' data and the cursor of the last response.
    async fn read(&mut self, count: usize, until_heartbeat: bool) -> (Vec<String>, String) {
        use base64::Engine;
        let mut data = Vec::new();
        loop {
            let response = self.next().await;
            let done = if let Some(records) = response["records"]["records"].as_array() {
                for record in records {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(record["data"].as_str().unwrap_or_default())
                        .unwrap();
                    data.push(String::from_utf8(bytes).unwrap());
                }
                data.len() >= count && !until_heartbeat
            } else {
                response.get("heartbeat").is_some() && data.len() >= count
            };
            if done {
                let cursor = response["cursor"].as_str().unwrap_or_default().to_owned();
                return (data, cursor);
            }
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.ok();
    }
}

/// Asserts that `stdout` holds the records `prefix-0` to `prefix-{count - 1}`.
fn expect_records(stdout: &str, prefix: &str, count: usize) {
    for i in 0..count {
        assert!(stdout.contains(&format!("{prefix}-{i}")), "{stdout}");
    }
}
