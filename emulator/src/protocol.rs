//! The AWS JSON 1.1 protocol: targets, ARNs, timestamps, and response bodies.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::KinesisError;

/// The prefix of every Kinesis `X-Amz-Target` header value.
pub(crate) const TARGET_PREFIX: &str = "Kinesis_20131202.";
/// The content type of requests and responses.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The region and account every ARN is built with.
pub(crate) const ARN_PREFIX: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/";

/// The error type of response bodies (event streams can fail mid-way).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type of every handler.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A 200 response with a JSON 1.1 body.
pub(crate) fn json_response(value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes_response(bytes),
        Err(err) => error_response(&KinesisError::InternalFailure(err.to_string())),
    }
}

/// A 200 response with a JSON 1.1 body already written.
pub(crate) fn json_bytes_response(bytes: Vec<u8>) -> Response<Body> {
    with_json_headers(StatusCode::OK, bytes)
}

/// The response AWS sends for an error.
pub(crate) fn error_response(err: &KinesisError) -> Response<Body> {
    let bytes = serde_json::to_vec(&err.to_json()).unwrap_or_default();
    let mut response = with_json_headers(err.status(), bytes);
    if let Ok(value) = HeaderValue::from_str(err.error_type()) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

fn with_json_headers(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full_body(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-amzn-RequestId", id);
    }
    response
}

/// Parses a request body into an operation's input shape.
pub(crate) fn parse_input<T: DeserializeOwned>(body: &[u8]) -> Result<T, KinesisError> {
    let body = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|err| {
        if err.is_syntax() || err.is_eof() {
            KinesisError::Serialization(format!("malformed JSON body: {err}"))
        } else {
            KinesisError::Validation(format!("invalid request: {err}"))
        }
    })
}

/// The ARN of a stream.
pub(crate) fn stream_arn(name: &str) -> String {
    format!("{ARN_PREFIX}{name}")
}

/// The stream name inside a stream ARN of any region and account.
pub(crate) fn stream_name_from_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service, _region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "kinesis" {
        return None;
    }
    let name = resource.strip_prefix("stream/")?;
    let name = name.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// Picks the stream a request names, by `StreamName` or `StreamARN`.
pub(crate) fn stream_name<'a>(
    name: Option<&'a str>,
    arn: Option<&'a str>,
) -> Result<&'a str, KinesisError> {
    match (name, arn) {
        (Some(name), None) => Ok(name),
        (None, Some(arn)) => stream_name_from_arn(arn)
            .ok_or_else(|| KinesisError::InvalidArgument(format!("invalid stream ARN {arn}"))),
        (Some(name), Some(arn)) => match stream_name_from_arn(arn) {
            Some(from_arn) if from_arn == name => Ok(name),
            _ => Err(KinesisError::InvalidArgument(
                "StreamName and StreamARN name different streams".into(),
            )),
        },
        (None, None) => Err(KinesisError::InvalidArgument(
            "either StreamName or StreamARN is required".into(),
        )),
    }
}

/// Whether a stream or consumer name is one AWS accepts: 1-128 of `[a-zA-Z0-9_.-]`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Seconds since the epoch, as AWS JSON writes timestamps.
pub(crate) fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// `time` cut to whole milliseconds since the epoch, the precision of AWS timestamps.
pub(crate) fn whole_millis(time: SystemTime) -> SystemTime {
    let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// A timestamp from a request: epoch seconds as a number, or RFC 3339 text.
pub(crate) fn parse_timestamp(value: &serde_json::Value) -> Result<SystemTime, KinesisError> {
    let invalid = || KinesisError::InvalidArgument(format!("invalid timestamp {value}"));
    match value {
        serde_json::Value::Number(n) => {
            let secs = n.as_f64().ok_or_else(invalid)?;
            if !secs.is_finite() || !(0.0..=1e12).contains(&secs) {
                return Err(invalid());
            }
            // An f64 holds today's epoch seconds only to about 0.2 µs: rounding to whole
            // microseconds gives back exactly the milliseconds a client sent (e.g. an
            // ApproximateArrivalTimestamp), where the raw value may land just past it.
            let micros = (secs * 1e6).round() as u64;
            Ok(UNIX_EPOCH + Duration::from_micros(micros))
        }
        serde_json::Value::String(text) => {
            if let Ok(secs) = text.parse::<f64>() {
                return parse_timestamp(&serde_json::json!(secs));
            }
            let parsed =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| invalid())?;
            Ok(SystemTime::from(parsed))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_streams() {
        assert_eq!(stream_name_from_arn(&stream_arn("demo")), Some("demo"));
        assert_eq!(
            stream_name_from_arn("arn:aws:kinesis:eu-west-1:123:stream/x/consumer/c:1"),
            Some("x")
        );
        assert_eq!(stream_name_from_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(stream_name_from_arn("nonsense"), None);
    }

    #[test]
    fn timestamps_parse_as_numbers_or_text() {
        let t = parse_timestamp(&serde_json::json!(1_700_000_000.5)).unwrap();
        assert_eq!(epoch_seconds(t), 1_700_000_000.5);
        let millis = parse_timestamp(&serde_json::json!(1_700_000_000.123)).unwrap();
        assert_eq!(
            millis.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_700_000_000_123)
        );
        assert!(parse_timestamp(&serde_json::json!("2024-01-01T00:00:00Z")).is_ok());
        assert!(parse_timestamp(&serde_json::json!(-1)).is_err());
        assert!(parse_timestamp(&serde_json::json!([])).is_err());
    }
}
