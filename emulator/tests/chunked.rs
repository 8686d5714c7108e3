//! SubscribeToShard over HTTP/1.1 as a raw client sees the bytes: an event stream ends with
//! a complete chunked encoding (its `0\r\n\r\n` terminator) whether the subscription ends at
//! its lifetime or because the emulator shuts down under load; only the deliberate
//! drop-connection fault cuts a body. A cut body is what clients report as "unexpected EOF
//! during chunk size line".

mod common;

use common::*;
use kinesis_emulator::{Emulator, EndMode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

/// Sends SubscribeToShard (LATEST) on a new connection, asking the server to close it after
/// the response, so that EOF marks the response's end whatever happens.
async fn subscribe_raw(addr: SocketAddr, consumer_arn: &str, shard: &str) -> TcpStream {
    let body = serde_json::json!({
        "ConsumerARN": consumer_arn,
        "ShardId": shard,
        "StartingPosition": { "Type": "LATEST" },
    })
    .to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: Kinesis_20131202.SubscribeToShard\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket
}

/// Everything the server sends until it closes the connection.
async fn read_to_eof(mut socket: TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    timeout(DEADLINE, socket.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection in time")
        .expect("read");
    bytes
}

/// The body of a chunked HTTP/1.1 response, or where it was cut.
fn chunked_body(response: &[u8]) -> Result<Vec<u8>, String> {
    let head_end = find(response, b"\r\n\r\n").ok_or("cut in the head")?;
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") || !head.contains("transfer-encoding: chunked") {
        return Err(format!("not a chunked 200 response: {head}"));
    }
    let mut rest = &response[head_end + 4..];
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("cut in a chunk size line")?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(line.trim(), 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return match rest {
                b"\r\n" => Ok(body),
                _ => Err(format!("{} bytes after the last chunk", rest.len())),
            };
        }
        if rest.len() < size + 2 {
            return Err("cut in a chunk".into());
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How many whole event-stream frames `body` holds; an error if the last one is partial.
fn frame_count(body: &[u8]) -> Result<usize, String> {
    let (mut at, mut count) = (0, 0);
    while at < body.len() {
        let prelude = body.get(at..at + 4).ok_or("cut in a frame prelude")?;
        let total = u32::from_be_bytes(prelude.try_into().unwrap()) as usize;
        if total < 16 || at + total > body.len() {
            return Err(format!("frame {count} is cut or malformed"));
        }
        at += total;
        count += 1;
    }
    Ok(count)
}

async fn wait_for_subscriptions(emu: &Emulator, count: usize) {
    let deadline = Instant::now() + DEADLINE;
    while emu.handle().active_subscriptions() < count {
        assert!(Instant::now() < deadline, "subscriptions never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_ends_every_http1_event_stream_with_its_last_chunk() {
    const SHARDS: u32 = 4;
    const CONSUMERS: usize = 5;
    let emu = Emulator::builder()
        .stream("chunked-shutdown", SHARDS)
        .consumer_activation_delay(Duration::ZERO)
        // Empty events between the records, so that chunks are always on their way.
        .idle_event_interval(Duration::from_millis(20))
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let mut consumers = Vec::new();
    for i in 0..CONSUMERS {
        consumers.push(active_consumer(&client, "chunked-shutdown", &format!("c{i}")).await);
    }
    let mut readers = JoinSet::new();
    for consumer in &consumers {
        for shard in 0..SHARDS {
            let socket =
                subscribe_raw(emu.local_addr(), consumer, &format!("shardId-{shard:012}")).await;
            readers.spawn(read_to_eof(socket));
        }
    }
    let subscriptions = CONSUMERS * SHARDS as usize;
    wait_for_subscriptions(&emu, subscriptions).await;

    // A writer keeps records flowing until the emulator is gone (bounded in count).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let put = put_records(&client, "chunked-shutdown", 50, 200).await;
                if put.is_err() {
                    break;
                }
            }
        })
    };
    let deadline = Instant::now() + DEADLINE;
    while emu.handle().request_count("PutRecords") < 10 {
        assert!(Instant::now() < deadline, "the writer never wrote");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    emu.shutdown().await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let mut cut = Vec::new();
    while let Some(response) = readers.join_next().await {
        let response = response.unwrap();
        match chunked_body(&response).and_then(|body| frame_count(&body)) {
            // The initial-response frame at least.
            Ok(frames) => assert!(frames >= 1),
            Err(err) => cut.push(err),
        }
    }
    assert!(
        cut.is_empty(),
        "{} of {subscriptions} event streams were cut at shutdown: {cut:?}",
        cut.len()
    );
}

#[tokio::test]
async fn a_subscription_ending_at_its_lifetime_ends_its_body_cleanly() {
    let emu = Emulator::builder()
        .stream("chunked-lifetime", 1)
        .consumer_activation_delay(Duration::ZERO)
        .idle_event_interval(Duration::from_millis(20))
        .subscription_lifetime(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "chunked-lifetime", "c").await;
    let socket = subscribe_raw(emu.local_addr(), &consumer, "shardId-000000000000").await;
    let response = read_to_eof(socket).await;
    let body = chunked_body(&response).expect("a complete chunked body");
    assert!(frame_count(&body).unwrap() >= 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_drop_connection_fault_cuts_the_body_on_purpose() {
    let emu = Emulator::builder()
        .stream("chunked-drop", 1)
        .consumer_activation_delay(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "chunked-drop", "c").await;
    let socket = subscribe_raw(emu.local_addr(), &consumer, "shardId-000000000000").await;
    let reader = tokio::spawn(read_to_eof(socket));
    wait_for_subscriptions(&emu, 1).await;
    emu.handle().end_all_subscriptions(EndMode::DropConnection);
    let response = reader.await.unwrap();
    let cut = chunked_body(&response).expect_err("the fault imitates a broken connection");
    assert!(cut.starts_with("cut"), "{cut}");
    emu.shutdown().await;
}

/// One PutRecords of `count` records of `size` bytes over every shard.
async fn put_records(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    count: usize,
    size: usize,
) -> Result<(), String> {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let entries = (0..count)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![b'c'; size]))
                .build()
                .unwrap()
        })
        .collect();
    client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .map(|_| ())
        .map_err(|err| err.to_string())
}
