//! The admin listener (`--metrics-listen`): `/metrics`, `/live` and `/ready` over HTTP/1.1,
//! for scrapers and for probes that cannot speak gRPC health.

use std::{net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, info};

use crate::connections::{accept::Acceptor, limits::ConnectionStats};

/// Admin connections served at once; more are closed at once (a scraper needs one).
const MAX_ADMIN_CONNECTIONS: usize = 16;
/// Longest an admin connection is kept.
const ADMIN_CONNECTION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `GET /metrics` (OpenMetrics text), `GET /live` and `GET /ready` (200 or 503, for
/// probes that cannot speak gRPC health, e.g. when the gRPC port requires TLS) on `listener`
/// until shutdown. Never fails: accept errors are retried, and at most
/// [`MAX_ADMIN_CONNECTIONS`] connections are served at once, each for at most 30 s, so this
/// listener can neither stop the relay nor use up its descriptors.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    ready: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let registry = Arc::new(registry);
    info!(addr = %listener.local_addr()?, "metrics listening");
    let mut acceptor = Acceptor::new(listener, "metrics", Arc::new(ConnectionStats::default()));
    // The connections' tasks: reaped as they end (so the set counts the open ones), aborted
    // at shutdown (a scrape is not worth waiting for).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = crate::stopped(&mut shutdown) => {
                connections.abort_all();
                return Ok(());
            }
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_ADMIN_CONNECTIONS {
            debug!(%peer, "admin connection refused: {MAX_ADMIN_CONNECTIONS} already open");
            continue;
        }
        let registry = registry.clone();
        let ready = ready.clone();
        connections.spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                let ready = *ready.borrow();
                async move { Ok::<_, std::convert::Infallible>(respond(&request, &registry, ready)) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(err) = tokio::time::timeout(ADMIN_CONNECTION_DEADLINE, connection).await {
                debug!(%peer, cause = %err, "metrics connection timed out");
            }
        });
    }
}

fn respond(
    request: &Request<hyper::body::Incoming>,
    registry: &Registry,
    ready: bool,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(text.as_bytes())))
            .expect("static response")
    };
    match request.uri().path() {
        "/metrics" => {}
        "/live" => return plain(StatusCode::OK, "live\n"),
        "/ready" if ready => return plain(StatusCode::OK, "ready\n"),
        "/ready" => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: a stream has no live subscription\n",
            );
        }
        _ => {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /live or /ready\n",
            );
        }
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => Response::builder()
            .header(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(Full::new(Bytes::from(text)))
            .expect("valid response"),
        Err(_) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from_static(b"encoding metrics failed\n")))
            .expect("static response"),
    }
}
