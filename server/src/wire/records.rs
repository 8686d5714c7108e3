//! Records encoded once, when they enter the relay, as `RecordBatch.records` fields packed
//! back to back into blocks, so that a run of consecutive records goes into any number of
//! responses as one slice of a block.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kinesis_relay_api::v1;
use prost::Message;

use super::{BATCH_RECORDS_TAG, field_len};

/// Most bytes of records encoded into one block. A response in flight to a subscriber holds
/// slices of blocks, which keep whole blocks alive after the ring has let them go: small
/// blocks bound that to a few hundred KiB per stalled subscriber, and still let a 64 KiB
/// batch go out as one or two slices.
pub const BLOCK_BYTES: usize = 128 << 10;

/// Records encoded back to back: each range of `bytes` is one complete
/// `RecordBatch.records` field (tag, length, `Record`).
#[derive(Debug, Clone)]
pub struct Block {
    /// The encoded fields, shared by every response that carries some of them.
    pub bytes: Bytes,
    /// Where each record's field lies in `bytes`, in the order the records came.
    pub fields: Vec<Range<usize>>,
}

/// Encodes `records` in order into blocks of at most [`BLOCK_BYTES`] (a larger record gets
/// a block of its own).
pub fn encode_blocks(records: &[v1::Record]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        // One block: records up to BLOCK_BYTES (at least one).
        let mut count = 0;
        let mut total = 0;
        for record in rest {
            let len = field_len(record.encoded_len());
            if count > 0 && total + len > BLOCK_BYTES {
                break;
            }
            total += len;
            count += 1;
        }
        let (group, later) = rest.split_at(count);
        rest = later;
        let mut buf = BytesMut::with_capacity(total);
        let mut fields = Vec::with_capacity(group.len());
        for record in group {
            let start = buf.len();
            buf.put_u8(BATCH_RECORDS_TAG);
            // Writing into a BytesMut cannot fail: it grows as needed.
            record
                .encode_length_delimited(&mut buf)
                .expect("BytesMut grows as needed");
            fields.push(start..buf.len());
        }
        blocks.push(Block {
            bytes: buf.freeze(),
            fields,
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn record(seq: u64, size: usize) -> v1::Record {
        v1::Record {
            partition_key: format!("k{seq}"),
            data: Bytes::from(vec![seq as u8; size]),
            sequence_number: seq.to_string(),
            sub_sequence_number: seq.is_multiple_of(2).then_some(seq),
            approximate_arrival_timestamp: Some(
                (SystemTime::UNIX_EPOCH + Duration::from_millis(1500)).into(),
            ),
            explicit_hash_key: String::new(),
        }
    }

    #[test]
    fn a_block_is_byte_identical_to_prost_s_repeated_field() {
        let records: Vec<v1::Record> = (1..=4).map(|seq| record(seq, 100)).collect();
        let blocks = encode_blocks(&records);
        assert_eq!(blocks.len(), 1);
        // What prost writes for a RecordBatch with no shard id: the repeated field alone.
        let by_prost = v1::RecordBatch {
            shard_id: String::new(),
            records: records.clone(),
        }
        .encode_to_vec();
        assert_eq!(blocks[0].bytes.as_ref(), by_prost.as_slice());
        for (range, record) in blocks[0].fields.iter().zip(&records) {
            let alone = v1::RecordBatch {
                shard_id: String::new(),
                records: vec![record.clone()],
            }
            .encode_to_vec();
            assert_eq!(&blocks[0].bytes[range.clone()], alone.as_slice());
        }
    }

    #[test]
    fn blocks_stay_small_and_a_large_record_gets_its_own() {
        let blocks = encode_blocks(&(1..=10).map(|seq| record(seq, 20_000)).collect::<Vec<_>>());
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|block| block.bytes.len() <= BLOCK_BYTES));
        let large = encode_blocks(&[record(1, 10), record(2, 300_000), record(3, 10)]);
        let sizes: Vec<usize> = large.iter().map(|block| block.fields.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert!(encode_blocks(&[]).is_empty());
    }
}
