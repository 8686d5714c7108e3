//! Where each request of a connection goes: the gRPC services, gRPC-Web (translated to and
//! from gRPC), the HTTP endpoints or a CORS preflight answer; and what is answered without
//! a service: HTTP 415 and 505 for clients that do not speak gRPC as the relay serves it,
//! RESOURCE_EXHAUSTED for oversized metadata.

use std::{convert::Infallible, pin::Pin};

use futures::future::Either;
use tonic::{Status, body::Body};

use super::Shared;
use crate::{service::grpc_web, web::cors::Cors};

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
pub(super) fn route(
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
