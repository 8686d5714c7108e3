//! The gRPC side: the `Relay` service, health and reflection on one listener.
//!
//! # Layout
//! - `relay.rs`: request handling and each subscriber's response stream.
//! - `validate.rs`: request field checks.
//! - `encode.rs`: response bytes from pre-encoded records.
//! - `subscribe_call.rs`: Subscribe over HTTP/2, writing those bytes as they are.

pub mod encode;
pub mod relay;
pub mod subscribe_call;
pub mod validate;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use std::sync::Arc;

use kinesis_relay_api::v1::relay_server::RelayServer;
use tokio::{net::TcpListener, sync::watch};
use tonic::{
    body::Body,
    server::NamedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::pb::health_server::{Health, HealthServer};

pub use self::relay::{Access, RelayService, ServeSettings};

use crate::security::tls::{self, ReloadingTls};

const SUBSCRIBE_PATH: &str = "/kinesis_relay.v1.Relay/Subscribe";

/// The `Relay` service as mounted: Subscribe goes through [`subscribe_call`], the unary
/// methods through the generated server.
#[derive(Clone)]
pub struct RelayGrpc {
    /// Handles Subscribe.
    service: RelayService,
    /// Handles everything else.
    generated: RelayServer<RelayService>,
    /// Largest request accepted.
    max_request_bytes: usize,
}

impl RelayGrpc {
    /// Wraps a service.
    pub fn new(service: RelayService, max_request_bytes: usize) -> Self {
        Self {
            generated: RelayServer::new(service.clone())
                .max_decoding_message_size(max_request_bytes),
            service,
            max_request_bytes,
        }
    }
}

impl NamedService for RelayGrpc {
    const NAME: &'static str = "kinesis_relay.v1.Relay";
}

impl tonic::codegen::Service<http::Request<Body>> for RelayGrpc {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == SUBSCRIBE_PATH {
            let service = self.service.clone();
            let max_request_bytes = self.max_request_bytes;
            Box::pin(async move {
                Ok(subscribe_call::subscribe(service, request, max_request_bytes).await)
            })
        } else {
            self.generated.call(request)
        }
    }
}

/// Transport settings of the gRPC listener.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Interval of HTTP/2 keepalive pings.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Concurrent streams (calls) per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Largest request message accepted.
    pub max_request_bytes: usize,
    /// Streams a client may reset before they are accepted (h2's rapid-reset protection).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset for protocol errors before it closes the connection
    /// (h2's flood protection; tonic leaves it unset).
    pub max_local_error_reset_streams: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 100,
            max_request_bytes: 1 << 20,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
}

/// The socket the server accepts on.
#[derive(Debug)]
pub enum Listener {
    /// Plaintext HTTP/2.
    Plain(TcpListener),
    /// TLS, with the configuration reloaded on change.
    Tls(TcpListener, Arc<ReloadingTls>),
}

/// Serves `service`, health and reflection on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: Listener,
    service: RelayService,
    transport: TransportSettings,
    health_service: HealthServer<impl Health>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kinesis_relay_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kinesis_relay_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = reflection.build_v1alpha()?;
    let router = Server::builder()
        .http2_keepalive_interval(Some(transport.keepalive_interval))
        .http2_keepalive_timeout(Some(transport.keepalive_timeout))
        .max_concurrent_streams(transport.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(transport.max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(transport.max_local_error_reset_streams))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RelayGrpc::new(service, transport.max_request_bytes));
    let mut stop = shutdown.clone();
    let stopped = async move { crate::stopped(&mut stop).await };
    match listener {
        Listener::Plain(listener) => {
            // Nagle off: a response must not wait for the subscriber's delayed ACK (tonic
            // sets it only on listeners it binds itself).
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, stopped)
                .await?
        }
        Listener::Tls(listener, tls) => {
            let incoming = tls::incoming(listener, tls, shutdown.clone());
            router
                .serve_with_incoming_shutdown(incoming, stopped)
                .await?
        }
    }
    Ok(())
}
