//! Statuses that end a subscription early and carry the cursor to resume from.

use bytes::Bytes;
use kinesis_relay_api::v1;
use prost::Message;
use tonic::{Code, Status, metadata::MetadataMap};

/// Trailer that carries the resume cursor in plain text.
pub const CURSOR_TRAILER: &str = "kinesis-relay-cursor";

/// `google.rpc.Status`, the standard payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// A status whose details (a `kinesis_relay.v1.ResumeInfo`) and trailer carry `cursor`.
pub fn with_cursor(code: Code, message: String, cursor: &str) -> Status {
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/kinesis_relay.v1.ResumeInfo".to_owned(),
            value: v1::ResumeInfo {
                cursor: cursor.to_owned(),
            }
            .encode_to_vec(),
        }],
    };
    let mut metadata = MetadataMap::new();
    // Cursors are base64url, always valid ASCII metadata.
    if let Ok(value) = cursor.parse() {
        metadata.insert(CURSOR_TRAILER, value);
    }
    Status::with_details_and_metadata(
        code,
        message,
        Bytes::from(details.encode_to_vec()),
        metadata,
    )
}

/// The cursor carried by a status made by [`with_cursor`], for clients and tests.
pub fn cursor_of(status: &Status) -> Option<String> {
    let details = RpcStatus::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|any| any.type_url.ends_with("kinesis_relay.v1.ResumeInfo"))
        .and_then(|any| v1::ResumeInfo::decode(any.value.as_slice()).ok())
        .map(|info| info.cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_details_and_trailer() {
        let status = with_cursor(Code::ResourceExhausted, "too slow".into(), "abc-_1");
        assert_eq!(cursor_of(&status).as_deref(), Some("abc-_1"));
        assert_eq!(status.metadata().get(CURSOR_TRAILER).unwrap(), "abc-_1");
    }
}
