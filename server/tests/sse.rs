//! The HTTP endpoints (`/v1/streams...`) as `curl`, scripts and browsers use them: JSON,
//! and Server-Sent Events read over real sockets from a relay on the emulator, with records
//! written by the AWS SDK.

mod common;

use std::{collections::BTreeSet, net::SocketAddr, process::Stdio, time::Instant};

use base64::{Engine, engine::general_purpose::STANDARD};
use common::*;
use kinesis_relay::{
    RelayConfig, SecuritySettings, embedded::client_for, security::limits::SubscriberLimits,
};
use kinesis_relay_api::{cursor::Cursor, sequence::SequenceNumber};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

/// Where the events of a response come from: a chunked HTTP/1.1 body, or bytes as they
/// are (curl's output).
enum Source {
    Chunked(BufReader<TcpStream>),
    Plain(Box<dyn AsyncRead + Unpin + Send>),
}

/// One SSE block: a named or unnamed event, or only comments (a heartbeat).
#[derive(Debug, Default, Clone)]
struct Block {
    name: Option<String>,
    id: Option<String>,
    data: Option<String>,
    comments: Vec<String>,
}

impl Block {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("an event with data")).unwrap()
    }
}

/// Reads SSE blocks, each read bounded by [`DEADLINE`].
struct Events {
    source: Source,
    pending: Vec<u8>,
    ended: bool,
}

impl Events {
    /// More body bytes; `None` at the end of the body.
    async fn more(&mut self) -> Option<Vec<u8>> {
        let read = async {
            match &mut self.source {
                Source::Plain(reader) => {
                    let mut buf = vec![0; 16 << 10];
                    let n = reader.read(&mut buf).await.ok()?;
                    (n > 0).then(|| buf[..n].to_vec())
                }
                Source::Chunked(reader) => {
                    let mut line = String::new();
                    reader.read_line(&mut line).await.ok()?;
                    let size = line.trim().split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(size, 16).ok()?;
                    if size == 0 {
                        return None;
                    }
                    let mut chunk = vec![0; size + 2];
                    reader.read_exact(&mut chunk).await.ok()?;
                    assert!(chunk.ends_with(b"\r\n"), "a chunk ends with CRLF");
                    chunk.truncate(size);
                    Some(chunk)
                }
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("the event stream stalled")
    }

    /// The next block, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Block> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.pending.drain(..end + 2).collect()).unwrap();
                let mut block = Block::default();
                for line in text.lines().filter(|line| !line.is_empty()) {
                    if let Some(comment) = line.strip_prefix(':') {
                        block.comments.push(comment.trim().to_owned());
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        block.name = Some(name.to_owned());
                    } else if let Some(id) = line.strip_prefix("id: ") {
                        block.id = Some(id.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        assert!(block.data.is_none(), "one data line per event: {text}");
                        block.data = Some(data.to_owned());
                    } else {
                        panic!("not an SSE line: {line:?}");
                    }
                }
                return Some(block);
            }
            if self.ended {
                assert!(self.pending.is_empty(), "the stream ends between events");
                return None;
            }
            match self.more().await {
                Some(bytes) => self.pending.extend(bytes),
                None => self.ended = true,
            }
        }
    }

    /// The next `n` record events (unnamed), skipping heartbeats; panics on any other event,
    /// or when they take longer than [`DEADLINE`] (heartbeats keep the stream busy).
    async fn records(&mut self, n: usize) -> Vec<Block> {
        let started = Instant::now();
        let mut records = Vec::new();
        while records.len() < n {
            assert!(
                started.elapsed() < DEADLINE,
                "timed out with {} of {n} records",
                records.len()
            );
            let block = self.next().await.expect("the stream stays open");
            match (&block.name, &block.data) {
                (None, Some(_)) => records.push(block),
                (None, None) => assert!(
                    block.comments.iter().all(|c| c.starts_with("heartbeat {")),
                    "{block:?}"
                ),
                _ => panic!("unexpected event {block:?}"),
            }
        }
        records
    }
}

