//! The gRPC listener's connections: accepted, bounded, given a deadline to become useful,
//! and closed within a grace period at shutdown, whatever the clients do.
//!
//! tonic's own server holds a connection that never sends the HTTP/2 preface forever,
//! ends its accept loop on the first error and waits for every connection at shutdown, so
//! the relay serves its connections itself with hyper, routing requests to the tonic
//! services ([`tonic::service::Routes`]) as tonic would, and requests that are not gRPC
//! under `/v1/streams` to the HTTP endpoints ([`crate::web`]), over HTTP/2 or HTTP/1.1.
//!
//! # Layout
//! - `accept.rs`: an accept loop that never ends on an error.
//! - `limits.rs`: connection limits in total and per client address, and their counters.
//! - `fd_limit.rs`: the file-descriptor limit, raised at start, that those limits fit in.
//! - `coalesce.rs`: the frames h2 writes in one poll of a connection, in one system call.
//! - `route.rs`: where each request goes (gRPC services, gRPC-Web, HTTP endpoints, CORS
//!   preflights) and the answers given without a service (HTTP 415, 505, oversized metadata).
//! - `settings.rs`: the listener's settings (keepalive, limits, deadlines).

pub mod accept;
mod backlog;
pub mod client_frame;
pub mod coalesce;
pub mod fd_limit;
pub mod lent;
pub mod limits;
mod route;
mod settings;

pub use self::settings::TransportSettings;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use hyper::{Request, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{Notify, watch},
    task::JoinSet,
    time::{Instant, sleep_until, timeout_at},
};
use tokio_rustls::TlsAcceptor;
use tonic::{body::Body, service::Routes, transport::server::Connected};
use tracing::{debug, info};

pub(crate) use self::route::header_list_size;
use self::{
    accept::Acceptor,
    client_frame::{ClientFrameSize, ReadsClientFrame},
    coalesce::{Coalescing, Drain},
    lent::LentChunks,
    limits::{CloseReason, ConnectionTable},
    route::route,
};
use crate::{log_budget::LogBudget, security::tls::ReloadingTls, stopped, web};

/// The socket the server accepts on.
#[derive(Debug)]
pub enum Listener {
    /// Plaintext HTTP/2.
    Plain(tokio::net::TcpListener),
    /// TLS, with the configuration reloaded on change.
    Tls(tokio::net::TcpListener, Arc<ReloadingTls>),
}

/// How a connection ended, once it has: the relay's calls read it to say why they ended
/// (a subscriber whose connection missed its keepalive did not cancel).
#[derive(Debug, Clone, Default)]
pub struct ConnectionFate(Arc<OnceLock<CloseReason>>);

impl ConnectionFate {
    /// Why the connection ended, if it has.
    pub fn reason(&self) -> Option<CloseReason> {
        self.0.get().copied()
    }
}

/// What every connection task shares.
struct Shared {
    /// The gRPC services.
    routes: Routes,
    /// The HTTP endpoints for clients that do not speak gRPC.
    web: web::Endpoints,
    /// HTTP/2 settings.
    http: auto::Builder<TokioExecutor>,
    /// Limits and deadlines.
    settings: TransportSettings,
    /// Open connections and counters.
    table: Arc<ConnectionTable>,
    /// Lines about rejected and timed-out connections.
    log: LogBudget,
}

/// Serves `routes` on `listener` until `shutdown` becomes true, then lets the calls end
/// for `shutdown_grace` and closes what is left.
pub async fn serve(
    listener: Listener,
    routes: Routes,
    web: web::Endpoints,
    settings: TransportSettings,
    table: Arc<ConnectionTable>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (listener, tls) = match listener {
        Listener::Plain(listener) => (listener, None),
        Listener::Tls(listener, tls) => (listener, Some(tls)),
    };
    let mut acceptor = Acceptor::new(listener, "grpc", table.stats.clone());
    let mut http = auto::Builder::new(TokioExecutor::new());
    // HTTP/1.1 is for the HTTP endpoints' clients (curl, browsers): one request per
    // connection, so that no idle keep-alive connection outlives the setup deadline.
    http.http1()
        .timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(settings.setup_timeout)
        .max_buf_size(
            settings
                .max_header_list_bytes
                .saturating_mul(2)
                .max(8 << 10),
        );
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_pending_accept_reset_streams(settings.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(settings.max_local_error_reset_streams)
        .max_header_list_size(settings.http2_header_list_size());
    let shared = Arc::new(Shared {
        routes: routes.prepare(),
        web,
        http,
        settings,
        table,
        log: LogBudget::new(5),
    });
    // Becomes true when the grace period is over: connections still open are closed.
    let (force_tx, force_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            // Reap finished connections so the set holds only open ones.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = stopped(&mut shutdown) => break,
        };
        let slot = match shared.table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                if let Some(left_out) = shared.log.admit() {
                    info!(%peer, reason = reason.as_str(), similar_lines_left_out = left_out, "connection refused: over a connection limit");
                }
                continue;
            }
        };
        let deadline = Instant::now() + shared.settings.setup_timeout;
        let task = Task {
            shared: shared.clone(),
            peer,
            deadline,
            shutdown: shutdown.clone(),
            force: force_rx.clone(),
        };
        let tls = tls.as_ref().map(|tls| TlsAcceptor::from(tls.current()));
        tasks.spawn(async move {
            let reason = match tls {
                None => task.serve(stream).await,
                Some(acceptor) => task.serve_tls(stream, acceptor).await,
            };
            slot.count_close(reason);
        });
    }
    // Close the listening socket now: new clients are refused instead of waiting.
    drop(acceptor);
    let open = tasks.len();
    let drained = tokio::time::timeout(shared.settings.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        info!(
            still_open = tasks.len(),
            of = open,
            grace_ms = shared.settings.shutdown_grace.as_millis(),
            "shutdown grace period over: closing the connections still open"
        );
        let _ = force_tx.send(true);
        // Each task drops its connection at once; abort whatever does not.
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }
    Ok(())
}

