//! The JSON of a batch of records, as GetRecords and SubscribeToShardEvent carry it.
//!
//! Written straight into the output rather than built as a `serde_json::Value` and then
//! serialized: a tree costs four map entries and five strings per record, and serializing
//! it scans every byte of the base64 data for characters to escape, of which base64 has
//! none. Written directly, a pushed record costs the emulator less than half the CPU
//! (ADR 0014), which the benchmark's relay cells share a core with.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::io::Write as _;

use crate::protocol;
use crate::reading::ReadBatch;
use crate::state::Record;

/// What follows a batch's records: where to read next, or the children of a closed shard.
pub(crate) enum After {
    /// SubscribeToShardEvent's `ContinuationSequenceNumber` (left out at shard end).
    Continuation,
    /// GetRecords' `NextShardIterator` (left out at shard end).
    NextIterator(String),
}

/// The JSON object of `batch`: `Records`, `MillisBehindLatest`, then `ChildShards` if the
/// shard is read to its end, else what `after` names.
pub(crate) fn batch(batch: &ReadBatch, after: After) -> Vec<u8> {
    let data: usize = batch.records.iter().map(|r| r.data.len()).sum();
    // Base64 takes 4 bytes for 3; each record's fields and keys take about 150 more.
    let mut out = Vec::with_capacity(data / 3 * 4 + batch.records.len() * 160 + 256);
    out.extend_from_slice(b"{\"Records\":[");
    for (i, record) in batch.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record(&mut out, record);
    }
    // Writes to a Vec do not fail; numbers and strings always serialize.
    let _ = write!(out, "],\"MillisBehindLatest\":{}", batch.millis_behind);
    match (&batch.children, after) {
        (Some(children), _) => {
            out.extend_from_slice(b",\"ChildShards\":");
            let _ = serde_json::to_writer(&mut out, children);
        }
        (None, After::Continuation) => {
            let _ = write!(
                out,
                ",\"ContinuationSequenceNumber\":\"{}\"",
                batch.continuation
            );
        }
        (None, After::NextIterator(iterator)) => {
            out.extend_from_slice(b",\"NextShardIterator\":");
            let _ = serde_json::to_writer(&mut out, &iterator);
        }
    }
    out.push(b'}');
    out
}

/// One record: `SequenceNumber`, `ApproximateArrivalTimestamp` (epoch seconds),
/// `Data` (base64), `PartitionKey`.
fn write_record(out: &mut Vec<u8>, record: &Record) {
    // A sequence number is digits only: nothing to escape.
    let _ = write!(out, "{{\"SequenceNumber\":\"{}\"", record.seq);
    out.extend_from_slice(b",\"ApproximateArrivalTimestamp\":");
    let _ = serde_json::to_writer(&mut *out, &protocol::epoch_seconds(record.arrival));
    out.extend_from_slice(b",\"Data\":\"");
    let start = out.len();
    out.resize(
        start + base64::encoded_len(record.data.len(), true).unwrap_or(0),
        0,
    );
    let written = STANDARD
        .encode_slice(&record.data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.extend_from_slice(b"\",\"PartitionKey\":");
    // The key is the producer's text: it may hold quotes, backslashes or controls.
    let _ = serde_json::to_writer(&mut *out, &*record.partition_key);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{Value, json};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::sequence::{SequenceAllocator, SequenceNumber};

    /// Records of these keys and data, in sequence order.
    fn records(entries: &[(&str, &[u8])]) -> Vec<Record> {
        let mut seqs = SequenceAllocator::starting_at(1_700_000_000);
        entries
            .iter()
            .map(|(key, data)| Record {
                seq: seqs.allocate(),
                arrival: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                partition_key: Arc::from(*key),
                data: Bytes::copy_from_slice(data),
            })
            .collect()
    }

    fn read_batch(records: Vec<Record>, children: Option<Vec<Value>>) -> ReadBatch {
        ReadBatch {
            continuation: records.last().map_or(SequenceNumber::ZERO, |r| r.seq),
            records,
            millis_behind: 42,
            more: false,
            children,
        }
    }

    /// The shape the emulator answered with when it built the JSON as a tree.
    fn expected(record: &Record) -> Value {
        json!({
            "SequenceNumber": record.seq.to_string(),
            "ApproximateArrivalTimestamp": protocol::epoch_seconds(record.arrival),
            "Data": STANDARD.encode(&record.data),
            "PartitionKey": &*record.partition_key,
        })
    }

    #[test]
    fn records_read_back_as_the_json_tree_would_have_written_them() {
        let every_byte: Vec<u8> = (0..=255u8).collect();
        // Every padding length, an empty blob, and keys that must be escaped.
        let records = records(&[
            ("plain", b"hello"),
            ("quote\"back\\slash", b"ab"),
            ("control\u{1}tab\tnewline\n", b"a"),
            ("unicodé ☃", b""),
            ("k", &every_byte),
        ]);
        let batch = read_batch(records.clone(), None);
        let parsed: Value = serde_json::from_slice(&super::batch(&batch, After::Continuation))
            .expect("the batch is JSON");
        assert_eq!(
            parsed,
            json!({
                "Records": records.iter().map(expected).collect::<Vec<_>>(),
                "MillisBehindLatest": 42,
                "ContinuationSequenceNumber": records[4].seq.to_string(),
            })
        );
    }

    #[test]
    fn get_records_names_the_next_iterator_and_shard_end_names_the_children() {
        let next = read_batch(vec![], None);
        let parsed: Value =
            serde_json::from_slice(&batch(&next, After::NextIterator("it\"er".to_owned())))
                .expect("JSON");
        assert_eq!(
            parsed,
            json!({ "Records": [], "MillisBehindLatest": 42, "NextShardIterator": "it\"er" })
        );

        let children = vec![json!({ "ShardId": "shardId-000000000001" })];
        let end = read_batch(records(&[("k", b"x")]), Some(children.clone()));
        for after in [
            After::Continuation,
            After::NextIterator("unused".to_owned()),
        ] {
            let parsed: Value = serde_json::from_slice(&batch(&end, after)).expect("JSON");
            assert_eq!(parsed["ChildShards"], Value::from(children.clone()));
            assert!(parsed.get("ContinuationSequenceNumber").is_none());
            assert!(parsed.get("NextShardIterator").is_none());
        }
    }
}
