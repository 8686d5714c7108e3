//! The resume cursor.
//!
//! Every `SubscribeResponse` carries a cursor: the subscriber's position in each shard it
//! reads, so that passing it back as `after_cursor` resumes exactly after the last record it
//! covers. On the wire it is opaque to clients: a small protobuf message, base64url-encoded
//! without padding (safe in URLs, file names and shell arguments).

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use prost::Message;

use crate::sequence::SequenceNumber;

/// Version written into every cursor; a decoder refuses any other.
const VERSION: u32 = 1;
/// Longest encoded cursor accepted: 10,000 shards at ~80 bytes each, with room to spare.
pub const MAX_ENCODED_LEN: usize = 1 << 20;
/// Most shards one cursor may name.
pub const MAX_SHARDS: usize = 10_000;
/// Longest shard id Kinesis allows.
pub const MAX_SHARD_ID_LEN: usize = 128;
/// Longest stream name Kinesis allows.
pub const MAX_STREAM_NAME_LEN: usize = 128;

/// Where a subscriber is in one shard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    /// Before the first record of the shard: nothing of it was delivered yet.
    Start,
    /// Right after this record (and this user record of an aggregate, when set).
    After {
        /// Sequence number of the last record covered.
        sequence: SequenceNumber,
        /// Sub-sequence number of the last user record covered, for KPL aggregates.
        sub_sequence: Option<u64>,
    },
}

/// A decoded cursor: one stream and a position per shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The stream the cursor belongs to; cursors are refused on other streams.
    pub stream: String,
    /// Position per shard id.
    pub shards: BTreeMap<String, Position>,
}

/// Why a string is not a valid cursor. Messages are written for the subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Too long to be a cursor.
    #[error(
        "the cursor is longer than {MAX_ENCODED_LEN} bytes; pass a cursor exactly as the relay sent it"
    )]
    TooLong,
    /// Not base64url.
    #[error("the cursor is not valid base64url; pass a cursor exactly as the relay sent it")]
    NotBase64,
    /// Not a cursor message, or one from another version.
    #[error(
        "the cursor is corrupt or from an incompatible relay version; start from latest or earliest instead"
    )]
    Corrupt,
    /// A field inside is invalid.
    #[error("the cursor is corrupt ({0}); start from latest or earliest instead")]
    InvalidField(&'static str),
}

#[derive(Clone, PartialEq, Message)]
struct CursorMessage {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(string, tag = "2")]
    stream: String,
    #[prost(message, repeated, tag = "3")]
    shards: Vec<ShardPositionMessage>,
}

#[derive(Clone, PartialEq, Message)]
struct ShardPositionMessage {
    #[prost(string, tag = "1")]
    shard_id: String,
    /// Empty means [`Position::Start`].
    #[prost(string, tag = "2")]
    sequence_number: String,
    #[prost(uint64, optional, tag = "3")]
    sub_sequence_number: Option<u64>,
}

impl Cursor {
    /// A cursor with no shard positions.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            shards: BTreeMap::new(),
        }
    }

    /// The URL-safe text form.
    pub fn encode(&self) -> String {
        encode_positions(
            &self.stream,
            self.shards
                .iter()
                .map(|(id, position)| (id.as_str(), position)),
        )
    }

    /// Parses the text form, checking every field.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_ENCODED_LEN {
            return Err(CursorError::TooLong);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CursorError::NotBase64)?;
        let message = CursorMessage::decode(bytes.as_slice()).map_err(|_| CursorError::Corrupt)?;
        if message.version != VERSION {
            return Err(CursorError::Corrupt);
        }
        if message.stream.is_empty() || message.stream.len() > MAX_STREAM_NAME_LEN {
            return Err(CursorError::InvalidField("stream name"));
        }
        if message.shards.len() > MAX_SHARDS {
            return Err(CursorError::InvalidField("too many shards"));
        }
        let mut shards = BTreeMap::new();
        for shard in message.shards {
            if shard.shard_id.is_empty() || shard.shard_id.len() > MAX_SHARD_ID_LEN {
                return Err(CursorError::InvalidField("shard id"));
            }
            let position = if shard.sequence_number.is_empty() {
                if shard.sub_sequence_number.is_some() {
                    return Err(CursorError::InvalidField(
                        "sub-sequence number without sequence",
                    ));
                }
                Position::Start
            } else {
                Position::After {
                    sequence: shard
                        .sequence_number
                        .parse()
                        .map_err(|_| CursorError::InvalidField("sequence number"))?,
                    sub_sequence: shard.sub_sequence_number,
                }
            };
            if shards.insert(shard.shard_id, position).is_some() {
                return Err(CursorError::InvalidField("shard named twice"));
            }
        }
        Ok(Self {
            stream: message.stream,
            shards,
        })
    }
}

/// The text form of a cursor of `stream` at these positions, without building a [`Cursor`]
/// first (the relay encodes one for every response it sends).
pub fn encode_positions<'a>(
    stream: &str,
    shards: impl IntoIterator<Item = (&'a str, &'a Position)>,
) -> String {
    let message = CursorMessage {
        version: VERSION,
        stream: stream.to_owned(),
        shards: shards
            .into_iter()
            .map(|(shard_id, position)| match position {
                Position::Start => ShardPositionMessage {
                    shard_id: shard_id.to_owned(),
                    sequence_number: String::new(),
                    sub_sequence_number: None,
                },
                Position::After {
                    sequence,
                    sub_sequence,
                } => ShardPositionMessage {
                    shard_id: shard_id.to_owned(),
                    sequence_number: sequence.to_string(),
                    sub_sequence_number: *sub_sequence,
                },
            })
            .collect(),
    };
    URL_SAFE_NO_PAD.encode(message.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut cursor = Cursor::new("orders");
        cursor
            .shards
            .insert("shardId-000000000000".into(), Position::Start);
        cursor.shards.insert(
            "shardId-000000000001".into(),
            Position::After {
                sequence: "49590338271490256608559692538361571095921575989136588898"
                    .parse()
                    .unwrap(),
                sub_sequence: Some(3),
            },
        );
        let text = cursor.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(Cursor::decode("not a cursor!"), Err(CursorError::NotBase64));
        assert_eq!(Cursor::decode(""), Err(CursorError::Corrupt));
        assert_eq!(Cursor::decode("AAAA"), Err(CursorError::Corrupt));
        let huge = "A".repeat(MAX_ENCODED_LEN + 1);
        assert_eq!(Cursor::decode(&huge), Err(CursorError::TooLong));
        let bad_sequence = CursorMessage {
            version: VERSION,
            stream: "s".into(),
            shards: vec![ShardPositionMessage {
                shard_id: "a".into(),
                sequence_number: "12x".into(),
                sub_sequence_number: None,
            }],
        };
        let text = URL_SAFE_NO_PAD.encode(bad_sequence.encode_to_vec());
        assert_eq!(
            Cursor::decode(&text),
            Err(CursorError::InvalidField("sequence number"))
        );
    }
}
