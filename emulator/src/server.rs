//! HTTP plumbing: the accept loop, TLS, serving HTTP/1.1 and HTTP/2 on each connection,
//! and routing a request to the control endpoint or to an AWS operation.

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio_rustls::TlsAcceptor;

use crate::control;
use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::ops;
use crate::protocol::{self, Body};

/// The largest request body accepted: a 5 MiB PutRecords in base64 with its JSON.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// How long a client may take to send its request body.
const REQUEST_BODY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// How long connections may take at shutdown to finish the responses in flight; within the
/// 10 s that [`crate::Emulator::shutdown`] waits.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often retention trims idle shards (writes trim their own shard as well).
const RETENTION_SWEEP: Duration = Duration::from_secs(1);

/// What the server knows about one connection.
#[derive(Debug, Default)]
pub(crate) struct ConnectionState {
    /// Set once the connection carries a subscription, so that the drop-connection fault
    /// closes it and leaves the others alone.
    carries_subscription: AtomicBool,
}

impl ConnectionState {
    pub(crate) fn mark_subscription(&self) {
        self.carries_subscription.store(true, Ordering::Relaxed);
    }

    fn carries_subscription(&self) -> bool {
        self.carries_subscription.load(Ordering::Relaxed)
    }
}

/// Accepts connections until shutdown, serving each in its own task.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(cause = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        match &tls {
            None => shared.spawn(serve_connection(stream, conn_shared)),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                shared.spawn(async move {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => serve_connection(stream, conn_shared).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, cause = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Trims records past retention from idle shards once a second.
pub(crate) async fn retention_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(RETENTION_SWEEP);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = tick.tick() => shared.store.trim_all(),
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (prior knowledge or ALPN) on one connection until it closes,
/// the emulator shuts down, or the drop-connection fault hits it.
async fn serve_connection<IO>(io: IO, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnectionState::default());
    let service = {
        let shared = shared.clone();
        let state = state.clone();
        service_fn(move |request| {
            let shared = shared.clone();
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(shared, state, request).await) }
        })
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut shutdown = shared.shutdown.clone();
    let mut drops = shared.faults.drop_receiver();
    let mut drops_open = true;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                log_end(result);
                return;
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
            dropped = drops.recv(), if drops_open => match dropped {
                // A lagged receiver missed drop requests, so at least one is due: dropping
                // is what was asked for either way.
                Ok(()) | Err(RecvError::Lagged(_)) => {
                    if state.carries_subscription() {
                        // Deliberately abrupt: the fault imitates a broken connection, so an
                        // HTTP/1.1 body is cut without its last chunk.
                        tracing::debug!("dropping a subscription connection (fault injection)");
                        return;
                    }
                }
                Err(RecvError::Closed) => drops_open = false,
            },
        }
    }
    // Shutdown. Dropping the connection here would cut the responses in flight: a
    // SubscribeToShard body over HTTP/1.1 would end without its terminating chunk, which
    // clients report as "unexpected EOF during chunk size line". Subscriptions end their
    // event streams on the same signal, so let hyper finish them (last chunk, or END_STREAM
    // and GOAWAY on HTTP/2) and close idle keep-alive connections; cut only what is still
    // running after the grace period.
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(SHUTDOWN_GRACE, connection).await {
        Ok(result) => log_end(result),
        Err(_) => tracing::debug!("connection still busy at shutdown; closing it"),
    }
}

fn log_end<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(err) = result {
        tracing::debug!(cause = %err, "connection ended with an error");
    }
}

/// Routes a request: the control endpoint, or the AWS operation named by `X-Amz-Target`.
async fn route(
    shared: Arc<Shared>,
    state: Arc<ConnectionState>,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.uri().path().starts_with(control::PATH_PREFIX) {
        return control::handle(&shared, request).await;
    }
    if request.version() == http::Version::HTTP_2 {
        shared.faults.count_http2_request();
    }
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.strip_prefix(protocol::TARGET_PREFIX))
        .map(str::to_owned);
    let Some(operation) = operation else {
        return protocol::error_response(&KinesisError::UnknownOperation(
            "missing or unknown X-Amz-Target header".into(),
        ));
    };
    let body = Limited::new(request.into_body(), MAX_REQUEST_BYTES).collect();
    let body = match tokio::time::timeout(REQUEST_BODY_DEADLINE, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) => {
            return protocol::error_response(&KinesisError::Serialization(format!(
                "cannot read the request body: {err}"
            )));
        }
        Err(_) => {
            return protocol::error_response(&KinesisError::Serialization(
                "the request body did not arrive in time".into(),
            ));
        }
    };
    let injected = shared.faults.on_request(&operation);
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(err) = injected {
        tracing::debug!(%operation, error = err.error_type(), "injected fault");
        return protocol::error_response(&err);
    }
    match ops::call(&shared, &state, &operation, &body) {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(%operation, error = err.error_type(), message = %err, "request failed");
            protocol::error_response(&err)
        }
    }
}
