//! Statuses that end a subscription early (RESOURCE_EXHAUSTED for a slow subscriber,
//! UNAVAILABLE at shutdown) and carry the cursor to resume from: in the
//! `kinesis-relay-cursor` trailer and as a `kinesis_relay.v1.ResumeInfo` in the standard
//! `google.rpc.Status` details. The relay writes them; clients read them.

use bytes::Bytes;

use crate::v1;
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

/// The resume cursor a status carries: the `kinesis-relay-cursor` trailer, else a
/// `ResumeInfo` in the status details.
pub fn cursor_of(status: &Status) -> Option<String> {
    if let Some(cursor) = status
        .metadata()
        .get(CURSOR_TRAILER)
        .and_then(|value| value.to_str().ok())
        .filter(|text| !text.is_empty())
    {
        return Some(cursor.to_owned());
    }
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
        // Without the trailer (a proxy may drop it), the details still carry it.
        let details_only =
            Status::with_details(Code::Unavailable, "bye", status.details().to_vec().into());
        assert_eq!(cursor_of(&details_only).as_deref(), Some("abc-_1"));
    }
}
