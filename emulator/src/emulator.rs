//! The running emulator: its builder, its shared state, start and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::error::EmulatorError;
use crate::faults::Faults;
use crate::handle::EmulatorHandle;
use crate::server;
use crate::state::Store;
use crate::subscriptions::Subscriptions;
use crate::tls;

/// What every task of one emulator shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Durations and limits.
    pub(crate) settings: Arc<Settings>,
    /// Streams, shards, records and consumers.
    pub(crate) store: Store,
    /// Open subscriptions and the takeover rule.
    pub(crate) subscriptions: Subscriptions,
    /// Injected faults.
    pub(crate) faults: Faults,
    /// Turns true when the emulator shuts down; every loop selects on it.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Counts running tasks so that shutdown can wait for them.
    pub(crate) tasks: Tasks,
}

/// Counts running tasks; shutdown waits until none is left.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    /// Tasks running now.
    running: AtomicUsize,
    /// Woken whenever a task ends.
    ended: Notify,
}

/// Held by a running task; dropping it marks the task ended.
#[derive(Debug)]
pub(crate) struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks.running.fetch_sub(1, Ordering::AcqRel);
        self.0.tasks.ended.notify_waiters();
    }
}

impl Shared {
    /// Fresh state under `settings`.
    pub(crate) fn new(settings: Arc<Settings>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            store: Store::new(settings.clone()),
            settings,
            subscriptions: Subscriptions::default(),
            faults: Faults::new(),
            shutdown,
            tasks: Tasks::default(),
        }
    }

    /// Spawns a task that shutdown waits for.
    pub(crate) fn spawn<F>(self: &Arc<Self>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.running.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(self.clone());
        tokio::spawn(async move {
            let _guard = guard;
            task.await;
        });
    }
}

/// Configures and starts an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    /// The address to listen on.
    listen: SocketAddr,
    /// Streams to create at start: (name, shard count).
    streams: Vec<(String, u32)>,
    /// Durations and limits.
    settings: Settings,
    /// Whether to serve TLS with a self-signed certificate.
    tls: bool,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            streams: Vec::new(),
            settings: Settings::default(),
            tls: false,
        }
    }
}

impl EmulatorBuilder {
    /// The address to listen on (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Creates a stream with `shards` shards at start; may be called repeatedly.
    pub fn stream(mut self, name: impl Into<String>, shards: u32) -> Self {
        self.streams.push((name.into(), shards));
        self
    }

    /// How long a consumer stays CREATING (default 1 s; AWS takes tens of seconds).
    pub fn consumer_activation_delay(mut self, delay: Duration) -> Self {
        self.settings.consumer_activation_delay = delay;
        self
    }

    /// How often an idle subscription gets an empty event (default 5 s, as AWS).
    pub fn idle_event_interval(mut self, interval: Duration) -> Self {
        self.settings.idle_event_interval = interval;
        self
    }

    /// How long a subscription lives (default 5 minutes, as AWS).
    pub fn subscription_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.subscription_lifetime = lifetime;
        self
    }

    /// The window in which a second subscription is refused and after which it takes over
    /// (default 5 s, as AWS). Keep it shorter than the subscription lifetime, or renewals
    /// are refused.
    pub fn takeover_window(mut self, window: Duration) -> Self {
        self.settings.takeover_window = window;
        self
    }

    /// How long after a write records are pushed (default 0: at once, as AWS).
    pub fn push_delay(mut self, delay: Duration) -> Self {
        self.settings.push_delay = delay;
        self
    }

    /// Whether the per-shard throughput limits apply (default on).
    pub fn limits(mut self, on: bool) -> Self {
        self.settings.limits = on;
        self
    }

    /// How long records are kept (default 24 h).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.settings.retention = retention;
        self
    }

    /// How long a shard iterator stays valid (default 5 minutes, as AWS); GetRecords with
    /// an older one answers ExpiredIteratorException.
    pub fn iterator_lifetime(mut self, lifetime: Duration) -> Self {
        self.settings.iterator_lifetime = lifetime;
        self
    }

    /// Serves HTTPS with a self-signed certificate (ALPN `h2` and `http/1.1`) instead of
    /// plain HTTP/1.1 and h2c.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Binds the listener, creates the streams and starts serving.
    pub async fn start(self) -> Result<Emulator, EmulatorError> {
        let settings = Arc::new(self.settings.clamped());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(settings, shutdown_rx));
        for (name, shards) in &self.streams {
            shared.store.create_stream(name, *shards, false)?;
        }
        let tls = if self.tls {
            Some(tls::self_signed()?)
        } else {
            None
        };
        let listener =
            TcpListener::bind(self.listen)
                .await
                .map_err(|source| EmulatorError::Bind {
                    addr: self.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: self.listen,
                source,
            })?;
        let certificate_pem = tls.as_ref().map(|t| t.certificate_pem.clone());
        shared.spawn(server::accept_loop(
            listener,
            shared.clone(),
            tls.map(|t| t.acceptor),
        ));
        shared.spawn(server::retention_loop(shared.clone()));
        tracing::info!(%local_addr, tls = certificate_pem.is_some(), "kinesis emulator listening");
        Ok(Emulator {
            local_addr,
            certificate_pem,
            shared,
            shutdown: shutdown_tx,
        })
    }
}

/// A running emulator. Dropping it stops it without waiting; [`Emulator::shutdown`] waits.
#[derive(Debug)]
pub struct Emulator {
    /// The address it listens on.
    local_addr: SocketAddr,
    /// The self-signed certificate when serving TLS.
    certificate_pem: Option<String>,
    /// The state shared with the tasks.
    shared: Arc<Shared>,
    /// Set to true to stop every task.
    shutdown: watch::Sender<bool>,
}

impl Emulator {
    /// A builder with the defaults described on each of its methods.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://IP:PORT`, or `https://IP:PORT` with TLS: the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        let scheme = if self.certificate_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The self-signed certificate in PEM when serving TLS, for clients to trust.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// A handle for fault injection and direct state access.
    pub fn handle(&self) -> EmulatorHandle {
        EmulatorHandle::new(self.shared.clone())
    }

    /// Stops the listener, every connection and every subscription, and waits (at most
    /// 10 s) until all tasks have ended and the port is free.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ended = self.shared.tasks.ended.notified();
            if self.shared.tasks.running.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!("shutdown: tasks still running after 10 s");
                break;
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
