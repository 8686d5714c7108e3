//! The systems under test: how to start each server, publish to it and subscribe to it.
//! Every subscriber has its own connection, as separate readers would.

mod nats;
mod redis;
pub mod relay;
mod sse;

use std::{
    net::TcpListener,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

use kinesis_relay_api::CLIENT_MAX_FRAME_SIZE;

use crate::payload::SubStats;

/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which most gRPC clients keep.
const DEFAULT_FRAME_SIZE: u32 = 16 << 10;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// kinesis-relay on the project's emulator (push delay zero, limits off); subscribers
    /// accept 1 MiB HTTP/2 frames, as kinesis-relay-client does.
    Relay,
    /// The same relay; subscribers keep HTTP/2's default 16 KiB frames, as grpc-go,
    /// grpc-js and grpcurl do.
    #[value(name = "relay-16k")]
    Relay16k,
    /// As `relay-16k`, with the relay's write coalescing off (`--coalesce-writes off`):
    /// every HTTP/2 frame is its own system call, as before the coalescing.
    #[value(name = "relay-16k-per-frame")]
    Relay16kPerFrame,
    /// The same relay; subscribers read its Server-Sent Events endpoint over HTTP/1.1
    /// (`GET /v1/streams/bench/records`), as `curl -N` and browsers do.
    #[value(name = "relay-sse")]
    RelaySse,
    /// Debian's redis-server, PUBLISH / SUBSCRIBE.
    Redis,
    /// Debian's nats-server, core publish / subscribe.
    Nats,
}

impl System {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Relay => "relay",
            System::Relay16k => "relay-16k",
            System::Relay16kPerFrame => "relay-16k-per-frame",
            System::RelaySse => "relay-sse",
            System::Redis => "redis",
            System::Nats => "nats",
        }
    }

    /// The HTTP/2 frame size its subscribers accept: 1 MiB for `relay` (as
    /// kinesis-relay-client), HTTP/2's default 16 KiB for every other system.
    pub fn client_frame_size(self) -> u32 {
        match self {
            System::Relay => CLIENT_MAX_FRAME_SIZE,
            _ => DEFAULT_FRAME_SIZE,
        }
    }
}

/// Which CPUs the server and the load generator run on.
#[derive(Debug, Clone)]
pub struct Placement {
    /// `taskset -c` list for the server under test, if pinning.
    pub server_cpus: Option<String>,
    /// `taskset -c` list for the load generator (this process: publisher, subscribers).
    pub client_cpus: Option<String>,
    /// `taskset -c` list for the relay's upstream (the emulator standing in for Kinesis).
    pub upstream_cpus: Option<String>,
}

/// A running server process (and its helpers), killed on drop.
#[derive(Debug)]
pub struct Server {
    /// The system.
    pub system: System,
    /// The process whose CPU and memory are measured.
    pub pid: u32,
    /// Where clients connect (`host:port`).
    pub addr: String,
    /// For the relay: the emulator's endpoint URL, where the publisher writes.
    pub upstream: Option<String>,
    /// For the relay: its metrics listener (`host:port`), for the delay it adds.
    pub metrics: Option<String>,
    /// For the relay: the HTTP/2 frame size its subscribers accept.
    pub client_frame_size: u32,
    /// The processes, each started after those it depends on (the relay after its
    /// emulator), the measured one last; stopped in reverse order on drop.
    children: Vec<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Last started first, and each only once it has exited: the relay reads from its
        // emulator, so an emulator killed first cuts the relay's upstream connections and
        // the dying relay logs their errors ("unexpected EOF during chunk size line").
        for child in self.children.iter_mut().rev() {
            stop(child);
        }
    }
}

/// Kills `child` and waits (at most 5 s) until it has exited.
fn stop(child: &mut Child) {
    if child.start_kill().is_err() {
        // Already exited (and reaped).
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts `system`, pinned as `placement` says, and waits until it accepts clients.
pub async fn start(
    system: System,
    placement: &Placement,
    ring_bytes: u64,
) -> anyhow::Result<Server> {
    match system {
        System::Relay | System::Relay16k | System::RelaySse | System::Relay16kPerFrame => {
            let extra = match system {
                System::Relay16kPerFrame => vec!["--coalesce-writes".to_owned(), "off".to_owned()],
                _ => Vec::new(),
            };
            relay::start(system, placement, ring_bytes, &extra).await
        }
        System::Redis => {
            let port = free_port()?;
            let child = spawn(
                placement.server_cpus.as_deref(),
                "redis-server",
                &[
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                    "--loglevel",
                    "warning",
                    "--maxclients",
                    "10000",
                ],
                false,
            )?;
            finish_tcp_start(system, child, format!("127.0.0.1:{port}")).await
        }
        System::Nats => {
            let port = free_port()?;
            let child = spawn(
                placement.server_cpus.as_deref(),
                "nats-server",
                &["-a", "127.0.0.1", "-p", &port.to_string()],
                false,
            )?;
            finish_tcp_start(system, child, format!("127.0.0.1:{port}")).await
        }
    }
}

/// Waits until `addr` accepts TCP connections.
async fn finish_tcp_start(system: System, child: Child, addr: String) -> anyhow::Result<Server> {
    let pid = child.id().context("server exited at once")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} did not accept connections on {addr} within 10 s",
            system.name()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Server {
        system,
        pid,
        addr,
        upstream: None,
        metrics: None,
        client_frame_size: system.client_frame_size(),
        children: vec![child],
    })
}

