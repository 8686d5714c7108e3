//! The gRPC side: the `Relay` service, health and reflection on one listener.
//!
//! # Layout
//! - `relay.rs`: request handling and the per-subscriber task.
//! - `validate.rs`: request field checks.
//! - `encode.rs`: response bytes from pre-encoded records.
//! - `codec.rs`: the tonic codec that writes those bytes as they are.
//! - `status.rs`: statuses that carry a resume cursor.

pub mod codec;
pub mod encode;
pub mod relay;
pub mod status;
pub mod validate;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use kinesis_relay_api::v1::{self, relay_server::RelayServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    body::Body,
    server::{NamedService, ServerStreamingService},
    transport::Server,
};

pub use self::relay::{RelayService, ServeSettings};
use self::{codec::SubscribeCodec, encode::EncodedResponse, relay::EncodedStream};

const SUBSCRIBE_PATH: &str = "/kinesis_relay.v1.Relay/Subscribe";

/// The `Relay` service as mounted: Subscribe goes through the encode-once codec, the unary
/// methods through the generated server.
#[derive(Clone)]
pub struct RelayGrpc {
    /// Handles Subscribe.
    service: RelayService,
    /// Handles everything else.
    generated: RelayServer<RelayService>,
}

impl RelayGrpc {
    /// Wraps a service.
    pub fn new(service: RelayService) -> Self {
        Self {
            generated: RelayServer::new(service.clone()),
            service,
        }
    }
}

impl NamedService for RelayGrpc {
    const NAME: &'static str = "kinesis_relay.v1.Relay";
}

struct SubscribeMethod(RelayService);

impl ServerStreamingService<v1::SubscribeRequest> for SubscribeMethod {
    type Response = EncodedResponse;
    type ResponseStream = EncodedStream;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<EncodedStream>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<v1::SubscribeRequest>) -> Self::Future {
        let result = self
            .0
            .subscribe_encoded(request.into_inner())
            .map(tonic::Response::new);
        Box::pin(async move { result })
    }
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
            let method = SubscribeMethod(self.service.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(SubscribeCodec);
                Ok(grpc.server_streaming(method, request).await)
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
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `service`, health and reflection on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: RelayService,
    transport: TransportSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RelayServer<RelayService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kinesis_relay_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kinesis_relay_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = reflection.build_v1alpha()?;
    Server::builder()
        .http2_keepalive_interval(Some(transport.keepalive_interval))
        .http2_keepalive_timeout(Some(transport.keepalive_timeout))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RelayGrpc::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
