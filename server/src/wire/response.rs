//! `SubscribeResponse` bytes: a record batch assembled from records encoded once, and
//! every other event encoded by prost.
//!
//! A response carrying records is `records` (field 1) holding a `RecordBatch` (`shard_id`
//! field 1, then the shared `records` field-2 chunks as they are), then `cursor` (field 15):
//! the same bytes prost writes for that message, since prost writes fields in field-number
//! order and omits an empty string.

use std::{ops::Range, time::Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kinesis_relay_api::v1;
use prost::Message;

use super::{
    BATCH_RECORDS_TAG, BATCH_SHARD_ID_TAG, RESPONSE_CURSOR_TAG, RESPONSE_RECORDS_TAG, field_len,
};

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
    /// Encodes a response built as a message.
    pub fn from_message(message: &v1::SubscribeResponse) -> Self {
        Self {
            segments: vec![Bytes::from(message.encode_to_vec())],
            records: 0,
            oldest: None,
        }
    }

    /// An event other than a record batch (heartbeat, shard event, gap), with its cursor.
    pub fn event(event: v1::subscribe_response::Event, cursor: String) -> Self {
        Self::from_message(&v1::SubscribeResponse {
            event: Some(event),
            cursor,
        })
    }

    /// A record batch of `shard_id` with `records` pre-encoded records in `chunks` (each
    /// chunk one or more `RecordBatch.records` fields, see [`super::records`]), which go
    /// into the response as they are.
    pub fn record_batch(
        shard_id: &str,
        chunks: Vec<Bytes>,
        records: usize,
        cursor: &str,
        oldest: Option<Instant>,
    ) -> Self {
        // prost leaves out an empty string field; so does this, to stay byte-identical.
        let shard_field_len = if shard_id.is_empty() {
            0
        } else {
            field_len(shard_id.len())
        };
        let batch_len = shard_field_len + chunks.iter().map(Bytes::len).sum::<usize>();
        let mut header = BytesMut::with_capacity(16 + shard_field_len);
        header.put_u8(RESPONSE_RECORDS_TAG);
        put_len(&mut header, batch_len);
        if !shard_id.is_empty() {
            put_string(&mut header, BATCH_SHARD_ID_TAG, shard_id);
        }
        let mut segments = Vec::with_capacity(chunks.len() + 2);
        segments.push(header.freeze());
        segments.extend(chunks);
        if !cursor.is_empty() {
            let mut field = BytesMut::with_capacity(field_len(cursor.len()));
            put_string(&mut field, RESPONSE_CURSOR_TAG, cursor);
            segments.push(field.freeze());
        }
        Self {
            segments,
            records,
            oldest,
        }
    }

    /// Which of [`Self::segments`] are shared chunks of records (slices of the blocks the
    /// records were encoded into once, see [`super::records`]): the header before them and
    /// the cursor after them are this response's own. Empty for responses without records.
    /// The chunks are told apart by their first byte, the tag of `RecordBatch.records`,
    /// which the header and the cursor field do not start with.
    pub fn shared_chunks(&self) -> Range<usize> {
        if self.records == 0 {
            // Other events are one prost-encoded segment, whose first byte may equal that tag
            // (`SubscribeResponse.heartbeat` is field 2 too).
            return 0..0;
        }
        let chunks = self
            .segments
            .iter()
            .skip(1)
            .take_while(|segment| segment.first() == Some(&BATCH_RECORDS_TAG))
            .count();
        1..1 + chunks
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Bytes::len).sum()
    }

    /// Whether the encoding is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The encoding in one piece (a copy: for transcoding and tests, not for sending).
    pub fn to_bytes(&self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.len());
        for segment in &self.segments {
            all.put_slice(segment);
        }
        all.freeze()
    }

    /// Decodes back into a message (used by the generic tonic path and by tests).
    pub fn decode(&self) -> Result<v1::SubscribeResponse, prost::DecodeError> {
        v1::SubscribeResponse::decode(self.to_bytes())
    }
}

/// A string field: tag, length, bytes.
fn put_string(buf: &mut BytesMut, tag: u8, value: &str) {
    buf.put_u8(tag);
    put_len(buf, value.len());
    buf.put_slice(value.as_bytes());
}

