//! Records as the hub holds them: encoded to protobuf once, when they enter.

use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{BufMut, Bytes, BytesMut};
use kinesis_relay_api::{cursor::Position, sequence::SequenceNumber, v1};
use prost::Message;

/// What an entry costs beyond its data: the struct in the ring's deque, three shared
/// allocations' headers and allocator rounding (measured by the benchmark: about 230 bytes).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 160;

/// Tag of `RecordBatch.records` (field 2, length-delimited).
const RECORD_BATCH_RECORDS_TAG: u8 = (2 << 3) | 2;

/// A record read from Kinesis, after KPL aggregates are unpacked.
#[derive(Debug, Clone)]
pub struct RelayRecord {
    /// The (user record's) partition key.
    pub partition_key: String,
    /// The (user record's) data.
    pub data: Bytes,
    /// The Kinesis sequence number.
    pub sequence: SequenceNumber,
    /// Index inside a KPL aggregate; `None` for plain records.
    pub sub_sequence: Option<u64>,
    /// When Kinesis accepted the record.
    pub arrival: SystemTime,
    /// Explicit hash key of a KPL user record.
    pub explicit_hash_key: Option<String>,
}

/// A record in a shard ring: what subscribers need to filter and order it, plus its
/// pre-encoded bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Kinesis sequence number.
    pub sequence: SequenceNumber,
    /// Index inside a KPL aggregate.
    pub sub_sequence: Option<u64>,
    /// Partition key, for subscriber filters.
    pub partition_key: Arc<str>,
    /// Arrival time, for timestamp starts and age eviction.
    pub arrival: SystemTime,
    /// When the relay took the record in, for the delivery delay metric.
    pub received: Instant,
    /// The record as one `RecordBatch.records` field (tag, length, `Record`), shared by every
    /// subscriber batch that carries it.
    pub encoded: Bytes,
}

impl Entry {
    /// Encodes `record` once.
    pub fn encode(record: RelayRecord) -> Self {
        let arrival = record.arrival;
        let since_epoch = arrival.duration_since(UNIX_EPOCH).unwrap_or_default();
        let message = v1::Record {
            partition_key: record.partition_key.clone(),
            data: record.data,
            sequence_number: record.sequence.to_string(),
            sub_sequence_number: record.sub_sequence,
            approximate_arrival_timestamp: Some(prost_types::Timestamp {
                seconds: since_epoch.as_secs() as i64,
                nanos: since_epoch.subsec_nanos() as i32,
            }),
            explicit_hash_key: record.explicit_hash_key.unwrap_or_default(),
        };
        let len = message.encoded_len();
        let mut buf = BytesMut::with_capacity(1 + prost::length_delimiter_len(len) + len);
        buf.put_u8(RECORD_BATCH_RECORDS_TAG);
        // Writing into a BytesMut with enough capacity cannot fail.
        message
            .encode_length_delimited(&mut buf)
            .expect("BytesMut grows as needed");
        Self {
            sequence: record.sequence,
            sub_sequence: record.sub_sequence,
            partition_key: Arc::from(record.partition_key),
            arrival,
            received: Instant::now(),
            encoded: buf.freeze(),
        }
    }

    /// The cursor position right after this record.
    pub fn position(&self) -> Position {
        Position::After {
            sequence: self.sequence.clone(),
            sub_sequence: self.sub_sequence,
        }
    }

    /// Bytes this entry costs in the ring budget: its heap data plus what holding it costs
    /// beyond that (the entry itself in the ring, the reference-count headers of the shared
    /// key, sequence and bytes, and allocator rounding), so that `--ring-max-bytes` bounds
    /// the memory really used.
    pub fn cost(&self) -> usize {
        self.encoded.len()
            + self.partition_key.len()
            + self.sequence.as_str().len()
            + ENTRY_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_entry_is_a_record_batch_field() {
        let entry = Entry::encode(RelayRecord {
            partition_key: "k".into(),
            data: Bytes::from_static(b"hello"),
            sequence: "42".parse().unwrap(),
            sub_sequence: Some(1),
            arrival: UNIX_EPOCH + std::time::Duration::from_millis(1500),
            explicit_hash_key: None,
        });
        let mut batch = BytesMut::new();
        v1::RecordBatch {
            shard_id: "s".into(),
            records: vec![],
        }
        .encode(&mut batch)
        .unwrap();
        batch.extend_from_slice(&entry.encoded);
        batch.extend_from_slice(&entry.encoded);
        let decoded = v1::RecordBatch::decode(batch.freeze()).unwrap();
        assert_eq!(decoded.records.len(), 2);
        assert_eq!(decoded.records[0].data.as_ref(), b"hello");
        assert_eq!(decoded.records[0].sequence_number, "42");
        assert_eq!(decoded.records[0].sub_sequence_number, Some(1));
        let ts = decoded.records[0].approximate_arrival_timestamp.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
    }
}
