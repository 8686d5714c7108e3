//! Compressed Subscribe responses as real clients see them: tonic accepting gzip or zstd,
//! the generated Python client (grpcio), Node's @grpc/grpc-js, grpcurl, and a raw HTTP/2
//! client that reads the `grpc-encoding` header and the compressed flag of each message.
//! Every client gets every record exactly once, in order; the bytes it was sent, counted by
//! a proxy, show whether the stream was compressed.

mod common;

use std::{
    io::Read,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Buf, Bytes, BytesMut};
use common::*;
use kinesis_emulator::Emulator;
use kinesis_relay::RunningRelay;
use kinesis_relay_api::v1::{self, subscribe_response::Event};
use prost::Message;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::Command,
};
use tonic::codec::CompressionEncoding;

/// Records each test writes: JSON of about 1 KiB, as compressible as real JSON records.
const RECORDS: usize = 300;

/// A TCP proxy that counts the bytes the relay sends through it.
struct CountingProxy {
    addr: SocketAddr,
    down: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicU64::new(0));
        let counter = down.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                let counter = counter.clone();
                let (mut client_read, mut client_write) = inbound.into_split();
                let (mut relay_read, mut relay_write) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut relay_write).await;
                    let _ = relay_write.shutdown().await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = relay_read.read(&mut buf).await {
                        if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { addr, down }
    }

    /// Bytes the relay sent so far.
    fn down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

/// `n` JSON records of about 1 KiB, one partition key (one shard: one order).
fn json_records(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let items: Vec<String> = (0..12)
                .map(|j| {
                    format!(
                        r#"{{"sku":"SKU-{:05}","quantity":{},"warehouse":"eu-west-1"}}"#,
                        (i * 7 + j) % 1000,
                        j % 4 + 1
                    )
                })
                .collect();
            let data = format!(
                r#"{{"id":"{prefix}-{i}","status":"shipped","customer":"customer-{}","items":[{}]}}"#,
                i % 50,
                items.join(",")
            );
            ("key-0".to_owned(), data.into_bytes())
        })
        .collect()
}

/// An emulator and a relay (response compression as `compress` says) serving `stream`,
/// holding [`RECORDS`] JSON records; the records' data, in order.
async fn relay_with_json(stream: &str, compress: bool) -> (Emulator, RunningRelay, Vec<String>) {
    let mut config = fast_config(&[stream]);
    config.transport.compress_responses = compress;
    config.admin.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let (emulator, relay) = relay_on_one_shard(stream, config).await;
    let records = json_records(stream, RECORDS);
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, stream, &records).await;
    let data = records
        .into_iter()
        .map(|(_, data)| String::from_utf8(data).unwrap())
        .collect();
    (emulator, relay, data)
}

fn raw_bytes(data: &[String]) -> u64 {
    data.iter().map(|d| d.len() as u64).sum()
}

/// Asserts that the relay sent far fewer bytes than the records hold.
fn assert_compressed(what: &str, sent: u64, data: &[String]) {
    let raw = raw_bytes(data);
    assert!(
        sent * 4 < raw,
        "{what}: {sent} bytes sent for {raw} bytes of records: not compressed"
    );
}

/// Asserts that the relay sent at least the records' bytes.
fn assert_uncompressed(what: &str, sent: u64, data: &[String]) {
    let raw = raw_bytes(data);
    assert!(
        sent >= raw,
        "{what}: {sent} bytes sent for {raw} bytes of records: compressed"
    );
}

/// Asserts that `got` is `expected`: every record once, in order (the records' ids only in
/// the message, which would otherwise be hundreds of KiB).
fn assert_all_in_order(what: &str, got: &[String], expected: &[String]) {
    let id = |data: &str| data.get(..40).unwrap_or(data).to_owned();
    if let Some(at) = (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i)) {
        panic!(
            "{what}: {} records for {} written; first difference at {at}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(at).map(|d| id(d)),
            expected.get(at).map(|d| id(d)),
        );
    }
}

fn earliest(stream: &str) -> v1::SubscribeRequest {
    v1::SubscribeRequest {
        stream: stream.into(),
        starting_position: Some(v1::subscribe_request::StartingPosition::Earliest(
            v1::Earliest {},
        )),
        ..Default::default()
    }
}