/// A length prefix (a varint).
fn put_len(buf: &mut BytesMut, len: usize) {
    prost::encoding::encode_varint(len as u64, buf);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::wire::records::encode_blocks;

    fn records(count: u64, size: usize) -> Vec<v1::Record> {
        (1..=count)
            .map(|seq| v1::Record {
                partition_key: format!("key-{seq}"),
                data: Bytes::from(vec![7u8; size]),
                sequence_number: seq.to_string(),
                sub_sequence_number: None,
                approximate_arrival_timestamp: Some((UNIX_EPOCH + Duration::from_secs(seq)).into()),
                explicit_hash_key: String::new(),
            })
            .collect()
    }

    /// The hand-encoded batch of `records`, each record its own chunk.
    fn hand_encoded(shard_id: &str, records: &[v1::Record], cursor: &str) -> EncodedResponse {
        let chunks: Vec<Bytes> = encode_blocks(records)
            .into_iter()
            .flat_map(|block| {
                let bytes = block.bytes;
                block
                    .fields
                    .into_iter()
                    .map(move |range| bytes.slice(range))
            })
            .collect();
        EncodedResponse::record_batch(shard_id, chunks, records.len(), cursor, None)
    }

    fn by_prost(shard_id: &str, records: &[v1::Record], cursor: &str) -> Vec<u8> {
        v1::SubscribeResponse {
            event: Some(v1::subscribe_response::Event::Records(v1::RecordBatch {
                shard_id: shard_id.to_owned(),
                records: records.to_vec(),
            })),
            cursor: cursor.to_owned(),
        }
        .encode_to_vec()
    }

    #[test]
    fn record_batch_decodes_as_the_contract_says() {
        let response = hand_encoded("shardId-000000000001", &records(3, 300), "abc_-");
        assert_eq!(response.records, 3);
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

    #[test]
    fn record_batch_is_byte_identical_to_prost() {
        let long_cursor = "c".repeat(300);
        for (shard, count, size, cursor) in [
            ("shardId-000000000001", 3, 300, "abc_-"),
            ("s", 1, 0, long_cursor.as_str()),
            // A batch over 127 bytes and one over 16 KiB: two- and three-byte lengths.
            ("shardId-000000000002", 2, 100, "x"),
            ("shardId-000000000003", 40, 1000, "y"),
            ("", 1, 5, ""),
        ] {
            let records = records(count, size);
            assert_eq!(
                hand_encoded(shard, &records, cursor).to_bytes().as_ref(),
                by_prost(shard, &records, cursor).as_slice(),
                "{count} records of {size} bytes in {shard:?}, cursor {cursor:?}"
            );
        }
    }

    #[test]
    fn the_shared_chunks_are_the_records_blocks_as_they_are() {
        let records = records(3, 10);
        let blocks = encode_blocks(&records);
        let chunks = vec![
            blocks[0].bytes.slice(blocks[0].fields[0].clone()),
            blocks[0]
                .bytes
                .slice(blocks[0].fields[1].start..blocks[0].fields[2].end),
        ];
        let response = EncodedResponse::record_batch("s", chunks.clone(), 3, "c", None);
        assert_eq!(response.shared_chunks(), 1..3);
        for (segment, chunk) in response.segments[response.shared_chunks()]
            .iter()
            .zip(&chunks)
        {
            // The same memory, not a copy.
            assert_eq!(segment.as_ptr(), chunk.as_ptr());
        }
        let heartbeat = EncodedResponse::from_message(&v1::SubscribeResponse::default());
        assert!(heartbeat.shared_chunks().is_empty());
    }

    #[test]
    fn events_are_prost_s_encoding_with_the_cursor() {
        let event = v1::subscribe_response::Event::ShardEvent(v1::ShardEvent {
            shard_id: "a".into(),
            kind: v1::ShardEventKind::Ended.into(),
            child_shard_ids: vec!["b".into()],
            parent_shard_ids: vec![],
        });
        let response = EncodedResponse::event(event.clone(), "cur".into());
        let message = v1::SubscribeResponse {
            event: Some(event),
            cursor: "cur".into(),
        };
        assert_eq!(response.to_bytes().as_ref(), message.encode_to_vec());
        assert_eq!((response.records, response.oldest), (0, None));
    }
}
