//! HTTP endpoints for `curl`, scripts and browsers, on the gRPC listener beside gRPC:
//! `GET /v1/streams` and `GET /v1/streams/{stream}` answer what ListStreams and
//! DescribeStream return, as JSON; `GET /v1/streams/{stream}/records` is Subscribe as
//! Server-Sent Events. Every request goes through the gRPC service itself (same tokens,
//! validation, limits, lag policy and heartbeats); this module only translates.
//!
//! # Layout
//! - `mod.rs`: routing by method and path; statuses as HTTP codes with a JSON body.
//! - `query.rs`: query parameters and `Last-Event-ID` into a `SubscribeRequest`.
//! - `json.rs`: the JSON form of the contract's messages.
//! - `sse.rs`: Subscribe's responses as an event stream, one event per record.
//! - `console.rs`: the web console's files (`console/`), built into the binary.
//! - `cors.rs`: the origins whose pages may call these endpoints and gRPC-Web.

pub mod console;
pub mod cors;
mod json;
mod query;
mod sse;

use std::convert::Infallible;

use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use kinesis_relay_api::{resume::cursor_of, v1, v1::relay_server::Relay};
use tokio_stream::StreamExt;
use tonic::{Code, Status, body::Body};

use crate::service::RelayService;

/// Every path under this prefix is served here (unless the request says it is gRPC).
const PREFIX: &str = "/v1/streams";

/// Whether a request for `path` that is not gRPC is one of the JSON and SSE endpoints.
pub fn handles(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The endpoints, over the gRPC service.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Answers every request, as it answers gRPC calls.
    service: RelayService,
    /// Largest header list a request may carry (`--max-header-list-bytes`, as for gRPC).
    max_header_list_bytes: usize,
    /// Whether the web console is served (`--console`).
    console: bool,
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    List,
    /// DescribeStream of this stream.
    Describe(String),
    /// Subscribe to this stream.
    Records(String),
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix(PREFIX)?;
        if rest.is_empty() || rest == "/" {
            return Some(Self::List);
        }
        let rest = rest.strip_prefix('/')?;
        match rest.split_once('/') {
            None => Some(Self::Describe(rest.to_owned())),
            Some((stream, "records")) if !stream.is_empty() => {
                Some(Self::Records(stream.to_owned()))
            }
            Some(_) => None,
        }
    }
}

impl Endpoints {
    /// Endpoints answering through `service`, with the web console when `console`.
    pub fn new(service: RelayService, max_header_list_bytes: usize, console: bool) -> Self {
        Self {
            service,
            max_header_list_bytes,
            console,
        }
    }

    /// Whether a request for `path` that is not gRPC is answered here: the JSON and SSE
    /// endpoints, and the console's pages when it is on.
    pub fn handles(&self, path: &str) -> bool {
        handles(path) || (self.console && console::handles(path))
    }

    /// Answers `request`, whose path [`handles`] accepted.
    pub fn call(
        &self,
        request: http::Request<Body>,
    ) -> impl Future<Output = Result<http::Response<Body>, Infallible>> + Send + use<> {
        let endpoints = self.clone();
        async move {
            Ok(endpoints
                .respond(request)
                .await
                .unwrap_or_else(ApiError::into_response))
        }
    }