/// A response read from a raw socket: status, headers, and the body as events or text.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    events: Events,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body as JSON.
    async fn json(mut self) -> Value {
        let mut body = std::mem::take(&mut self.events.pending);
        while let Some(bytes) = self.events.more().await {
            body.extend(bytes);
        }
        serde_json::from_slice(&body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(&body)))
    }

    /// Asserts an error answer: its HTTP code and the gRPC code's name in the JSON body;
    /// returns the message.
    async fn error(self, http: u16, code: &str) -> String {
        assert_eq!(self.status, http, "{:?}", self.headers);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "an error body is JSON"
        );
        let body = self.json().await;
        assert_eq!(body["code"], code, "{body}");
        let message = body["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// `GET path` over HTTP/1.1 on a real socket, with `headers`.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    get_with(addr, "GET", path, headers).await
}

async fn get_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: relay\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_http_head(&mut reader).await;
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let source = if chunked {
        Source::Chunked(reader)
    } else {
        Source::Plain(Box::new(reader))
    };
    Response {
        status,
        headers,
        events: Events {
            source,
            pending: Vec::new(),
            ended: false,
        },
    }
}

/// Opens an event stream that must be accepted.
async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Events {
    let response = get(addr, path, headers).await;
    assert_eq!(response.status, 200, "{path}: {:?}", response.headers);
    assert_eq!(
        response.header("content-type"),
        Some("text/event-stream"),
        "{path}"
    );
    response.events
}

/// (shard, sequence number) of a record event.
fn position(event: &Block) -> (String, SequenceNumber) {
    let json = event.json();
    (
        json["shardId"].as_str().unwrap().to_owned(),
        json["sequenceNumber"].as_str().unwrap().parse().unwrap(),
    )
}

/// Asserts that each shard's records come in sequence order, once each.
fn assert_ordered(events: &[Block]) {
    let mut last: std::collections::HashMap<String, SequenceNumber> = Default::default();
    for event in events {
        let (shard, sequence) = position(event);
        if let Some(previous) = last.get(&shard) {
            assert!(sequence > *previous, "{shard}: {sequence} after {previous}");
        }
        last.insert(shard, sequence);
    }
}

/// The record's bytes, decoded as its `dataEncoding` says.
fn data(json: &Value) -> Vec<u8> {
    let text = json["data"].as_str().unwrap();
    match json["dataEncoding"].as_str().unwrap() {
        "utf8" => text.as_bytes().to_vec(),
        "base64" => STANDARD.decode(text).unwrap(),
        other => panic!("unknown encoding {other}"),
    }
}

