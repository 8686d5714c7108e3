//! The HTTP control endpoint for fault injection, under a path no AWS operation uses.
//!
//! `POST /_emulator/faults` with one JSON object per call:
//! - `{"action": "end_all_subscriptions", "mode": "error_event" | "drop_connection"}`
//! - `{"action": "fail_next", "operation": "SubscribeToShard", "count": 2, "error_type": "LimitExceededException"}`
//! - `{"action": "set_latency", "millis": 200}`
//! - `{"action": "deregister_consumer", "stream": "demo", "consumer": "name-or-arn"}`
//! - `{"action": "silence_subscriptions", "silent": true}`
//! - `{"action": "age_records", "stream": "demo", "seconds": 90000}`: moves the arrival time of
//!   every record stored in the stream that many seconds back, then applies retention at
//!   once (records older than the retention period are dropped); 404 for an unknown stream.
//!
//! `GET /_emulator/health` answers `{"status": "ok"}`.

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::handle::EmulatorHandle;
use crate::protocol::{self, Body};
use crate::subscriptions::EndMode;

/// Every control path starts with this.
pub(crate) const PATH_PREFIX: &str = "/_emulator/";

/// One fault-injection request.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum FaultRequest {
    EndAllSubscriptions {
        mode: EndModeName,
    },
    FailNext {
        operation: String,
        count: u32,
        error_type: String,
    },
    SetLatency {
        millis: u64,
    },
    DeregisterConsumer {
        stream: String,
        consumer: String,
    },
    SilenceSubscriptions {
        silent: bool,
    },
    AgeRecords {
        stream: String,
        seconds: u64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum EndModeName {
    ErrorEvent,
    DropConnection,
}

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(protocol::full_body(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: String) -> Response<Body> {
    reply(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": message }),
    )
}

fn not_found(err: &KinesisError) -> Response<Body> {
    reply(
        StatusCode::NOT_FOUND,
        serde_json::json!({ "error": err.to_string() }),
    )
}

pub(crate) async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let path = request
        .uri()
        .path()
        .trim_start_matches(PATH_PREFIX)
        .to_owned();
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "health") => reply(StatusCode::OK, serde_json::json!({ "status": "ok" })),
        (Method::POST, "faults") => {
            let body = Limited::new(request.into_body(), 64 * 1024).collect();
            let body = match tokio::time::timeout(Duration::from_secs(10), body).await {
                Ok(Ok(body)) => body.to_bytes(),
                _ => return bad_request("cannot read the request body".into()),
            };
            match serde_json::from_slice::<FaultRequest>(&body) {
                Ok(fault) => apply(EmulatorHandle::new(shared.clone()), fault),
                Err(err) => bad_request(format!("invalid fault request: {err}")),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "unknown control path; use POST /_emulator/faults" }),
        ),
    }
}

fn apply(handle: EmulatorHandle, fault: FaultRequest) -> Response<Body> {
    match fault {
        FaultRequest::EndAllSubscriptions { mode } => handle.end_all_subscriptions(match mode {
            EndModeName::ErrorEvent => EndMode::ErrorEvent,
            EndModeName::DropConnection => EndMode::DropConnection,
        }),
        FaultRequest::FailNext {
            operation,
            count,
            error_type,
        } => handle.fail_next(&operation, count, &error_type),
        FaultRequest::SetLatency { millis } => handle.set_latency(Duration::from_millis(millis)),
        FaultRequest::DeregisterConsumer { stream, consumer } => {
            if let Err(err) = handle.deregister_consumer(&consumer, &stream) {
                return not_found(&err);
            }
        }
        FaultRequest::SilenceSubscriptions { silent } => handle.silence_subscriptions(silent),
        FaultRequest::AgeRecords { stream, seconds } => {
            if let Err(err) = handle.age_records(&stream, Duration::from_secs(seconds)) {
                return not_found(&err);
            }
        }
    }
    reply(StatusCode::OK, serde_json::json!({ "ok": true }))
}
