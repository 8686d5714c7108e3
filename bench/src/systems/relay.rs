//! kinesis-relay: the harness re-executes itself as `serve-emulator` (the upstream, on the
//! server's CPUs unless `--upstream-on load`) and `serve-relay` (on the server's CPUs). The
//! publisher writes with PutRecords; each subscriber is its own gRPC connection with the
//! generated client.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use aws_sdk_kinesis::{primitives::Blob, types::PutRecordsRequestEntry};
use bytes::Bytes;
use hdrhistogram::Histogram;
use kinesis_relay_api::v1::{
    DescribeStreamRequest, LagPolicy, Latest, SubscribeRequest, SubscribeResponse,
    relay_client::RelayClient, subscribe_request, subscribe_response::Event,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::Child,
    task::JoinHandle,
};
use tonic::{Streaming, codec::CompressionEncoding};

use super::{Placement, Server, SubscriberCompression, System, ready_line, spawn};
use crate::{payload::SubStats, serve::STREAM};

/// Starts the emulator and the relay as the variant `system` (which names the server, and so
/// decides how subscribers read it and the HTTP/2 frame size they accept); `extra` goes to
/// `serve-relay` (e.g. its limits).
pub async fn start(
    system: System,
    placement: &Placement,
    ring_bytes: u64,
    extra: &[String],
) -> anyhow::Result<Server> {
    let exe = bench_exe()?;
    let mut emulator = spawn(
        placement.upstream_cpus.as_deref(),
        &exe,
        &["serve-emulator"],
        true,
    )?;
    let endpoint = ready_line(&mut emulator, "ENDPOINT").await?;
    let upstream = vec![emulator];
    start_on(system, placement, &endpoint, upstream, ring_bytes, extra).await
}

/// Starts the relay on the emulator at `endpoint`, served by the processes `upstream` (none
/// when the emulator runs in the harness), which the returned server stops after the relay.
pub async fn start_on(
    system: System,
    placement: &Placement,
    endpoint: &str,
    upstream: Vec<Child>,
    ring_bytes: u64,
    extra: &[String],
) -> anyhow::Result<Server> {
    let exe = bench_exe()?;
    let ring_bytes = ring_bytes.to_string();
    let mut args = vec![
        "serve-relay",
        "--endpoint-url",
        endpoint,
        "--ring-bytes",
        &ring_bytes,
    ];
    args.extend(extra.iter().map(String::as_str));
    let mut relay = spawn(placement.server_cpus.as_deref(), &exe, &args, true)?;
    let listen = ready_line(&mut relay, "LISTEN").await?;
    let (addr, metrics) = listen
        .split_once(' ')
        .context("the relay printed no metrics address")?;
    let pid = relay.id().context("relay exited at once")?;
    let mut children = upstream;
    children.push(relay);
    Ok(Server {
        system,
        pid,
        addr: addr.to_owned(),
        upstream: Some(endpoint.to_owned()),
        metrics: Some(metrics.to_owned()),
        client_frame_size: system.client_frame_size(),
        children,
    })
}

/// This binary, which runs the servers as subcommands.
fn bench_exe() -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    Ok(exe
        .to_str()
        .context("bench binary path is not UTF-8")?
        .to_owned())
}

pub fn publisher(server: &Server) -> anyhow::Result<super::Publisher> {
    let endpoint = server
        .upstream
        .as_deref()
        .context("relay has an upstream")?;
    Ok(super::Publisher::Relay(
        kinesis_relay::embedded::client_for(endpoint),
    ))
}

pub async fn send(client: &aws_sdk_kinesis::Client, batch: Vec<Bytes>) -> anyhow::Result<()> {
    let entries = batch
        .into_iter()
        .map(|payload| {
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new(payload.to_vec()))
                .build()
                .context("record entry")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let output = client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries))
        .send()
        .await
        .context("PutRecords")?;
    anyhow::ensure!(
        output.failed_record_count().unwrap_or(0) == 0,
        "PutRecords failed {} records",
        output.failed_record_count().unwrap_or(0)
    );
    Ok(())
}

