//! Building `SubscribeResponse` bytes from pre-encoded records.
//!
//! A `SubscribeResponse` carrying records is `records` (field 1) holding a `RecordBatch`
//! (`shard_id` field 1, `records` field 2 repeated), then `cursor` (field 15). The records
//! are already encoded as field-2 chunks in the hub, so a response is a short header, the
//! shared chunks, and the cursor: nothing is encoded per subscriber but the cursor.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kinesis_relay_api::v1;
use prost::Message;

/// Tag of `SubscribeResponse.records` and of `RecordBatch.shard_id` (field 1, bytes).
const FIELD_1_LEN: u8 = (1 << 3) | 2;
/// Tag of `SubscribeResponse.cursor` (field 15, bytes).
const CURSOR_TAG: u8 = (15 << 3) | 2;

/// A `SubscribeResponse` as the segments of its encoding.
#[derive(Debug, Clone, Default)]
pub struct EncodedResponse {
    /// Concatenated, these are the encoded message.
    pub segments: Vec<Bytes>,
    /// Records it carries (for metrics).
    pub records: usize,
    /// When its oldest record entered the relay (record batches only).
    pub oldest: Option<Instant>,
}

impl EncodedResponse {
    /// Encodes a response built as a message (events other than record batches).
    pub fn from_message(message: &v1::SubscribeResponse) -> Self {
        Self {
            segments: vec![Bytes::from(message.encode_to_vec())],
            records: 0,
            oldest: None,
        }
    }

    /// A record batch of `shard_id` with `records` pre-encoded records in `chunks` (each
    /// chunk one or more `RecordBatch.records` fields).
    pub fn record_batch(
        shard_id: &str,
        chunks: Vec<Bytes>,
        records: usize,
        cursor: &str,
        oldest: Option<Instant>,
    ) -> Self {
        let shard_field_len = 1 + prost::length_delimiter_len(shard_id.len()) + shard_id.len();
        let batch_len = shard_field_len + chunks.iter().map(Bytes::len).sum::<usize>();
        let mut header = BytesMut::with_capacity(16 + shard_field_len);
        header.put_u8(FIELD_1_LEN);
        put_varint(&mut header, batch_len);
        header.put_u8(FIELD_1_LEN);
        put_varint(&mut header, shard_id.len());
        header.put_slice(shard_id.as_bytes());
        let mut segments = Vec::with_capacity(chunks.len() + 2);
        segments.push(header.freeze());
        segments.extend(chunks);
        segments.push(cursor_field(cursor));
        Self {
            segments,
            records,
            oldest,
        }
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Bytes::len).sum()
    }

    /// Whether the encoding is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes back into a message (used by the generic tonic path and by tests).
    pub fn decode(&self) -> Result<v1::SubscribeResponse, prost::DecodeError> {
        let mut all = BytesMut::with_capacity(self.len());
        for segment in &self.segments {
            all.put_slice(segment);
        }
        v1::SubscribeResponse::decode(all.freeze())
    }
}

fn cursor_field(cursor: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(6 + cursor.len());
    buf.put_u8(CURSOR_TAG);
    put_varint(&mut buf, cursor.len());
    buf.put_slice(cursor.as_bytes());
    buf.freeze()
}

fn put_varint(buf: &mut BytesMut, value: usize) {
    prost::encoding::encode_varint(value as u64, buf);
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::hub::entry::{Entry, RelayRecord};

    #[test]
    fn record_batch_decodes_as_the_contract_says() {
        let chunks: Vec<Bytes> = (1..=3)
            .map(|seq: u64| {
                Entry::encode(RelayRecord {
                    partition_key: format!("key-{seq}"),
                    data: Bytes::from(vec![7u8; 300]),
                    sequence: seq.to_string().parse().unwrap(),
                    sub_sequence: None,
                    arrival: UNIX_EPOCH,
                    explicit_hash_key: None,
                })
                .encoded
            })
            .collect();
        let response =
            EncodedResponse::record_batch("shardId-000000000001", chunks, 3, "abc_-", None);
        let decoded = response.decode().unwrap();
        assert_eq!(decoded.cursor, "abc_-");
        let Some(v1::subscribe_response::Event::Records(batch)) = decoded.event else {
            panic!("not a record batch: {decoded:?}");
        };
        assert_eq!(batch.shard_id, "shardId-000000000001");
        let keys: Vec<_> = batch
            .records
            .iter()
            .map(|r| r.partition_key.as_str())
            .collect();
        assert_eq!(keys, ["key-1", "key-2", "key-3"]);
        assert_eq!(batch.records[2].data.len(), 300);
    }
}
