//! Test scaffolding: a real emulator and relay in-process, the real client binary as a child
//! process, and waits on conditions with deadlines.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use aws_sdk_kinesis::{primitives::Blob, types::PutRecordsRequestEntry};
use kinesis_emulator::Emulator;
use kinesis_relay::{
    RelayConfig, RunningRelay,
    embedded::client_for,
    hub::RingLimits,
    ingest::{IngestSettings, InitialPosition},
    service::{ServeSettings, TransportSettings},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// Upper bound for any wait in a test.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The client binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kinesis-relay-client");

/// An emulator and a relay reading its streams.
pub struct Setup {
    pub emulator: Emulator,
    pub relay: Option<RunningRelay>,
    pub kinesis: aws_sdk_kinesis::Client,
    pub config: RelayConfig,
}

impl Setup {
    /// Starts an emulator with `streams` (name, shards) and a relay on them, and waits
    /// until the relay reads every shard.
    pub async fn start(streams: &[(&str, u32)]) -> Self {
        Self::start_with(streams, RingLimits::default()).await
    }

    /// [`Setup::start`] with ring limits.
    pub async fn start_with(streams: &[(&str, u32)], rings: RingLimits) -> Self {
        let mut builder = Emulator::builder()
            .consumer_activation_delay(Duration::from_millis(100))
            .idle_event_interval(Duration::from_millis(500))
            .takeover_window(Duration::from_secs(1));
        for (name, shards) in streams {
            builder = builder.stream(*name, *shards);
        }
        let emulator = builder.start().await.expect("emulator starts");
        let kinesis = client_for(&emulator.endpoint_url());
        let config = RelayConfig {
            streams: streams.iter().map(|(name, _)| name.to_string()).collect(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ingest: IngestSettings {
                consumer_name: "client-test".into(),
                // A restarted relay (no state dir) re-reads the stream from the start, so
                // it holds what a resuming client asks for.
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
            rings,
            catch_up: Default::default(),
            serve: ServeSettings {
                heartbeat_interval: Duration::from_millis(300),
                ..ServeSettings::default()
            },
            transport: TransportSettings::default(),
            security: Default::default(),
            admin: Default::default(),
        };
        let mut setup = Self {
            emulator,
            relay: None,
            kinesis,
            config,
        };
        setup.start_relay().await;
        setup
    }

    /// Starts the relay (again, on the same port once it has one).
    pub async fn start_relay(&mut self) {
        let relay = kinesis_relay::start(self.config.clone(), self.kinesis.clone())
            .await
            .expect("relay starts");
        self.config.listen = relay.local_addr;
        wait_reading(&relay).await;
        self.relay = Some(relay);
    }

    /// Stops the relay (subscribers get UNAVAILABLE with their cursor).
    pub async fn stop_relay(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await.expect("relay stops cleanly");
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.config.listen
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The client binary with `--relay` pointing at this relay.
    pub fn client(&self, args: &[&str]) -> Command {
        client(&self.url(), args)
    }

    /// Writes records (key, data) and returns their sequence numbers.
    pub async fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Vec<String> {
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
            let output = self
                .kinesis
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .expect("PutRecords");
            assert_eq!(output.failed_record_count(), Some(0));
            sequences.extend(
                output
                    .records()
                    .iter()
                    .map(|r| r.sequence_number().unwrap_or_default().to_owned()),
            );
        }
        sequences
    }

    /// Waits until the relay holds `n` records of `stream`.
    pub async fn wait_held(&self, stream: &str, n: usize) {
        let relay = self.relay.as_ref().expect("relay running");
        let hub = relay
            .hubs
            .iter()
            .find(|hub| hub.name() == stream)
            .expect("stream served");
        eventually(&format!("the relay to hold {n} records"), || {
            let state = hub.read();
            state
                .shards
                .values()
                .map(|slot| slot.ring.len())
                .sum::<usize>()
                >= n
        })
        .await;
    }

    pub async fn shutdown(mut self) {
        self.stop_relay().await;
        self.emulator.shutdown().await;
    }
}

/// The client binary with `--relay url`, output captured, killed if the test drops it.
pub fn client(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("--relay")
        .arg(url)
        .args(args)
        .env_remove("KINESIS_RELAY_URL")
        .env_remove("KINESIS_RELAY_TOKEN")
        .env_remove("KINESIS_RELAY_STREAM")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What a finished client run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Runs a command to completion within [`DEADLINE`].
pub async fn run(mut command: Command) -> Run {
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("the client finishes in time")
        .expect("the client runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Reads lines of a running client's stdout.
pub fn lines(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().expect("stdout piped")).lines()
}

/// Reads `n` lines within [`DEADLINE`].
pub async fn read_lines(lines: &mut Lines<BufReader<ChildStdout>>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        let left = DEADLINE.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, lines.next_line()).await {
            Ok(Ok(Some(line))) => out.push(line),
            other => panic!("got {} of {n} lines, then {other:?}", out.len()),
        }
    }
    out
}

/// Waits for a child to exit within [`DEADLINE`] and returns its code and stderr.
pub async fn finish(mut child: Child) -> (i32, String) {
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the client exits in time")
        .expect("wait");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    (status.code().unwrap_or(-1), stderr)
}

/// Sends a signal to a child with the `kill` command (no unsafe code in tests).
pub async fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("child running");
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
}

/// Waits until `check` holds, polling, or panics after [`DEADLINE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] with an async check.
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every shard of every stream has a live subscription.
async fn wait_reading(relay: &RunningRelay) {
    for hub in &relay.hubs {
        eventually("the relay to read every shard", || {
            let state = hub.read();
            !state.shards.is_empty()
                && state.shards.values().all(|slot| {
                    slot.finished() || slot.state == kinesis_relay::hub::ReaderState::Reading
                })
        })
        .await;
    }
}

/// `n` records `prefix-i` with keys `key-(i % keys)`.
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
