//! kinesis-relay: one enhanced fan-out consumer per Kinesis stream, any number of gRPC
//! subscribers.
//!
//! # Layout
//! - [`config`]: command-line flags.
//! - [`ingest`]: the upstream half: where records come from (`ingest::Source`: Kinesis, or
//!   another relay), consumer, shard readers, resharding, checkpoints.
//! - [`hub`]: what the relay holds of each stream: one ring of encoded records per shard.
//! - [`catchup`]: records older than the rings, read from Kinesis with GetRecords.
//! - [`subscription`]: one subscriber's positions, filter and lag policy over the hub.
//! - [`wire`]: how responses are encoded: every hand-written field tag, records encoded
//!   once into blocks, `SubscribeResponse` bytes assembled from them.
//! - [`service`]: the gRPC `Relay` service, health and reflection.
//! - [`metrics`] and [`admin`]: Prometheus metrics and the admin listener that serves them.
//! - [`connections`]: the gRPC listener's connections: limits, deadlines, shutdown grace.
//! - [`web`]: HTTP endpoints on the same listener: JSON, and Server-Sent Events for Subscribe.
//! - [`embedded`]: the in-process emulator and demo producer of `--embedded`.
//! - [`launch`]: from parsed flags to a running relay (upstream discovery, `--embedded`).
//!
//! [`start`] wires them together; [`launch::run`] starts what the flags describe;
//! `main.rs` only parses flags, sets up logging and waits for a signal.

pub mod admin;
pub mod catchup;
pub mod config;
pub mod connections;
pub mod embedded;
pub mod health;
pub mod hub;
pub mod ingest;
pub mod launch;
pub mod log_budget;
pub mod metrics;
pub mod reference;
pub mod security;
pub mod service;
pub mod subscription;
pub mod web;
pub mod wire;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use aws_sdk_kinesis::Client;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tracing::{error, info, warn};

use crate::{
    catchup::{CatchUp, CatchUpSettings, turns::Turns},
    connections::{
        fd_limit,
        limits::{ConnectionLimits, ConnectionTable},
    },
    hub::{RingLimits, StreamHub},
    ingest::{IngestSettings, Source},
    security::{
        auth::Authorizer,
        limits::{Admission, SubscriberLimits},
        tls::{ReloadingTls, TlsFiles},
        watch::reload_on_change,
    },
    service::{Access, Listener, RelayService, ServeSettings, TransportSettings},
};

/// Transport security, authentication and subscriber limits.
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// TLS material; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// Tokens file; `None` lets every client read every stream.
    pub auth_tokens: Option<std::path::PathBuf>,
    /// Subscriber limits.
    pub limits: SubscriberLimits,
}

/// Everything a relay needs to start.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Streams to relay.
    pub streams: Vec<String>,
    /// gRPC listen address (`127.0.0.1:0` in tests).
    pub listen: SocketAddr,
    /// Ingest behaviour.
    pub ingest: IngestSettings,
    /// Ring bounds.
    pub rings: RingLimits,
    /// Reading records older than the rings from Kinesis.
    pub catch_up: CatchUpSettings,
    /// Serving behaviour.
    pub serve: ServeSettings,
    /// HTTP/2 transport.
    pub transport: TransportSettings,
    /// TLS, tokens, limits.
    pub security: SecuritySettings,
    /// Metrics and health.
    pub admin: AdminSettings,
}

/// The admin side: metrics listener and health threshold.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where `/metrics`, `/live` and `/ready` are served; `None` serves nothing.
    pub metrics_listen: Option<SocketAddr>,
    /// A stream with no live subscription for longer than this is NOT_SERVING.
    pub health_threshold: Duration,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            health_threshold: Duration::from_secs(60),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            streams: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ingest: IngestSettings::default(),
            rings: RingLimits::default(),
            catch_up: CatchUpSettings::default(),
            serve: ServeSettings::default(),
            transport: TransportSettings::default(),
            security: SecuritySettings::default(),
            admin: AdminSettings::default(),
        }
    }
}

