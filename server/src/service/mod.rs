//! The gRPC side: the `Relay` service, health and reflection on one listener (which also
//! serves the HTTP endpoints of [`crate::web`]).
//!
//! # Layout
//! - `relay.rs`: request handling.
//! - `feed.rs`: each subscriber's response stream.
//! - `validate.rs`: request field checks.
//! - `subscribe_call.rs`: Subscribe over HTTP/2, writing the bytes of `crate::wire` as they
//!   are.
//! - `stream_body.rs`: the server-streaming response body for pre-encoded messages.
//! - `compress/`: compressed Subscribe responses, each block compressed once and shared.
//! - `request.rs`: request messages: size limit, compression, one message for Subscribe.
//! - `grpc_web/`: gRPC-Web calls translated to and from native ones (`text.rs`: base64
//!   request bodies).

pub mod compress;
mod feed;
pub mod grpc_web;
pub mod relay;
pub mod request;
pub mod stream_body;
pub mod subscribe_call;
pub mod validate;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use std::sync::Arc;

use kinesis_relay_api::v1::relay_server::RelayServer;
use tokio::sync::watch;
use tonic::{body::Body, codec::CompressionEncoding, server::NamedService, service::Routes};
use tonic_health::pb::health_server::{Health, HealthServer};

pub use self::relay::{Access, RelayService, ServeSettings};
pub use crate::connections::{Listener, TransportSettings};

use crate::connections::limits::ConnectionTable;

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
    /// Compresses Subscribe responses for clients that accept it; `None` when response
    /// compression is off.
    compression: Option<Arc<compress::ResponseCompression>>,
}

impl RelayGrpc {
    /// Wraps a service. Requests compressed with gzip or zstd are always accepted;
    /// `compress_responses` lets responses be compressed when the client accepts it, those
    /// of Subscribe at `compression_level` (1 to 9).
    pub fn new(
        service: RelayService,
        max_request_bytes: usize,
        compress_responses: bool,
        compression_level: u32,
    ) -> Self {
        let mut generated = RelayServer::new(service.clone())
            .max_decoding_message_size(max_request_bytes)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        if compress_responses {
            generated = generated
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd);
        }
        Self {
            generated,
            service,
            max_request_bytes,
            compression: compress_responses
                .then(|| Arc::new(compress::ResponseCompression::new(compression_level))),
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
            let compression = self.compression.clone();
            Box::pin(async move {
                Ok(
                    subscribe_call::subscribe(service, request, max_request_bytes, compression)
                        .await,
                )
            })
        } else {
            let max = self.max_request_bytes;
            self.generated
                .call(request.map(|body| Body::new(request::LimitedBody::new(body, max))))
        }
    }
}

/// Serves `service`, health and reflection on `listener` until `shutdown` becomes true,
/// with the connections bounded as `transport` says (see [`crate::connections`]).
pub async fn serve(
    listener: Listener,
    service: RelayService,
    transport: TransportSettings,
    connections: Arc<ConnectionTable>,
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
    let health_service = health_service
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);
    let web = crate::web::Endpoints::new(
        service.clone(),
        transport.max_header_list_bytes,
        transport.console,
    );
    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RelayGrpc::new(
            service,
            transport.max_request_bytes,
            transport.compress_responses,
            transport.compression_level,
        ));
    crate::connections::serve(listener, routes, web, transport, connections, shutdown).await
}
