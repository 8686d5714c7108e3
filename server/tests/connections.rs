//! Connection-level abuse: silent connections, running out of file descriptors, oversized
//! metadata, clients that stall through a shutdown. Each test uses real sockets, and the
//! descriptor and signal tests a real relay process.

mod common;

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use kinesis_relay::{connections::limits::CloseReason, embedded::client_for};
use kinesis_relay_api::v1::{
    self, DescribeStreamRequest, SubscribeRequest, relay_client::RelayClient,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};
use tonic::{Code, metadata::MetadataValue, transport::Endpoint};

/// Reads from `stream` until the peer closes it (EOF or reset), or panics at the deadline.
async fn until_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the relay kept a silent connection open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_while_a_subscriber_keeps_receiving() {
    let mut config = fast_config(&["conn-silent"]);
    config.transport.setup_timeout = Duration::from_secs(2);
    let (emulator, relay) = relay_on_one_shard("conn-silent", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut client = connect(relay.local_addr).await;
    let mut records = subscribe(
        &mut client,
        SubscribeRequest {
            stream: "conn-silent".into(),
            ..Default::default()
        },
    )
    .await;

    // 2,000 connections that never send anything, 100 of them only half the preface.
    let mut silent = Vec::new();
    for i in 0..2_000 {
        let mut stream = TcpStream::connect(relay.local_addr).await.unwrap();
        if i % 20 == 0 {
            stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        silent.push(stream);
    }
    // The subscriber is served throughout.
    put(&kinesis, "conn-silent", &numbered("during", 50, 5)).await;
    let during = receive(&mut records, 50).await;
    assert_eq!(check_order(&during.records).len(), 50);

    for stream in &mut silent {
        until_closed(stream).await;
    }
    // The relay counts a connection just after closing it.
    eventually(
        "2,000 connections counted as closed by the deadline",
        || async { relay.connections.stats.closed(CloseReason::SetupDeadline) >= 2_000 },
    )
    .await;
    eventually(
        "the relay to hold only the subscriber's connection",
        || async { relay.connections.open() == 1 },
    )
    .await;

    put(&kinesis, "conn-silent", &numbered("after", 50, 5)).await;
    let after = receive(&mut records, 50).await;
    assert_eq!(
        check_order(&after.records),
        (0..50).map(|i| format!("after-{i}")).collect::<Vec<_>>()
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_fails_only_its_own_call() {
    let (emulator, relay) =
        relay_on_one_shard("conn-metadata", fast_config(&["conn-metadata"])).await;
    let kinesis = client_for(&emulator.endpoint_url());
    // One channel: one HTTP/2 connection carries the subscription and the large calls.
    let channel = Endpoint::from_shared(format!("http://{}", relay.local_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = RelayClient::new(channel);
    let mut records = subscribe(
        &mut client,
        SubscribeRequest {
            stream: "conn-metadata".into(),
            ..Default::default()
        },
    )
    .await;
    for (i, size) in [20 << 10, 100 << 10, 1 << 20].into_iter().enumerate() {
        let mut request = tonic::Request::new(DescribeStreamRequest {
            stream: "conn-metadata".into(),
        });
        request.metadata_mut().insert(
            "x-padding",
            MetadataValue::try_from("a".repeat(size)).unwrap(),
        );
        let status = client.describe_stream(request).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{size}: {status:?}");
        assert!(
            status.message().contains("--max-header-list-bytes"),
            "{size}: {status:?}"
        );
        // The subscription on the same connection goes on.
        let prefix = format!("after-{i}");
        put(&kinesis, "conn-metadata", &numbered(&prefix, 10, 2)).await;
        let delivery = receive(&mut records, 10).await;
        assert!(
            check_order(&delivery.records)
                .iter()
                .all(|data| data.starts_with(&prefix))
        );
    }
    // Metadata within the limit is fine.
    let mut request = tonic::Request::new(DescribeStreamRequest {
        stream: "conn-metadata".into(),
    });
    request.metadata_mut().insert(
        "x-padding",
        MetadataValue::try_from("a".repeat(8 << 10)).unwrap(),
    );
    client.describe_stream(request).await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_ends_are_counted_by_reason() {
    let (_emulator, relay) = relay_on_one_shard("conn-ends", fast_config(&["conn-ends"])).await;
    let hub = relay.hubs[0].clone();
    let ends = |reason| hub.counters.subscriber_ends.get(reason);
    use kinesis_relay::hub::ends::SubscriberEnd;

    let mut client = connect(relay.local_addr).await;
    let stream = subscribe(
        &mut client,
        SubscribeRequest {
            stream: "conn-ends".into(),
            ..Default::default()
        },
    )
    .await;
    drop(stream);
    eventually("a cancelled subscriber to be counted", || async {
        ends(SubscriberEnd::ClientCancel) == 1
    })
    .await;

    // A call with a deadline ends with DEADLINE_EXCEEDED and a cursor to resume from.
    let mut request = tonic::Request::new(SubscribeRequest {
        stream: "conn-ends".into(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(700));
    let mut stream = client.subscribe(request).await.unwrap().into_inner();
    let status = loop {
        match tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap()
        {
            Ok(Some(_heartbeat)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(kinesis_relay_api::resume::cursor_of(&status).is_some());
    // Counted when the relay drops the stream, just after its status went out.
    eventually("the deadline end to be counted", || async {
        ends(SubscriberEnd::Deadline) == 1
    })
    .await;
    relay.shutdown().await.unwrap();
}

/// A relay process of the built binary, killed on drop.
struct RelayProcess {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> SocketAddr {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `kinesis-relay --embedded` under `ulimit -n nofile` with extra flags, and waits
/// until its stream is active.
async fn relay_process(nofile: u32, flags: &[&str]) -> RelayProcess {
    let (grpc, metrics) = (free_port(), free_port());
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kinesis-relay"))
        .args(["--embedded", "--embedded-shards", "1"])
        .arg(format!("--listen={grpc}"))
        .arg(format!("--metrics-listen={metrics}"))
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the relay binary starts");
    let mut relay = RelayProcess {
        child,
        grpc,
        metrics,
    };
    let start = Instant::now();
    while !describe(grpc)
        .await
        .is_ok_and(|d| d.status == v1::StreamStatus::Active as i32)
    {
        if let Some(exit) = relay.child.try_wait().unwrap() {
            panic!("the relay process exited: {exit:?}");
        }
        assert!(start.elapsed() < DEADLINE, "the relay process never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay
}

async fn describe(addr: SocketAddr) -> Result<v1::DescribeStreamResponse, String> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|err| err.to_string())?;
    RelayClient::new(channel)
        .describe_stream(DescribeStreamRequest {
            stream: "demo".into(),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|status| status.to_string())
}

#[tokio::test]
async fn running_out_of_file_descriptors_never_stops_the_relay() {
    let mut relay = relay_process(256, &["--connection-setup-timeout=120s"]).await;
    // Flood the gRPC port with silent connections, far past what 256 descriptors hold.
    let mut flood = Vec::new();
    for _ in 0..400 {
        if let Ok(stream) = TcpStream::connect(relay.grpc).await {
            flood.push(stream);
        }
    }
    // The admin listener still answers, and says what happened.
    let (status, text) = http_get(relay.metrics, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let refused = metric(
        &text,
        "kinesis_relay_connections_closed_total",
        "reason=\"max_connections\"",
    )
    .unwrap_or(0.0);
    assert!(
        refused > 0.0,
        "connections past the limit are refused: {text}"
    );
    let limit = metric(&text, "kinesis_relay_connections_limit", "limit=\"total\"").unwrap();
    assert!(limit < 256.0, "the limit fits the descriptors: {limit}");
    assert!(relay.child.try_wait().unwrap().is_none(), "the relay died");

    // Once the flood ends, new clients are served again.
    drop(flood);
    eventually("new clients to be served after the flood", || async {
        describe(relay.grpc).await.is_ok()
    })
    .await;
    assert!(relay.child.try_wait().unwrap().is_none(), "the relay died");
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_period_despite_stalled_and_silent_clients() {
    let mut relay = relay_process(4096, &["--demo-producer=2000", "--shutdown-grace=2s"]).await;
    // A subscriber that never reads: its window (1 KiB) fills and the relay's responses,
    // and its final status, back up behind it.
    let stalled_channel = Endpoint::from_shared(format!("http://{}", relay.grpc))
        .unwrap()
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut stalled = RelayClient::new(stalled_channel);
    let _stalled_stream = stalled
        .subscribe(SubscribeRequest {
            stream: "demo".into(),
            starting_position: Some(v1::subscribe_request::StartingPosition::Earliest(
                v1::Earliest {},
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    // Silent and idle connections.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(relay.grpc).await.unwrap());
    }
    let idle = connect(relay.grpc).await;
    let pid = relay.child.id().unwrap().to_string();
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = tokio::time::timeout(DEADLINE, relay.child.wait())
        .await
        .expect("the relay exits")
        .unwrap();
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    // The grace period (2 s), half a second for the rest of the relay's shutdown and up to
    // a second for the embedded emulator's; a loaded machine gets one more second. Before
    // the grace period existed this took 15 s.
    assert!(
        took < Duration::from_millis(4_500),
        "SIGTERM took {took:?} with a 2 s grace period"
    );
    drop((idle, silent));
}

/// A response longer than 16 KiB as a client saw it: its length, the length of the DATA
/// frame it started in, and how many frames started within it.
#[derive(Debug)]
struct LongMessage {
    len: usize,
    first_frame: usize,
    frames_within: usize,
}

/// Each gRPC message longer than 16 KiB as a bare h2 client accepting `max_frame` bytes per
/// frame (h2's default, 16 KiB, if `None`) sees it, reading `records` records of `stream`
/// from the earliest.
async fn long_messages(
    addr: SocketAddr,
    stream: &str,
    max_frame: Option<u32>,
    records: usize,
) -> Vec<LongMessage> {
    use bytes::Bytes;
    use prost::Message;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut builder = h2::client::Builder::new();
    // Windows large enough that flow control never cuts a frame short.
    builder
        .initial_window_size(8 << 20)
        .initial_connection_window_size(8 << 20);
    if let Some(max_frame) = max_frame {
        builder.max_frame_size(max_frame);
    }
    let (client, connection) = builder.handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post("http://relay/kinesis_relay.v1.Relay/Subscribe")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = client.ready().await.unwrap();
    let (response, mut send) = ready.send_request(request, false).unwrap();
    let message = SubscribeRequest {
        stream: stream.into(),
        starting_position: Some(v1::subscribe_request::StartingPosition::Earliest(
            v1::Earliest {},
        )),
        ..Default::default()
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    send.send_data(Bytes::from(framed), true).unwrap();
    tokio::time::timeout(DEADLINE, async {
        let mut body = response.await.unwrap().into_body();
        // Every byte of the body, and where each DATA frame started in it.
        let (mut bytes, mut frame_starts) = (Vec::new(), Vec::new());
        let (mut parsed, mut received, mut long_messages) = (0, 0, Vec::new());
        while received < records {
            let frame = body.data().await.expect("the stream stays open").unwrap();
            let _ = body.flow_control().release_capacity(frame.len());
            frame_starts.push(bytes.len());
            bytes.extend_from_slice(&frame);
            while bytes.len() >= parsed + 5 {
                let header = &bytes[parsed..parsed + 5];
                let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                if bytes.len() < parsed + 5 + len {
                    break;
                }
                let message = &bytes[parsed + 5..parsed + 5 + len];
                let response = v1::SubscribeResponse::decode(message).unwrap();
                if let Some(v1::subscribe_response::Event::Records(batch)) = response.event {
                    received += batch.records.len();
                }
                if 5 + len > 16 << 10 {
                    let end = parsed + 5 + len;
                    // The frame this message started in, that frame's length, and how
                    // many frames started within the message.
                    let at = frame_starts.partition_point(|&start| start <= parsed) - 1;
                    let first_end = frame_starts.get(at + 1).copied().unwrap_or(bytes.len());
                    let within = frame_starts
                        .iter()
                        .filter(|&&start| start > parsed && start < end)
                        .count();
                    long_messages.push(LongMessage {
                        len: 5 + len,
                        first_frame: first_end - frame_starts[at],
                        frames_within: within,
                    });
                }
                parsed += 5 + len;
            }
        }
        long_messages
    })
    .await
    .expect("every record arrives")
}

#[tokio::test]
async fn a_client_of_16_kib_frames_gets_each_long_response_in_as_few_frames_as_its_length_needs() {
    let stream = unique_name("full-frames");
    let (emulator, relay) = relay_on_one_shard(&stream, fast_config(&[&stream])).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let records: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| (format!("key-{}", i % 4), vec![b'a' + (i % 26) as u8; 1000]))
        .collect();
    put(&kinesis, &stream, &records).await;
    wait_held(&relay, &stream, records.len()).await;

    // A client of HTTP/2's default 16 KiB frames: the first bytes of a batch's run of
    // records share the prefix's frame, so that the rest of the run is whole frames and
    // the response costs no more frames than its length in whole frames (instead of one
    // more: the prefix in a small frame of its own). The frame the response starts in
    // also holds the last response's tail, a cursor as long as this one's.
    let small = long_messages(relay.local_addr, &stream, None, 400).await;
    assert!(
        !small.is_empty(),
        "400 KiB of records come in long responses"
    );
    assert!(
        small
            .iter()
            .all(|message| message.frames_within <= message.len.div_ceil(16 << 10)),
        "responses longer than a frame: {small:?}"
    );
    // A client of 1 MiB frames takes a batch's records in one frame whatever comes before
    // them: no bytes are copied into the prefix's frame.
    let large = long_messages(relay.local_addr, &stream, Some(1 << 20), 400).await;
    assert!(
        large.iter().all(|message| message.first_frame < 1 << 10),
        "responses longer than 16 KiB: {large:?}"
    );
}