#[tokio::test]
async fn records_arrive_in_order_as_json_and_any_event_id_resumes_exactly() {
    let stream = "sse-order";
    let emulator = fast_emulator().stream(stream, 2).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&[stream])).await;
    wait_active(&relay).await;
    let addr = relay.local_addr;
    let path = format!("/v1/streams/{stream}/records");
    let mut live = open(addr, &path, &[]).await;

    // Text (with quotes, line breaks and non-ASCII), binary and empty records, written in
    // one PutRecords so that each shard's records arrive in batches.
    let records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let data = match i % 10 {
                3 => vec![0xff, 0xfe, 0x00, i as u8],
                7 => Vec::new(),
                _ => format!("{{\"n\":{i},\"note\":\"ünï \\\"q\\\"\"}}\nline 2").into_bytes(),
            };
            (format!("key-{}", i % 7), data)
        })
        .collect();
    let kinesis = client_for(&emulator.endpoint_url());
    let before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let sequences = put(&kinesis, stream, &records).await;
    let events = live.records(records.len()).await;

    assert_ordered(&events);
    let mut seen = BTreeSet::new();
    for event in &events {
        let json = event.json();
        let sequence = json["sequenceNumber"].as_str().unwrap();
        let index = sequences.iter().position(|s| s == sequence).unwrap();
        assert!(seen.insert(index), "record {index} twice");
        let (key, bytes) = &records[index];
        assert_eq!(json["partitionKey"], key.as_str());
        assert_eq!(data(&json), *bytes, "record {index}");
        let expected = if std::str::from_utf8(bytes).is_ok() {
            "utf8"
        } else {
            "base64"
        };
        assert_eq!(json["dataEncoding"], expected);
        assert!(json["shardId"].as_str().unwrap().starts_with("shardId-"));
        assert!(json.get("subSequenceNumber").is_none(), "not aggregated");
        let arrival = time::OffsetDateTime::parse(
            json["approximateArrivalTimestamp"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(arrival > before, "{arrival}");
        let cursor = Cursor::decode(event.id.as_deref().expect("every record has an id")).unwrap();
        assert_eq!(cursor.stream, stream);
    }

    // From every event's id: exactly the records after it, whether the id comes back as
    // Last-Event-ID (which wins over the query, as for a reconnecting EventSource) or as
    // the cursor parameter.
    for k in 0..events.len() - 1 {
        let id = events[k].id.clone().unwrap();
        let mut resumed = if k % 2 == 0 {
            open(
                addr,
                &format!("{path}?start=latest"),
                &[("Last-Event-ID", &id)],
            )
            .await
        } else {
            open(addr, &format!("{path}?cursor={id}"), &[]).await
        };
        let rest = resumed.records(events.len() - k - 1).await;
        assert_ordered(&rest);
        let expected: BTreeSet<_> = events[k + 1..].iter().map(position).collect();
        let got: BTreeSet<_> = rest.iter().map(position).collect();
        assert_eq!(got, expected, "resumed after event {k}");
    }

    // From the last id: nothing is repeated; the next record is a new one.
    let last = events.last().unwrap().id.clone().unwrap();
    let mut resumed = open(addr, &path, &[("Last-Event-ID", &last)]).await;
    put(&kinesis, stream, &[("marker".into(), b"marker".to_vec())]).await;
    let next = resumed.records(1).await;
    assert_eq!(next[0].json()["data"], "marker");
    assert_eq!(live.records(1).await[0].json()["data"], "marker");

    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_http_codes_and_json_that_says_what_to_fix() {
    let stream = "sse-errors";
    let mut config = fast_config(&[stream]);
    config.security.limits = SubscriberLimits {
        max_per_principal: 1,
        ..SubscriberLimits::default()
    };
    let (emulator, relay) = relay_on_one_shard(stream, config).await;
    let addr = relay.local_addr;

    let list = get(addr, "/v1/streams", &[]).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/json"));
    let list = list.json().await;
    assert_eq!(list["streams"][0]["name"], stream);
    assert_eq!(list["streams"][0]["shardCount"], 1);
    assert_eq!(list["streams"][0]["status"], "STREAM_STATUS_ACTIVE");
    let describe = get(addr, &format!("/v1/streams/{stream}"), &[]).await;
    assert_eq!(describe.status, 200);
    let describe = describe.json().await;
    assert_eq!(describe["stream"], stream);
    assert_eq!(describe["shards"][0]["shardId"], "shardId-000000000000");
    assert_eq!(describe["shards"][0]["state"], "SHARD_STATE_READING");
    assert!(describe["oldestCursor"].is_string());

    let message = get(addr, "/v1/streams/nope/records", &[])
        .await
        .error(404, "NOT_FOUND")
        .await;
    assert!(
        message.contains("nope") && message.contains(stream),
        "names the stream and what is served: {message}"
    );
    get(addr, "/v1/streams/nope", &[])
        .await
        .error(404, "NOT_FOUND")
        .await;
    get(addr, "/v1/streams/nope/shards", &[])
        .await
        .error(404, "NOT_FOUND")
        .await;
    let records = format!("/v1/streams/{stream}/records");
    for (query, named) in [
        ("start=newest", "start:"),
        ("at_timestamp=yesterday", "at_timestamp:"),
        ("at_timestamp=1960-01-01T00:00:00Z", "at_timestamp:"),
        ("on_lag=maybe", "on_lag:"),
        ("cursor=%25%25%25", "cursor:"),
        ("shard_id=bad!id", "shard_id:"),
        ("partition_key=", "partition_key:"),
        ("start=latest&start=earliest", "start and start:"),
        ("wat=1", "\"wat\" is not a parameter"),
    ] {
        let message = get(addr, &format!("{records}?{query}"), &[])
            .await
            .error(400, "INVALID_ARGUMENT")
            .await;
        assert!(message.starts_with(named), "{query}: {message}");
    }
    let message = get(addr, &records, &[("Last-Event-ID", "not-a-cursor!")])
        .await
        .error(400, "INVALID_ARGUMENT")
        .await;
    assert!(message.starts_with("Last-Event-ID:"), "{message}");
    get(
        addr,
        &format!("{records}?shard_id=shardId-000000000009"),
        &[],
    )
    .await
    .error(404, "NOT_FOUND")
    .await;
    let post = get_with(addr, "POST", &records, &[("Content-Length", "0")]).await;
    assert_eq!(post.header("allow"), Some("GET"));
    post.error(405, "UNIMPLEMENTED").await;

    // The subscriber limits hold: one stream per client here, the next one gets 429.
    let mut first = open(addr, &records, &[]).await;
    get(addr, &records, &[])
        .await
        .error(429, "RESOURCE_EXHAUSTED")
        .await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, stream, &[("k".into(), b"still serving".to_vec())]).await;
    assert_eq!(first.records(1).await[0].json()["data"], "still serving");
    drop(first);

    // gRPC is served as before, and gRPC's answer to a client that is not gRPC is kept.
    let mut grpc = connect(addr).await;
    let streams = grpc
        .list_streams(kinesis_relay_api::v1::ListStreamsRequest {})
        .await
        .unwrap();
    assert_eq!(streams.get_ref().streams.len(), 1);
    let other = get(addr, "/kinesis_relay.v1.Relay/ListStreams", &[]).await;
    assert_eq!(other.status, 415);

    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn tokens_are_checked_as_for_grpc_and_never_taken_from_the_url() {
    let dir = std::env::temp_dir().join(format!("relay-sse-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"sse-reader\"\ntoken = \"sse-secret\"\nstreams = [\"sse-auth\"]\n",
    )
    .unwrap();
    let streams = ["sse-auth", "sse-hidden"];
    let mut builder = fast_emulator();
    for stream in streams {
        builder = builder.stream(stream, 1);
    }
    let emulator = builder.start().await.unwrap();
    let config = RelayConfig {
        security: SecuritySettings {
            auth_tokens: Some(tokens),
            ..Default::default()
        },
        ..fast_config(&streams)
    };
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let addr = relay.local_addr;
    let records = "/v1/streams/sse-auth/records";

    let missing = get(addr, records, &[]).await;
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"kinesis-relay\"")
    );
    let message = missing.error(401, "UNAUTHENTICATED").await;
    assert!(message.contains("Bearer"), "{message}");
    get(addr, "/v1/streams", &[])
        .await
        .error(401, "UNAUTHENTICATED")
        .await;
    let message = get(addr, records, &[("Authorization", "Bearer wrong-secret")])
        .await
        .error(401, "UNAUTHENTICATED")
        .await;
    assert!(!message.contains("wrong-secret"), "never echoed: {message}");
    // URLs end up in access logs and browser history: a token there is refused.
    let message = get(addr, &format!("{records}?token=sse-secret"), &[])
        .await
        .error(400, "INVALID_ARGUMENT")
        .await;
    assert!(!message.contains("sse-secret"), "{message}");

    let token = [("Authorization", "Bearer sse-secret")];
    let list = get(addr, "/v1/streams", &token).await.json().await;
    let names: Vec<_> = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["sse-auth"], "only what the token may read");
    get(addr, "/v1/streams/sse-hidden/records", &token)
        .await
        .error(403, "PERMISSION_DENIED")
        .await;
    let mut events = open(addr, records, &token).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(
        &kinesis,
        "sse-auth",
        &[("k".into(), b"for the reader".to_vec())],
    )
    .await;
    assert_eq!(events.records(1).await[0].json()["data"], "for the reader");

    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_stream_ended_by_the_relay_ends_with_an_error_event_and_its_cursor() {
    let stream = "sse-shutdown";
    let (emulator, relay) = relay_on_one_shard(stream, fast_config(&[stream])).await;
    let addr = relay.local_addr;
    let mut events = open(addr, &format!("/v1/streams/{stream}/records"), &[]).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, stream, &numbered("before", 3, 2)).await;
    let received = events.records(3).await;
    let last_id = received[2].id.clone().unwrap();

    let stopping = tokio::spawn(relay.shutdown());
    let ending = loop {
        let block = events.next().await.expect("an error event before the end");
        if block.name.is_some() {
            break block;
        }
        assert!(block.data.is_none(), "no record after the three: {block:?}");
    };
    assert_eq!(ending.name.as_deref(), Some("error"));
    assert_eq!(ending.id, None, "the cursor travels in the data");
    let json = ending.json();
    assert_eq!(json["code"], "UNAVAILABLE");
    assert!(json["message"].as_str().unwrap().contains("shutting down"));
    assert_eq!(
        json["cursor"],
        last_id.as_str(),
        "resumes right after the last record"
    );
    assert!(
        events.next().await.is_none(),
        "nothing after the error event"
    );
    stopping.await.unwrap().unwrap();
    emulator.shutdown().await;
}