/// A port free right now on loopback.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawns `program args`, under `taskset -c cpus` when given (taskset execs, so the pid is
/// the program's). With `stdout_piped`, stdout is readable for a readiness line.
fn spawn(
    cpus: Option<&str>,
    program: &str,
    args: &[&str],
    stdout_piped: bool,
) -> anyhow::Result<Child> {
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus, program]);
            command
        }
        None => Command::new(program),
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(if stdout_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if stdout_piped {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("starting {program} (run bench/install-peers.sh?)"))
}

/// Reads lines of `child`'s stdout until one starts with `prefix`; returns the rest.
async fn ready_line(child: &mut Child, prefix: &str) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
        anyhow::bail!("process exited before printing {prefix}")
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .with_context(|| format!("waiting for {prefix}"))?
}

/// Publishes batches of payloads to one system.
pub enum Publisher {
    /// PutRecords to the relay's upstream.
    Relay(aws_sdk_kinesis::Client),
    /// Pipelined PUBLISH.
    Redis(::redis::aio::MultiplexedConnection),
    /// Core publish, flushed per batch.
    Nats(async_nats::Client),
}

impl Publisher {
    /// Connects a publisher to `server`.
    pub async fn connect(server: &Server) -> anyhow::Result<Self> {
        match server.system {
            System::Relay | System::Relay16k | System::Relay16kPerFrame | System::RelaySse => {
                relay::publisher(server)
            }
            System::Redis => redis::publisher(server).await,
            System::Nats => nats::publisher(server).await,
        }
    }

    /// Sends `batch` in order and waits until the system has taken it.
    pub async fn send(&mut self, batch: Vec<Bytes>) -> anyhow::Result<()> {
        match self {
            Publisher::Relay(client) => relay::send(client, batch).await,
            Publisher::Redis(conn) => redis::send(conn, batch).await,
            Publisher::Nats(client) => nats::send(client, batch).await,
        }
    }

    /// The largest batch worth sending in one call.
    pub fn max_batch(&self) -> usize {
        match self {
            // PutRecords takes at most 500 entries.
            Publisher::Relay(_) => 500,
            Publisher::Redis(_) | Publisher::Nats(_) => 1000,
        }
    }
}

/// The relay's delivery delay histogram (cumulative buckets, see
/// [`relay::delivery_delay`]); `None` for the other systems or when it cannot be read.
pub async fn relay_delay(server: &Server) -> Option<Vec<(f64, u64)>> {
    match server.system {
        System::Relay | System::Relay16k | System::Relay16kPerFrame | System::RelaySse => {
            relay::delivery_delay(server).await.ok()
        }
        System::Redis | System::Nats => None,
    }
}

/// Bytes of records the server holds for replay (the relay's ring; 0 for the others).
pub async fn held_bytes(server: &Server) -> u64 {
    match server.system {
        System::Relay | System::Relay16k | System::Relay16kPerFrame | System::RelaySse => {
            relay::ring_bytes_held(server).await.unwrap_or(0)
        }
        System::Redis | System::Nats => 0,
    }
}

/// Which compressed responses the relay's gRPC subscribers accept (the other systems'
/// subscribers, and the relay's SSE ones, take none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SubscriberCompression {
    /// Uncompressed responses only.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl SubscriberCompression {
    /// The encoding a tonic client accepts.
    pub fn encoding(self) -> Option<tonic::codec::CompressionEncoding> {
        match self {
            SubscriberCompression::None => None,
            SubscriberCompression::Gzip => Some(tonic::codec::CompressionEncoding::Gzip),
            SubscriberCompression::Zstd => Some(tonic::codec::CompressionEncoding::Zstd),
        }
    }
}

/// Subscribes one reader to `server`; returns once the subscription is in place, with the
/// task that reads it into `stats` (and timed records into `latency`).
pub async fn subscribe(
    server: &Server,
    stats: Arc<SubStats>,
    latency: Arc<Mutex<Histogram<u64>>>,
    accept: SubscriberCompression,
) -> anyhow::Result<JoinHandle<()>> {
    match server.system {
        System::Relay | System::Relay16k | System::Relay16kPerFrame => {
            relay::subscribe(server, stats, latency, accept).await
        }
        System::RelaySse => sse::subscribe(server, stats, latency).await,
        System::Redis => redis::subscribe(server, stats, latency).await,
        System::Nats => nats::subscribe(server, stats, latency).await,
    }
}