pub async fn subscribe(
    server: &Server,
    stats: Arc<SubStats>,
    latency: Arc<Mutex<Histogram<u64>>>,
    accept: SubscriberCompression,
) -> anyhow::Result<JoinHandle<()>> {
    let request = SubscribeRequest {
        stream: STREAM.to_owned(),
        starting_position: Some(subscribe_request::StartingPosition::Latest(Latest {})),
        on_lag: LagPolicy::Skip as i32,
        ..SubscribeRequest::default()
    };
    let mut stream = open(server, request, accept).await?;
    Ok(tokio::spawn(async move {
        while let Ok(Some(response)) = stream.message().await {
            if let Some(Event::Records(batch)) = response.event {
                stats.response();
                for record in &batch.records {
                    stats.observe(&record.data, &latency);
                }
            }
        }
    }))
}

/// Subscribes with `request` on a connection of its own, accepting `accept`; returns once the
/// relay has fixed the starting position (it answers with headers only then).
pub async fn open(
    server: &Server,
    request: SubscribeRequest,
    accept: SubscriberCompression,
) -> anyhow::Result<Streaming<SubscribeResponse>> {
    open_with(
        &server.addr,
        server.client_frame_size,
        request,
        accept.encoding(),
    )
    .await
}

/// [`open`] on the relay at `addr`, accepting HTTP/2 frames of `frame_size` bytes.
pub async fn open_at(
    addr: &str,
    frame_size: u32,
    request: SubscribeRequest,
) -> anyhow::Result<Streaming<SubscribeResponse>> {
    open_with(addr, frame_size, request, None).await
}

/// [`open_at`], accepting responses compressed with `accept` when given.
pub async fn open_with(
    addr: &str,
    frame_size: u32,
    request: SubscribeRequest,
    accept: Option<CompressionEncoding>,
) -> anyhow::Result<Streaming<SubscribeResponse>> {
    // Configured as kinesis-relay-client configures its channel (but for the frame size).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .max_frame_size(frame_size)
        .tcp_nodelay(true)
        .connect()
        .await
        .context("connecting to the relay")?;
    let mut client = RelayClient::new(channel).max_decoding_message_size(64 << 20);
    if let Some(encoding) = accept {
        client = client.accept_compressed(encoding);
    }
    Ok(client
        .subscribe(request)
        .await
        .context("Subscribe")?
        .into_inner())
}

/// Bytes the relay's ring holds now (DescribeStream), to tell the ring from per-subscriber
/// memory.
pub async fn ring_bytes_held(server: &Server) -> anyhow::Result<u64> {
    let mut client = RelayClient::connect(format!("http://{}", server.addr)).await?;
    let described = client
        .describe_stream(DescribeStreamRequest {
            stream: STREAM.to_owned(),
        })
        .await?
        .into_inner();
    Ok(described.shards.iter().map(|shard| shard.bytes_held).sum())
}

/// The relay's delivery delay histogram now: (upper bound in seconds, records at or below
/// it), cumulative, from its `/metrics`.
pub async fn delivery_delay(server: &Server) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = metrics_text(server).await?;
    let buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("kinesis_relay_delivery_delay_seconds_bucket{le=\"")?;
            let (bound, rest) = rest.split_once('"')?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    anyhow::ensure!(
        !buckets.is_empty(),
        "no kinesis_relay_delivery_delay_seconds in the relay's metrics"
    );
    Ok(buckets)
}

/// The relay's `/metrics` page.
pub async fn metrics_text(server: &Server) -> anyhow::Result<String> {
    let addr = server
        .metrics
        .as_deref()
        .context("relay has a metrics address")?;
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting to the relay's metrics")?;
    socket
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        socket.read_to_string(&mut text),
    )
    .await
    .context("reading the relay's metrics")??;
    Ok(text)
}