/// `curl -N` with `args`, its output read as events.
fn curl(args: &[&str]) -> (Child, Events) {
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "60"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl starts");
    let stdout = child.stdout.take().unwrap();
    let events = Events {
        source: Source::Plain(Box::new(stdout)),
        pending: Vec::new(),
        ended: false,
    };
    (child, events)
}

#[tokio::test]
async fn curl_reads_every_record_once_across_a_reconnect_with_last_event_id() {
    let available = std::process::Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !require_tool("curl", available) {
        return;
    }
    let stream = "sse-curl";
    let (emulator, relay) = relay_on_one_shard(stream, fast_config(&[stream])).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let written = numbered("curl", 30, 5);
    put(&kinesis, stream, &written).await;
    wait_held(&relay, stream, written.len()).await;
    let url = format!(
        "http://{}/v1/streams/{stream}/records?start=earliest",
        relay.local_addr
    );

    // The first connection is cut after 12 records.
    let (mut first, mut events) = curl(&[&url]);
    let head = events.records(12).await;
    first.kill().await.unwrap();
    let last_id = head.last().unwrap().id.clone().unwrap();

    // The reconnect sends the last id back, as an EventSource would, with the same URL.
    let header = format!("Last-Event-ID: {last_id}");
    let (mut second, mut events) = curl(&["-H", &header, &url]);
    let tail = events.records(written.len() - 12).await;
    let got: Vec<String> = head
        .iter()
        .chain(&tail)
        .map(|event| event.json()["data"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = written
        .iter()
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect();
    assert_eq!(got, expected, "every record once, in order");
    put(&kinesis, stream, &[("k".into(), b"after".to_vec())]).await;
    assert_eq!(events.records(1).await[0].json()["data"], "after");
    second.kill().await.unwrap();

    // curl's HTTP/2 (prior knowledge, as over TLS) is served too.
    let (mut third, mut events) = curl(&["--http2-prior-knowledge", &url]);
    assert_eq!(events.records(1).await[0].json()["data"], "curl-0");
    third.kill().await.unwrap();

    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_python_sse_client_reads_every_record_once_across_a_reconnect() {
    let available = std::process::Command::new("python3")
        .args(["-c", "import sseclient, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !require_tool("python3 with sseclient-py and requests", available) {
        return;
    }
    let stream = "sse-python";
    let (emulator, relay) = relay_on_one_shard(stream, fast_config(&[stream])).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let written = numbered("python", 40, 5);
    put(&kinesis, stream, &written).await;
    wait_held(&relay, stream, written.len()).await;
    let url = format!(
        "http://{}/v1/streams/{stream}/records?start=earliest",
        relay.local_addr
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sse_client.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&url)
        .arg("17")
        .arg(written.len().to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE * 2, run)
        .await
        .expect("the Python client finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let got: Vec<String> = result["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|data| data.as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = written
        .iter()
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect();
    assert_eq!(
        got, expected,
        "every record once, in order, across the reconnect"
    );
    assert!(
        result["reconnected_after"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}