/// A started relay.
#[derive(Debug)]
pub struct RunningRelay {
    /// Where the gRPC server listens.
    pub local_addr: SocketAddr,
    /// Where metrics are served, when they are.
    pub metrics_addr: Option<SocketAddr>,
    /// The hubs, for inspection.
    pub hubs: Vec<Arc<StreamHub>>,
    /// Catch-up of each stream (none when the relay reads another relay), for inspection.
    pub catch_ups: Vec<Arc<CatchUp>>,
    /// The gRPC listener's open connections and their counters.
    pub connections: Arc<ConnectionTable>,
    /// How long calls get to end at shutdown.
    shutdown_grace: Duration,
    /// Set to true to stop.
    shutdown: watch::Sender<bool>,
    /// Server and ingest tasks.
    tasks: JoinSet<anyhow::Result<()>>,
}

/// Starts ingest for every stream and the gRPC server.
pub async fn start(config: RelayConfig, client: Client) -> anyhow::Result<RunningRelay> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let connections = ConnectionTable::new(connection_limits(config.transport.limits));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Every task the relay starts, so that shutdown waits for each of them.
    let mut tasks = JoinSet::new();
    let security = &config.security;
    let listener = match &security.tls {
        Some(files) => {
            let tls = ReloadingTls::load(files.clone())?;
            let reloading = tls.clone();
            tasks.spawn(finishes(reload_on_change(
                "TLS certificates",
                files.paths(),
                move || reloading.reload(),
                shutdown_rx.clone(),
            )));
            Listener::Tls(listener, tls)
        }
        None => {
            if !local_addr.ip().is_loopback() {
                warn!(%local_addr, "serving plaintext gRPC on a non-loopback address: anyone who can reach it reads the streams; set --tls-cert and --tls-key (and --auth-tokens)");
            }
            Listener::Plain(listener)
        }
    };
    let auth = match &security.auth_tokens {
        Some(path) => {
            let auth = Authorizer::load(path)?;
            let reloading = auth.clone();
            tasks.spawn(finishes(reload_on_change(
                "auth tokens",
                vec![path.clone()],
                move || reloading.reload(),
                shutdown_rx.clone(),
            )));
            Some(auth)
        }
        None => None,
    };
    let access = Access {
        auth,
        admission: Admission::new(security.limits),
    };
    let hubs: Vec<_> = config
        .streams
        .iter()
        .map(|stream| StreamHub::new(stream.clone(), config.rings))
        .collect();
    let ingest = Arc::new(config.ingest);
    // Where records come from (Kinesis or an upstream relay), chosen here once.
    let source = Source::new(&ingest, client);
    // An upstream relay serves old cursors itself: only a relay reading Kinesis catches up.
    // --catch-up-readers 0 turns it off (e.g. without GetRecords permissions).
    let catch_ups: Vec<Arc<CatchUp>> = match source.kinesis() {
        None => Vec::new(),
        Some(_) if config.catch_up.max_readers == 0 => Vec::new(),
        Some(client) => {
            let thread = catchup::thread::start(shutdown_rx.clone())
                .context("starting the catch-up thread")?;
            // Shutdown waits for the thread (and the readers on it) like any task.
            tasks.spawn(finishes(catchup::thread::wait_ended(
                thread.ended,
                shutdown_rx.clone(),
            )));
            let thread = thread.handle;
            let turns = Turns::per_worker();
            hubs.iter()
                .map(|hub| {
                    CatchUp::new(
                        client.clone(),
                        hub.clone(),
                        config.catch_up.clone(),
                        thread.clone(),
                        turns.clone(),
                        shutdown_rx.clone(),
                    )
                })
                .collect()
        }
    };
    for hub in &hubs {
        let run = source.clone().run(
            hub.name().to_owned(),
            hub.clone(),
            ingest.clone(),
            shutdown_rx.clone(),
        );
        tasks.spawn(async move { Ok(run.await?) });
    }
    // Records age out of the rings even on idle streams, whatever feeds them (Kinesis or
    // an upstream relay): appends evict too, this covers the quiet times.
    tasks.spawn(finishes(age_rings(hubs.clone(), shutdown_rx.clone())));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(
            health::RELAY_SERVICE,
            tonic_health::ServingStatus::NotServing,
        )
        .await;
    let (ready_tx, ready_rx) = watch::channel(false);
    tasks.spawn(finishes(health::run(
        health_reporter,
        hubs.clone(),
        config.admin.health_threshold,
        ready_tx,
        shutdown_rx.clone(),
    )));
    let metrics_addr = match config.admin.metrics_listen {
        Some(addr) => {
            let admin = TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics listener on {addr}"))?;
            let bound = admin.local_addr()?;
            tasks.spawn(admin::serve(
                admin,
                metrics::registry(hubs.clone(), connections.clone(), catch_ups.clone()),
                ready_rx,
                shutdown_rx.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let service = RelayService::new(hubs.clone(), config.serve, access, shutdown_rx.clone())
        .with_catch_ups(catch_ups.clone());
    let shutdown_grace = config.transport.shutdown_grace;
    let console = config.transport.console;
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tasks.spawn(service::serve(
        listener,
        service,
        config.transport,
        connections.clone(),
        health_service,
        shutdown_rx.clone(),
    ));
    info!(%local_addr, streams = ?config.streams, "relay listening");
    if console {
        // Where a newcomer running `kinesis-relay --embedded` should look.
        let host = match local_addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        info!(
            "web console at {scheme}://{host}:{}{}",
            local_addr.port(),
            web::console::PATH
        );
    }
    Ok(RunningRelay {
        local_addr,
        metrics_addr,
        hubs,
        catch_ups,
        connections,
        shutdown_grace,
        shutdown: shutdown_tx,
        tasks,
    })
}

impl RunningRelay {
    /// Runs until `signal` resolves or a task fails, then shuts down. A failing task's
    /// error is returned.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let failure = tokio::select! {
            _ = signal => None,
            Some(result) = self.tasks.join_next() => match result {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err),
                Err(err) => Some(anyhow::Error::from(err)),
            },
        };
        if let Some(err) = &failure {
            error!(cause = %format!("{err:#}"), "relay task failed, shutting down");
        }
        let stopped = self.shutdown().await;
        match failure {
            Some(err) => Err(err),
            None => stopped,
        }
    }

    /// Stops serving (subscribers get UNAVAILABLE with their cursor), stops ingest and
    /// writes checkpoints. Bounded: calls get the shutdown grace period to end, and tasks
    /// still running half a second after it are aborted.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let mut first_error = None;
        let bound = self.shutdown_grace + Duration::from_millis(500);
        let drained = tokio::time::timeout(bound, async {
            while let Some(result) = self.tasks.join_next().await {
                if let Ok(Err(err)) = result {
                    first_error.get_or_insert(err);
                }
            }
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
        }
        info!("relay stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// A Kinesis client from the standard AWS configuration chain, with optional endpoint and
/// region overrides.
pub async fn aws_client(endpoint_url: Option<&str>, region: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    Client::new(&loader.load().await)
}

/// `wanted` as far as the process's file descriptors allow, after raising their soft
/// limit to the hard one: running out of descriptors must refuse new connections, never
/// fail the relay's own files and upstream connections.
fn connection_limits(wanted: ConnectionLimits) -> ConnectionLimits {
    let max_total = fd_limit::connections_within(wanted.max_total, fd_limit::raise_to_hard_limit());
    if max_total < wanted.max_total {
        warn!(
            max_connections = max_total,
            wanted = wanted.max_total,
            "--max-connections lowered to fit the file-descriptor limit (raise it with ulimit -n or LimitNOFILE)"
        );
    }
    ConnectionLimits {
        max_total,
        max_per_address: wanted.max_per_address.min(max_total),
    }
}

/// Drops records past the rings' age limit every second until shutdown.
async fn age_rings(hubs: Vec<Arc<StreamHub>>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => hubs.iter().for_each(|hub| hub.evict_expired()),
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// A task that cannot fail, as the relay's task set holds them.
async fn finishes(task: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    task.await;
    Ok(())
}

/// Resolves once `shutdown` holds true (or its sender is gone). The borrow of the value
/// ends inside, so callers may hold the future across awaits in `Send` tasks.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
