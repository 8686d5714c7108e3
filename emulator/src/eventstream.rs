//! AWS event-stream frames, the wire format of `SubscribeToShard` responses.
//!
//! Each frame is: total length, headers length, prelude CRC32, headers, payload, message
//! CRC32. The encoding is `aws-smithy-eventstream`'s, the same code the SDKs decode with.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

/// The content type of a `SubscribeToShard` response.
pub(crate) const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn encode(message: &Message) -> Bytes {
    let mut buffer = Vec::with_capacity(message.payload().len() + 128);
    match write_message_to(message, &mut buffer) {
        Ok(()) => Bytes::from(buffer),
        // Only an oversized payload (> 16 MiB) fails; events are capped far below that.
        Err(_) => Bytes::new(),
    }
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// The first frame of every subscription: `initial-response` with an empty JSON object.
pub(crate) fn initial_response() -> Bytes {
    encode(
        &Message::new(Bytes::from_static(b"{}"))
            .add_header(header(":message-type", "event"))
            .add_header(header(":event-type", "initial-response"))
            .add_header(header(":content-type", "application/json")),
    )
}

/// A `SubscribeToShardEvent` frame with its JSON payload.
pub(crate) fn subscribe_to_shard_event(payload: Vec<u8>) -> Bytes {
    encode(
        &Message::new(Bytes::from(payload))
            .add_header(header(":message-type", "event"))
            .add_header(header(":event-type", "SubscribeToShardEvent"))
            .add_header(header(":content-type", "application/json")),
    )
}

/// An exception frame, which ends a subscription with an AWS error. The payload repeats
/// the type as `__type`, so SDKs report the code even for types they do not model.
pub(crate) fn exception(error_type: &str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "__type": error_type, "message": message }).to_string();
    encode(
        &Message::new(Bytes::from(payload))
            .add_header(header(":message-type", "exception"))
            .add_header(Header::new(
                ":exception-type",
                HeaderValue::String(error_type.to_owned().into()),
            ))
            .add_header(header(":content-type", "application/json")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn frames_decode_with_the_sdk_reader() {
        let frame = initial_response();
        let total = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(total as usize, frame.len());
        let message = read_message_from(frame).unwrap();
        assert_eq!(message.payload().as_ref(), b"{}");
        let exc = read_message_from(exception("ResourceInUseException", "busy")).unwrap();
        assert!(
            exc.headers()
                .iter()
                .any(|h| h.name().as_str() == ":exception-type")
        );
    }
}