/// One connection's task.
struct Task {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// When the connection must have started its first call.
    deadline: Instant,
    shutdown: watch::Receiver<bool>,
    force: watch::Receiver<bool>,
}

impl Task {
    /// Completes the TLS handshake within the setup deadline, then serves.
    async fn serve_tls(mut self, stream: tokio::net::TcpStream, tls: TlsAcceptor) -> CloseReason {
        let handshake = tokio::select! {
            handshake = timeout_at(self.deadline, tls.accept(stream)) => handshake,
            _ = stopped(&mut self.shutdown) => return CloseReason::Shutdown,
        };
        match handshake {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(err)) => {
                debug!(peer = %self.peer, cause = %err, "TLS handshake failed");
                CloseReason::Client
            }
            Err(_) => self.setup_deadline_passed(),
        }
    }

    /// Serves HTTP/2 or HTTP/1.1 on `io` until the client closes, a deadline passes or
    /// shutdown.
    async fn serve<IO>(self, io: IO) -> CloseReason
    where
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    {
        let info = io.connect_info();
        // What the connection's I/O layers learn or offer, for its calls to use.
        let mut shares = http::Extensions::new();
        let frame_size = ClientFrameSize::default();
        shares.insert(frame_size.clone());
        let io = ReadsClientFrame::new(io, frame_size);
        if self.shared.settings.coalesce_writes {
            let lent = LentChunks::default();
            shares.insert(lent.clone());
            let (io, drain) = Coalescing::new(io, lent);
            self.serve_http(io, info, shares, Some(drain)).await
        } else {
            self.serve_http(io, info, shares, None).await
        }
    }

    /// Serves HTTP/2 or HTTP/1.1 on `io`, whose connect info (address, client certificates)
    /// is `info`; every request carries `shares` (what the I/O layers share with the calls:
    /// [`ClientFrameSize`], [`LentChunks`]). `drain`, for an `io` that keeps hyper's writes,
    /// writes them out after each poll of the connection.
    async fn serve_http<IO, Info>(
        mut self,
        io: IO,
        info: Info,
        shares: http::Extensions,
        drain: Option<Drain>,
    ) -> CloseReason
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Info: Clone + Send + Sync + 'static,
    {
        let fate = ConnectionFate::default();
        let first_call = Arc::new(Notify::new());
        let service = {
            let (shared, fate, first_call) =
                (self.shared.clone(), fate.clone(), first_call.clone());
            service_fn(move |request: Request<Incoming>| {
                first_call.notify_one();
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(info.clone());
                request.extensions_mut().insert(fate.clone());
                request.extensions_mut().extend(shares.clone());
                route(&shared, request)
            })
        };
        let shared = self.shared.clone();
        let connection = shared.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let setup = sleep_until(self.deadline);
        tokio::pin!(setup);
        let (mut useful, mut draining) = (false, false);
        let reason = loop {
            let served = std::future::poll_fn(|cx| {
                let polled = connection.as_mut().poll(cx);
                if let Some(drain) = &drain {
                    drain.after_poll(cx);
                }
                polled
            });
            tokio::select! {
                result = served => break match result {
                    Err(err) if is_keepalive_timeout(&*err) => CloseReason::Keepalive,
                    _ if draining => CloseReason::Shutdown,
                    _ => CloseReason::Client,
                },
                () = first_call.notified(), if !useful => useful = true,
                () = &mut setup, if !useful => break self.setup_deadline_passed(),
                // GOAWAY: calls in flight go on (subscribers end with UNAVAILABLE and their
                // cursor), no new ones start.
                _ = stopped(&mut self.shutdown), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = stopped(&mut self.force) => break CloseReason::ShutdownGrace,
            }
        };
        let _ = fate.0.set(reason);
        if reason == CloseReason::Keepalive {
            if let Some(left_out) = self.shared.log.admit() {
                info!(peer = %self.peer, similar_lines_left_out = left_out, "connection closed: keepalive ping unanswered (--keepalive-timeout)");
            }
        } else {
            debug!(peer = %self.peer, reason = reason.as_str(), "connection closed");
        }
        reason
    }

    fn setup_deadline_passed(&self) -> CloseReason {
        if let Some(left_out) = self.shared.log.admit() {
            info!(
                peer = %self.peer,
                setup_timeout_ms = self.shared.settings.setup_timeout.as_millis(),
                similar_lines_left_out = left_out,
                "connection closed: no call started within the setup deadline (--connection-setup-timeout)"
            );
        }
        CloseReason::SetupDeadline
    }
}

/// Whether hyper closed the connection because a keepalive ping went unanswered (its
/// error type for that is private; its message is stable).
fn is_keepalive_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if err.to_string().contains("keep-alive timed out") {
            return true;
        }
        source = err.source();
    }
    false
}
