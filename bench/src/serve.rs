//! The subcommands the harness re-executes itself as: the emulator (the relay's upstream)
//! and the relay, each in its own process so the relay's CPU and memory are its own.
//! Each prints one line on stdout once ready, then runs until killed.

use std::{io::Write, net::SocketAddr, time::Duration};

use kinesis_emulator::{Emulator, EmulatorBuilder};
use kinesis_relay::{
    AdminSettings, RelayConfig, SecuritySettings,
    catchup::{CatchUpSettings, budget::Rates},
    connections::limits::ConnectionLimits,
    embedded::client_for,
    hub::{ReaderState, RingLimits},
    ingest::{IngestSettings, InitialPosition},
    security::limits::SubscriberLimits,
    service::{ServeSettings, TransportSettings},
};
use kinesis_relay_api::v1::StreamStatus;

/// The stream every relay cell uses: one shard, so sequence numbers arrive in order.
pub const STREAM: &str = "bench";

/// The relay's upstream in every run: [`STREAM`], records pushed at once, consumers active
/// after 50 ms; AWS's per-shard limits (writes, GetRecords) when `limits` is on.
pub fn emulator_builder(limits: bool) -> EmulatorBuilder {
    Emulator::builder()
        .stream(STREAM, 1)
        .push_delay(Duration::ZERO)
        .limits(limits)
        .consumer_activation_delay(Duration::from_millis(50))
}

/// Runs the emulator with [`STREAM`] (limits off) and prints `ENDPOINT <url>`.
pub async fn emulator() -> anyhow::Result<()> {
    let emulator = emulator_builder(false).start().await?;
    announce(&format!("ENDPOINT {}", emulator.endpoint_url()))?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Connection limits of the relay under test (the soak run lowers them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-connections`.
    pub max_connections: usize,
    /// `--connection-setup-timeout`.
    pub setup_timeout: Duration,
    /// `--coalesce-writes`.
    pub coalesce_writes: bool,
}

/// How the relay under test reads Kinesis.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Shards start at the newest record rather than the oldest, so records written
    /// before the relay started are not in its ring and are read by catch-up.
    pub from_latest: bool,
    /// Catch-up's GetRecords budget is lifted, to measure how fast the relay itself reads
    /// from an emulator without limits.
    pub unbudgeted_catch_up: bool,
}

/// Runs the relay on `endpoint` with default serving settings and a `ring_bytes` ring,
/// waits until it reads every shard, then prints `LISTEN <addr> <metrics addr>`.
pub async fn relay(
    endpoint: &str,
    ring_bytes: u64,
    limits: Limits,
    reading: Reading,
) -> anyhow::Result<()> {
    let mut catch_up = CatchUpSettings::default();
    if reading.unbudgeted_catch_up {
        catch_up.rates = Rates {
            calls: 1e6,
            bytes: 1e15,
        };
    }
    let config = RelayConfig {
        streams: vec![STREAM.to_owned()],
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ingest: IngestSettings {
            consumer_name: "bench".into(),
            initial_position: if reading.from_latest {
                InitialPosition::Latest
            } else {
                InitialPosition::TrimHorizon
            },
            min_subscribe_interval: Duration::from_millis(100),
            ..IngestSettings::default()
        },
        rings: RingLimits {
            max_bytes: usize::try_from(ring_bytes)?,
            ..RingLimits::default()
        },
        catch_up,
        serve: ServeSettings::default(),
        // The delay histogram the harness reads.
        admin: AdminSettings {
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..AdminSettings::default()
        },
        transport: TransportSettings {
            setup_timeout: limits.setup_timeout,
            coalesce_writes: limits.coalesce_writes,
            limits: ConnectionLimits {
                max_total: limits.max_connections,
                max_per_address: limits.max_connections,
            },
            ..TransportSettings::default()
        },
        // Admission limits are policy, not the data path: 1000 subscribers connect at once.
        security: SecuritySettings {
            limits: SubscriberLimits {
                max_subscribers: 1_000_000,
                max_per_principal: 1_000_000,
                subscribe_rate: 1e9,
            },
            ..SecuritySettings::default()
        },
    };
    let relay = kinesis_relay::start(config, client_for(endpoint)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let active = relay.hubs.iter().all(|hub| {
            let view = hub.view();
            view.status() == StreamStatus::Active
                && view
                    .shards()
                    .all(|shard| shard.state() == ReaderState::Reading)
        });
        if active {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the relay did not start reading within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = relay
        .metrics_addr
        .map_or_else(String::new, |addr| addr.to_string());
    announce(&format!("LISTEN {} {metrics}", relay.local_addr))?;
    relay.run_until(std::future::pending()).await
}

/// Prints the readiness line and flushes it (stdout is a pipe).
fn announce(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
