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
//! - `settings.rs`: the listener's settings (keepalive, limits, deadlines).

pub mod accept;
pub mod coalesce;
pub mod fd_limit;
pub mod limits;
mod settings;

pub use self::settings::TransportSettings;

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::future::Either;
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
use tonic::{Status, body::Body, service::Routes, transport::server::Connected};
use tracing::{debug, info};

use self::{
    accept::Acceptor,
    coalesce::Coalescing,
    limits::{CloseReason, ConnectionTable},
};
use crate::{
    log_budget::LogBudget, security::tls::ReloadingTls, service::grpc_web, stopped, web,
    web::cors::Cors,
};

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
        if self.shared.settings.coalesce_writes {
            self.serve_http(Coalescing::new(io), info).await
        } else {
            self.serve_http(io, info).await
        }
    }

    /// Serves HTTP/2 or HTTP/1.1 on `io`, whose connect info (address, client certificates) is `info`.
    async fn serve_http<IO, Info>(mut self, io: IO, info: Info) -> CloseReason
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
            tokio::select! {
                result = connection.as_mut() => break match result {
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

/// A response still being worked out, boxed: for the HTTP endpoints and gRPC-Web, whose
/// responses get headers added once they are ready.
type Boxed = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// Sends a call to its service; sends a request that is not gRPC to the HTTP endpoints
/// when its path is theirs, and otherwise answers it HTTP 415 (as PROTOCOL-HTTP2.md asks,
/// so that no other HTTP client takes a gRPC error for a success); answers
/// RESOURCE_EXHAUSTED when a call's metadata is over the limit (only this call fails; the
/// connection goes on). gRPC-Web calls (HTTP/1.1 or HTTP/2) go to the same services
/// through [`grpc_web`]; they and the HTTP endpoints get the CORS headers of
/// `--cors-allowed-origin`, and CORS preflights are answered here.
fn route(
    shared: &Shared,
    request: http::Request<Body>,
) -> impl Future<Output = Result<http::Response<Body>, Infallible>> + Send + use<> {
    let cors = &shared.settings.cors;
    if Cors::is_preflight(&request) {
        return Either::Left(std::future::ready(Ok(cors.preflight(request.headers()))));
    }
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !grpc && shared.web.handles(request.uri().path()) {
        let cors_headers = cors.response_headers(request.headers());
        let answer = shared.web.call(request);
        return Either::Right(Either::Right(Box::pin(async move {
            answer
                .await
                .map(|response| with_headers(response, cors_headers))
        }) as Boxed));
    }
    let web_mode = match grpc_web::Mode::of(request.headers()) {
        None => None,
        Some(Ok(mode)) => Some(mode),
        Some(Err(text)) => {
            let response = plain_text(http::StatusCode::UNSUPPORTED_MEDIA_TYPE, text);
            let cors_headers = cors.response_headers(request.headers());
            return Either::Left(std::future::ready(Ok(with_headers(response, cors_headers))));
        }
    };
    if grpc && web_mode.is_none() && request.version() < http::Version::HTTP_2 {
        return Either::Left(std::future::ready(Ok(plain_text(
            http::StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "gRPC needs HTTP/2: use a gRPC client, or gRPC-Web (content-type application/grpc-web+proto) over HTTP/1.1 (or curl for the HTTP endpoints under /v1/streams)\n",
        ))));
    }
    if !grpc {
        return Either::Left(std::future::ready(Ok(plain_text(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this is a gRPC endpoint: send content-type application/grpc (see the relay's proto, or use grpcurl) or application/grpc-web+proto; the HTTP endpoints are under /v1/streams\n",
        ))));
    }
    let limit = shared.settings.max_header_list_bytes;
    let size = header_list_size(&request);
    let too_large = (size > limit).then(|| {
        Status::resource_exhausted(format!(
            "the call's metadata is {size} bytes; this relay accepts at most {limit} (--max-header-list-bytes); send less metadata"
        ))
    });
    let mut routes = shared.routes.clone();
    let Some(mode) = web_mode else {
        if let Some(status) = too_large {
            return Either::Left(std::future::ready(Ok(status.into_http())));
        }
        return Either::Right(Either::Left(async move {
            tonic::codegen::Service::call(&mut routes, request).await
        }));
    };
    let cors_headers = cors.response_headers(request.headers());
    Either::Right(Either::Right(Box::pin(async move {
        let response = match too_large {
            Some(status) => status.into_http(),
            None => {
                let request = grpc_web::into_grpc(request, mode);
                let Ok(response) = tonic::codegen::Service::call(&mut routes, request).await;
                response
            }
        };
        Ok(with_headers(
            grpc_web::from_grpc(response, mode),
            cors_headers,
        ))
    }) as Boxed))
}

/// `response` with `extra` headers added.
fn with_headers(
    mut response: http::Response<Body>,
    extra: http::HeaderMap,
) -> http::Response<Body> {
    let headers = response.headers_mut();
    let mut name = None;
    for (next, value) in extra {
        name = next.or(name);
        if let Some(name) = &name {
            headers.append(name.clone(), value);
        }
    }
    response
}

/// An answer of `status` with `text` for a client that is not gRPC.
fn plain_text(status: http::StatusCode, text: &'static str) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(
        bytes::Bytes::from_static(text.as_bytes()),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The header list size as HTTP/2 counts it (RFC 9113 §6.5.2: name, value and 32 bytes
/// per field), pseudo-headers included.
pub(crate) fn header_list_size<B>(request: &http::Request<B>) -> usize {
    let pseudo = [
        (":method", request.method().as_str().len()),
        (
            ":path",
            request
                .uri()
                .path_and_query()
                .map_or(0, |p| p.as_str().len()),
        ),
        (
            ":authority",
            request.uri().authority().map_or(0, |a| a.as_str().len()),
        ),
        (":scheme", request.uri().scheme_str().map_or(0, str::len)),
    ];
    let pseudo: usize = pseudo.iter().map(|(name, len)| name.len() + len + 32).sum();
    pseudo
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum::<usize>()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_list_size_counts_every_field_as_http2_does() {
        let request = http::Request::builder()
            .uri("http://relay:50051/kinesis_relay.v1.Relay/Subscribe")
            .header("x-big", "a".repeat(1000))
            .body(())
            .unwrap();
        let size = header_list_size(&request);
        assert_eq!(
            size,
            (":method".len() + 3 + 32)
                + (":path".len() + "/kinesis_relay.v1.Relay/Subscribe".len() + 32)
                + (":authority".len() + "relay:50051".len() + 32)
                + (":scheme".len() + 4 + 32)
                + ("x-big".len() + 1000 + 32)
        );
    }
}