#[tokio::test]
async fn tonic_clients_accepting_gzip_or_zstd_get_every_record_compressed() {
    let (emulator, relay, data) = relay_with_json("compressed-tonic", true).await;
    for encoding in [
        Some(CompressionEncoding::Gzip),
        Some(CompressionEncoding::Zstd),
        None,
    ] {
        let proxy = CountingProxy::start(relay.local_addr).await;
        let mut client = connect(proxy.addr).await;
        if let Some(encoding) = encoding {
            client = client.accept_compressed(encoding);
        }
        let response = client
            .subscribe(earliest("compressed-tonic"))
            .await
            .unwrap();
        let named = response
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut stream = response.into_inner();
        let delivery = receive(&mut stream, RECORDS).await;
        assert_all_in_order(
            &format!("tonic {encoding:?}"),
            &check_order(&delivery.records),
            &data,
        );
        let what = format!("tonic accepting {encoding:?}");
        match encoding {
            Some(CompressionEncoding::Gzip) => assert_eq!(named.as_deref(), Some("gzip")),
            Some(_) => assert_eq!(named.as_deref(), Some("zstd")),
            None => assert_eq!(named, None),
        }
        if encoding.is_some() {
            assert_compressed(&what, proxy.down(), &data);
        } else {
            assert_uncompressed(&what, proxy.down(), &data);
        }
    }
    // The metrics say what was compressed (process-wide counters: other tests add to them).
    let metrics = metrics_page(relay.metrics_addr.unwrap()).await;
    for encoding in ["gzip", "zstd"] {
        let labels = format!("encoding=\"{encoding}\"");
        let sent = metric(&metrics, "kinesis_relay_compressed_pieces_sent", &labels);
        let compressed = metric(
            &metrics,
            "kinesis_relay_compressed_pieces_compressed",
            &labels,
        );
        let (bytes_in, bytes_out) = (
            metric(&metrics, "kinesis_relay_compression_input_bytes", &labels),
            metric(&metrics, "kinesis_relay_compression_output_bytes", &labels),
        );
        assert!(
            sent.unwrap() >= compressed.unwrap() && compressed.unwrap() > 0.0,
            "{encoding}"
        );
        assert!(bytes_out.unwrap() * 4.0 < bytes_in.unwrap(), "{encoding}");
    }
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// What a raw HTTP/2 Subscribe call got: its `grpc-encoding` header, the compressed flag
/// of each record batch, and the records' data.
struct RawSubscription {
    encoding: Option<String>,
    flags: Vec<u8>,
    data: Vec<String>,
}

/// Subscribes from the earliest record over a bare HTTP/2 connection, sending
/// `accept_encoding`, and reads messages until `n` records arrived.
async fn raw_subscribe(
    addr: SocketAddr,
    stream: &str,
    accept_encoding: &str,
    n: usize,
) -> RawSubscription {
    raw_call(addr, "application/grpc", stream, accept_encoding, n).await
}

/// [`raw_subscribe`] with the request's `content_type` (gRPC-Web's, say).
async fn raw_call(
    addr: SocketAddr,
    content_type: &str,
    stream: &str,
    accept_encoding: &str,
    n: usize,
) -> RawSubscription {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post("http://relay/kinesis_relay.v1.Relay/Subscribe")
        .header("content-type", content_type)
        .header("te", "trailers")
        .header("grpc-accept-encoding", accept_encoding)
        .body(())
        .unwrap();
    let mut ready = client.ready().await.unwrap();
    let (response, mut send) = ready.send_request(request, false).unwrap();
    let message = earliest(stream).encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    send.send_data(Bytes::from(framed), true).unwrap();
    tokio::time::timeout(DEADLINE, async {
        let response = response.await.unwrap();
        let encoding = response
            .headers()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        let mut got = RawSubscription {
            encoding,
            flags: Vec::new(),
            data: Vec::new(),
        };
        while got.data.len() < n {
            let chunk = body.data().await.expect("the stream stays open").unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
            while buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() < 5 + len {
                    break;
                }
                let flag = buf[0];
                buf.advance(5);
                let message = buf.split_to(len);
                let decoded = match (flag, got.encoding.as_deref()) {
                    (0, _) => message.to_vec(),
                    // Single-member and single-frame-agnostic decoders, as clients use.
                    (_, Some("gzip")) => {
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&message[..])
                            .read_to_end(&mut out)
                            .unwrap();
                        out
                    }
                    (_, Some("zstd")) => zstd::decode_all(&message[..]).unwrap(),
                    (flag, encoding) => panic!("flag {flag} with grpc-encoding {encoding:?}"),
                };
                let response = v1::SubscribeResponse::decode(&decoded[..]).unwrap();
                if let Some(Event::Records(batch)) = response.event {
                    got.flags.push(flag);
                    got.data.extend(
                        batch
                            .records
                            .into_iter()
                            .map(|r| String::from_utf8(r.data.to_vec()).unwrap()),
                    );
                }
            }
        }
        got
    })
    .await
    .expect("every record arrives")
}

