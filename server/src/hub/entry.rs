//! Records as the hub holds them: encoded to protobuf once, when they enter (the encoding
//! itself is `crate::wire::records`).

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use kinesis_relay_api::{cursor::Position, sequence::SequenceNumber, v1};

use crate::wire::records::encode_blocks;

/// What an entry costs beyond its data: the struct in the ring's deque, three shared
/// allocations' headers and allocator rounding (measured by the benchmark: about 230 bytes).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 160;

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
    /// subscriber batch that carries it: `block[offset..offset + encoded.len()]`.
    pub encoded: Bytes,
    /// The records that arrived with this one, encoded back to back.
    pub block: Bytes,
    /// Where `encoded` starts in `block`.
    pub offset: usize,
}

impl Entry {
    /// Encodes `record` once.
    pub fn encode(record: RelayRecord) -> Self {
        Self::encode_all(vec![record])
            .pop()
            .expect("one record in, one entry out")
    }

    /// Encodes records that arrived together once, back to back in blocks (see
    /// [`crate::wire::records`]), so that a batch of consecutive ones can go out as one
    /// slice of a block.
    pub fn encode_all(records: Vec<RelayRecord>) -> Vec<Self> {
        let received = Instant::now();
        // What the entry keeps, and the message its bytes encode.
        let (kept, messages): (Vec<_>, Vec<_>) = records
            .into_iter()
            .map(|record| {
                let message = v1::Record {
                    partition_key: record.partition_key.clone(),
                    data: record.data,
                    sequence_number: record.sequence.to_string(),
                    sub_sequence_number: record.sub_sequence,
                    approximate_arrival_timestamp: Some(record.arrival.into()),
                    explicit_hash_key: record.explicit_hash_key.unwrap_or_default(),
                };
                let kept = (
                    record.sequence,
                    record.sub_sequence,
                    record.partition_key,
                    record.arrival,
                );
                (kept, message)
            })
            .unzip();
        let fields = encode_blocks(&messages).into_iter().flat_map(|block| {
            let bytes = block.bytes;
            block
                .fields
                .into_iter()
                .map(move |range| (bytes.clone(), range))
        });
        kept.into_iter()
            .zip(fields)
            .map(
                |((sequence, sub_sequence, key, arrival), (block, range))| Self {
                    sequence,
                    sub_sequence,
                    partition_key: Arc::from(key),
                    arrival,
                    received,
                    offset: range.start,
                    encoded: block.slice(range),
                    block,
                },
            )
            .collect()
    }

    /// Whether `other` was encoded in the same block as this entry.
    pub fn adjoins_block(&self, other: &Entry) -> bool {
        self.block.as_ptr() == other.block.as_ptr() && self.block.len() == other.block.len()
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
    fn records_that_arrive_together_are_encoded_back_to_back() {
        let records = (1..=3)
            .map(|seq: u64| RelayRecord {
                partition_key: format!("k{seq}"),
                data: Bytes::from(vec![seq as u8; 10]),
                sequence: seq.to_string().parse().unwrap(),
                sub_sequence: None,
                arrival: SystemTime::UNIX_EPOCH,
                explicit_hash_key: None,
            })
            .collect();
        let entries = Entry::encode_all(records);
        assert_eq!(entries.len(), 3);
        let block = &entries[0].block;
        let mut end = 0;
        for entry in &entries {
            assert!(entries[0].adjoins_block(entry));
            assert_eq!(entry.offset, end);
            assert_eq!(
                &block[entry.offset..entry.offset + entry.encoded.len()],
                &entry.encoded[..]
            );
            end += entry.encoded.len();
        }
        assert_eq!(end, block.len());
        let alone = Entry::encode(RelayRecord {
            partition_key: "k".into(),
            data: Bytes::new(),
            sequence: "9".parse().unwrap(),
            sub_sequence: None,
            arrival: SystemTime::UNIX_EPOCH,
            explicit_hash_key: None,
        });
        assert!(!entries[0].adjoins_block(&alone));
    }

    #[test]
    fn blocks_stay_small_so_a_held_slice_pins_little() {
        let record = |seq: u64, size: usize| RelayRecord {
            partition_key: "k".into(),
            data: Bytes::from(vec![0u8; size]),
            sequence: seq.to_string().parse().unwrap(),
            sub_sequence: None,
            arrival: SystemTime::UNIX_EPOCH,
            explicit_hash_key: None,
        };
        let entries = Entry::encode_all((1..=10).map(|seq| record(seq, 20_000)).collect());
        let blocks: Vec<usize> = entries
            .iter()
            .filter(|entry| entry.offset == 0)
            .map(|entry| entry.block.len())
            .collect();
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        assert!(
            blocks
                .iter()
                .all(|&len| len <= crate::wire::records::BLOCK_BYTES),
            "{blocks:?}"
        );
        // A record larger than a block gets a block of its own.
        let large = Entry::encode_all(vec![record(1, 10), record(2, 300_000), record(3, 10)]);
        assert!(!large[0].adjoins_block(&large[1]));
        assert!(!large[1].adjoins_block(&large[2]));
        assert_eq!(large[1].offset, 0);
    }

    #[test]
    fn encoded_entry_is_a_record_batch_field() {
        use bytes::BytesMut;
        use prost::Message;

        let entry = Entry::encode(RelayRecord {
            partition_key: "k".into(),
            data: Bytes::from_static(b"hello"),
            sequence: "42".parse().unwrap(),
            sub_sequence: Some(1),
            arrival: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500),
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
