//! Scaffolding of the client's tests: an emulator and a relay in-process (from
//! `kinesis-relay-test-support`, with the waits and process helpers), and the real client
//! binary as a child process.

// Each test binary uses part of this module, and of what it re-exports.
#![allow(dead_code, unused_imports)]

use std::{net::SocketAddr, process::Stdio, time::Duration};

use kinesis_emulator::Emulator;
use kinesis_relay::{RelayConfig, RunningRelay, embedded::client_for, hub::RingLimits};
use tokio::process::Command;

pub use kinesis_relay_test_support::{
    DEADLINE, eventually, finish, lines, numbered, read_lines, run, signal, wait_active,
};

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
        let mut builder = kinesis_relay_test_support::fast_emulator();
        for (name, shards) in streams {
            builder = builder.stream(*name, *shards);
        }
        let emulator = builder.start().await.expect("emulator starts");
        let kinesis = client_for(&emulator.endpoint_url());
        let names: Vec<&str> = streams.iter().map(|(name, _)| *name).collect();
        let mut config = kinesis_relay_test_support::fast_config(&names);
        config.ingest.consumer_name = "client-test".into();
        config.rings = rings;
        config.catch_up = Default::default();
        config.serve.heartbeat_interval = Duration::from_millis(300);
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
        wait_active(&relay).await;
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
        kinesis_relay_test_support::put(&self.kinesis, stream, records).await
    }

    /// Waits until the relay holds `n` records of `stream`.
    pub async fn wait_held(&self, stream: &str, n: usize) {
        let relay = self.relay.as_ref().expect("relay running");
        kinesis_relay_test_support::wait_held(relay, stream, n).await;
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