#[tokio::test]
async fn the_encoding_is_named_and_each_batch_flagged_only_when_the_client_accepts_it() {
    let (emulator, relay, data) = relay_with_json("compressed-raw", true).await;
    for (accept, expected) in [
        ("gzip", Some("gzip")),
        ("identity,gzip,zstd", Some("zstd")),
        ("identity", None),
        ("deflate", None),
    ] {
        let got = raw_subscribe(relay.local_addr, "compressed-raw", accept, RECORDS).await;
        assert_eq!(got.encoding.as_deref(), expected, "{accept}");
        assert_all_in_order(accept, &got.data, &data);
        let flag = u8::from(expected.is_some());
        assert!(
            got.flags.iter().all(|&f| f == flag),
            "{accept}: {:?}",
            got.flags
        );
    }
    // gRPC-Web is never compressed, whatever the call accepts.
    let web = raw_call(
        relay.local_addr,
        "application/grpc-web+proto",
        "compressed-raw",
        "gzip,zstd",
        RECORDS,
    )
    .await;
    assert_eq!(web.encoding, None);
    assert_all_in_order("gRPC-Web", &web.data, &data);
    assert!(web.flags.iter().all(|&f| f == 0), "{:?}", web.flags);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;

    // --response-compression off: never compressed.
    let (emulator, relay, data) = relay_with_json("compressed-off", false).await;
    let got = raw_subscribe(relay.local_addr, "compressed-off", "gzip,zstd", RECORDS).await;
    assert_eq!(got.encoding, None);
    assert_all_in_order("compression off", &got.data, &data);
    assert!(got.flags.iter().all(|&f| f == 0));
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// The `data` of each JSON line of `stdout` that has one, in order.
fn printed_data(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| Some(line.get("data")?.as_str()?.to_owned()))
        .collect()
}

#[tokio::test]
async fn the_generated_python_client_with_gzip_gets_every_record_compressed() {
    let Some(generated) = python_client("compression").await else {
        return;
    };

    let (emulator, relay, data) = relay_with_json("compressed-python", true).await;
    let proxy = CountingProxy::start(relay.local_addr).await;
    let mut python = Command::new("python3");
    python
        .arg(repo_root().join("server/tests/python/relay_client.py"))
        .arg(&generated)
        .arg(proxy.addr.to_string())
        .arg("compressed-python")
        .arg(RECORDS.to_string())
        .arg("gzip");
    let stdout = run_client(python, "python client (gzip)").await;
    assert_all_in_order("python", &printed_data(&stdout), &data);
    assert_compressed("python (grpcio, gzip)", proxy.down(), &data);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&generated);
}

#[tokio::test]
async fn a_node_grpc_js_client_accepting_gzip_gets_every_record_compressed() {
    let has_tools = node_grpc_js_available().await;
    if !require_tool("node with @grpc/grpc-js (scripts/peers.sh)", has_tools) {
        return;
    }
    let (emulator, relay, data) = relay_with_json("compressed-node", true).await;
    let proxy = CountingProxy::start(relay.local_addr).await;
    let mut node = Command::new("node");
    node.arg(repo_root().join("server/tests/node/relay_client.js"))
        .arg(repo_root().join("proto"))
        .arg(proxy.addr.to_string())
        .arg("compressed-node")
        .arg(RECORDS.to_string())
        .env("NODE_PATH", repo_root().join(".peers/node_modules"));
    let stdout = run_client(node, "node client").await;
    assert_all_in_order("node", &printed_data(&stdout), &data);
    assert_compressed("node (@grpc/grpc-js)", proxy.down(), &data);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn grpcurl_which_does_not_ask_for_compression_gets_every_record_uncompressed() {
    let available = Command::new("grpcurl")
        .arg("-version")
        .output()
        .await
        .is_ok();
    if !require_tool("grpcurl", available) {
        return;
    }
    use base64::Engine;
    let (emulator, relay, data) = relay_with_json("compressed-grpcurl", true).await;
    let proxy = CountingProxy::start(relay.local_addr).await;
    let mut child = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            r#"{"stream":"compressed-grpcurl","earliest":{}}"#,
        ])
        .arg(proxy.addr.to_string())
        .arg("kinesis_relay.v1.Relay/Subscribe")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // grpcurl prints each record's data as base64, one field a line.
    let printed = tokio::time::timeout(DEADLINE, async {
        let mut printed = Vec::new();
        while printed.len() < RECORDS {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("grpcurl keeps streaming");
            if let Some(value) = line.trim().strip_prefix("\"data\": \"") {
                let value = value.trim_end_matches(['"', ',']);
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .unwrap();
                printed.push(String::from_utf8(bytes).unwrap());
            }
        }
        printed
    })
    .await
    .expect("grpcurl prints every record");
    let _ = child.kill().await;
    assert_all_in_order("grpcurl", &printed, &data);
    assert_uncompressed("grpcurl", proxy.down(), &data);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}