    async fn respond(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, ApiError> {
        let size = crate::connections::header_list_size(&request);
        if size > self.max_header_list_bytes {
            return Err(ApiError {
                http: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                code: "RESOURCE_EXHAUSTED",
                message: format!(
                    "the request's headers and path are {size} bytes; this relay accepts at most {} (--max-header-list-bytes); send fewer or shorter query parameters",
                    self.max_header_list_bytes
                ),
                cursor: None,
            });
        }
        let (parts, _body) = request.into_parts();
        if self.console && console::handles(parts.uri.path()) {
            return console::serve(&parts.method, parts.uri.path())
                .ok_or_else(ApiError::not_an_endpoint);
        }
        let Some(route) = Route::parse(parts.uri.path()) else {
            return Err(ApiError::not_an_endpoint());
        };
        if parts.method != Method::GET {
            return Err(ApiError {
                http: StatusCode::METHOD_NOT_ALLOWED,
                code: "UNIMPLEMENTED",
                message: format!(
                    "{} is not supported here: these endpoints answer GET only",
                    parts.method
                ),
                cursor: None,
            });
        }
        match route {
            Route::List => {
                let request = tonic_request(parts, v1::ListStreamsRequest {});
                let response = self.service.list_streams(request).await?;
                Ok(json_response(&json::list_streams(response.get_ref())))
            }
            Route::Describe(stream) => {
                let request = tonic_request(parts, v1::DescribeStreamRequest { stream });
                let response = self.service.describe_stream(request).await?;
                Ok(json_response(&json::describe_stream(response.get_ref())))
            }
            Route::Records(stream) => self.records(parts, stream),
        }
    }

    /// Subscribes and answers with the event stream, or with the status that refused it.
    fn records(
        &self,
        parts: http::request::Parts,
        stream: String,
    ) -> Result<http::Response<Body>, ApiError> {
        let last_event_id = parts
            .headers
            .get("last-event-id")
            .map(|value| value.to_str().unwrap_or("\u{fffd}").trim())
            .filter(|value| !value.is_empty())
            .map(str::to_owned);
        let from = last_event_id.is_some();
        let request = query::subscribe_request(stream, parts.uri.query(), last_event_id)?;
        let mut responses = self
            .service
            .subscribe_encoded(tonic_request(parts, request))
            .map_err(|status| query::in_http_terms(status, from))?;
        // A subscription refused at once (a position out of range, an unknown shard) gets
        // its HTTP code; one still waiting for its first response gets 200 now.
        let first = match responses.next().now_or_never() {
            None => None,
            Some(Some(Ok(response))) => Some(response),
            Some(Some(Err(status))) => return Err(query::in_http_terms(status, from).into()),
            Some(None) => {
                return Err(Status::unavailable(
                    "the relay is shutting down; retry on another relay",
                )
                .into());
            }
        };
        Ok(sse::response(first, responses))
    }
}

/// The request the gRPC service would get: the same headers (`authorization`) and
/// connection details (client address and certificate, for tokens, mTLS and limits).
fn tonic_request<T>(parts: http::request::Parts, message: T) -> tonic::Request<T> {
    tonic::Request::from_http(http::Request::from_parts(parts, message))
}

/// A request refused, as an HTTP code and a JSON body saying what to fix.
#[derive(Debug)]
pub(crate) struct ApiError {
    http: StatusCode,
    /// The gRPC code's name, e.g. `NOT_FOUND`.
    code: &'static str,
    message: String,
    /// Where to resume, for a status that carries a cursor.
    cursor: Option<String>,
}

impl ApiError {
    fn not_an_endpoint() -> Self {
        Self {
            http: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: "no such endpoint: these are GET /v1/streams, GET /v1/streams/{stream} and GET /v1/streams/{stream}/records".to_owned(),
            cursor: None,
        }
    }

    fn into_response(self) -> http::Response<Body> {
        let mut response = json_response(&json::error(
            self.code,
            &self.message,
            self.cursor.as_deref(),
        ));
        *response.status_mut() = self.http;
        if self.http == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kinesis-relay\""),
            );
        }
        if self.http == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        response
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let (http, code) = http_status(status.code());
        let mut message = status.message().to_owned();
        if status.code() == Code::Unauthenticated {
            // The service speaks of gRPC metadata.
            message.push_str(" (over HTTP: the header `Authorization: Bearer <token>`)");
        }
        Self {
            http,
            code,
            cursor: cursor_of(&status),
            message,
        }
    }
}

/// The HTTP code of a gRPC status, and the gRPC code's name.
fn http_status(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "OK"),
        Code::Cancelled => (StatusCode::INTERNAL_SERVER_ERROR, "CANCELLED"),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
        Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "FAILED_PRECONDITION"),
        Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
        Code::OutOfRange => (StatusCode::RANGE_NOT_SATISFIABLE, "OUT_OF_RANGE"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "DATA_LOSS"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    }
}

/// A 200 answer holding `value` as JSON.
fn json_response(value: &serde_json::Value) -> http::Response<Body> {
    let mut text = value.to_string().into_bytes();
    text.push(b'\n');
    let mut response = http::Response::new(Body::new(Full::new(Bytes::from(text))));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoints_and_nothing_else() {
        assert_eq!(Route::parse("/v1/streams"), Some(Route::List));
        assert_eq!(Route::parse("/v1/streams/"), Some(Route::List));
        assert_eq!(
            Route::parse("/v1/streams/demo"),
            Some(Route::Describe("demo".into()))
        );
        assert_eq!(
            Route::parse("/v1/streams/demo/records"),
            Some(Route::Records("demo".into()))
        );
        for other in [
            "/v1/streams/demo/",
            "/v1/streams//records",
            "/v1/streams/demo/records/x",
            "/v1/streams/demo/shards",
            "/v1/streamsx",
        ] {
            assert_eq!(Route::parse(other), None, "{other}");
        }
        assert!(handles("/v1/streams"));
        assert!(handles("/v1/streams/demo/whatever"));
        assert!(!handles("/v1/streamsx"));
        assert!(!handles("/kinesis_relay.v1.Relay/Subscribe"));
    }

    #[test]
    fn statuses_map_to_the_http_codes_the_docs_promise() {
        for (code, http) in [
            (Code::NotFound, 404),
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::OutOfRange, 416),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
        ] {
            assert_eq!(http_status(code).0.as_u16(), http, "{code:?}");
        }
        let error = ApiError::from(kinesis_relay_api::resume::with_cursor(
            Code::ResourceExhausted,
            "too slow".into(),
            "abc",
        ));
        assert_eq!(error.code, "RESOURCE_EXHAUSTED");
        assert_eq!(error.cursor.as_deref(), Some("abc"));
    }
}
