//! PutRecord, PutRecords, GetShardIterator, GetRecords.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::starting_position;
use super::streams::StreamRef;
use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::limits::{PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES, RECORD_MAX_BYTES};
use crate::protocol::{self, Body};
use crate::reading::Position;
use crate::records_json::{self, After};
use crate::sequence::SequenceNumber;
use crate::writing::{NewRecord, PutOutcome};

/// The most records and bytes one GetRecords returns, as on AWS.
const GET_RECORDS_MAX_RECORDS: usize = 10_000;
const GET_RECORDS_MAX_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct PutRecordInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(flatten)]
    entry: PutEntry,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PutEntry {
    #[serde(rename = "Data")]
    data: String,
    #[serde(rename = "PartitionKey")]
    partition_key: String,
    #[serde(rename = "ExplicitHashKey")]
    explicit_hash_key: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PutRecordsInput {
    #[serde(rename = "Records")]
    records: Vec<PutEntry>,
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
}

#[derive(Debug, Serialize)]
struct PutRecordsOutput {
    #[serde(rename = "FailedRecordCount")]
    failed: usize,
    #[serde(rename = "Records")]
    records: Vec<PutRecordsResultEntry>,
    #[serde(rename = "EncryptionType")]
    encryption: &'static str,
}

#[derive(Debug, Serialize)]
struct PutRecordsResultEntry {
    #[serde(rename = "SequenceNumber", skip_serializing_if = "Option::is_none")]
    seq: Option<String>,
    #[serde(rename = "ShardId", skip_serializing_if = "Option::is_none")]
    shard_id: Option<String>,
    #[serde(rename = "ErrorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(rename = "ErrorMessage", skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GetShardIteratorInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "ShardId")]
    shard_id: String,
    #[serde(rename = "ShardIteratorType")]
    kind: String,
    #[serde(rename = "StartingSequenceNumber")]
    sequence_number: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GetRecordsInput {
    #[serde(rename = "ShardIterator")]
    iterator: String,
    #[serde(rename = "Limit")]
    limit: Option<usize>,
}

/// Validates and decodes one entry; returns it with its size (data plus key).
fn decode_entry(entry: PutEntry) -> Result<(NewRecord, usize), KinesisError> {
    let key_len = entry.partition_key.chars().count();
    if !(1..=256).contains(&key_len) {
        return Err(KinesisError::Validation(
            "PartitionKey must be 1 to 256 characters long".into(),
        ));
    }
    let data = STANDARD
        .decode(entry.data.as_bytes())
        .map_err(|_| KinesisError::Serialization("Data is not valid base64".into()))?;
    let size = data.len() + entry.partition_key.len();
    if size > RECORD_MAX_BYTES {
        return Err(KinesisError::Validation(format!(
            "a record's data and partition key take {size} bytes, more than {RECORD_MAX_BYTES}"
        )));
    }
    let explicit_hash_key = match entry.explicit_hash_key {
        None => None,
        Some(text) => Some(text.parse::<u128>().map_err(|_| {
            KinesisError::InvalidArgument(format!("invalid ExplicitHashKey {text:?}"))
        })?),
    };
    Ok((
        NewRecord {
            partition_key: entry.partition_key,
            explicit_hash_key,
            data: Bytes::from(data),
        },
        size,
    ))
}

/// AWS's message for a throttled write (GetRecords has its own, in `read_limits.rs`).
fn throttled_message(shard_id: &str, stream: &str) -> String {
    format!("Rate exceeded for shard {shard_id} in stream {stream} under account 000000000000.")
}

pub(crate) fn put_record(
    shared: &Arc<Shared>,
    input: PutRecordInput,
) -> Result<Value, KinesisError> {
    let name = input.stream.name()?;
    let (record, _) = decode_entry(input.entry)?;
    let outcome = shared.store.put(name, vec![record])?.pop();
    match outcome {
        Some(PutOutcome::Stored { shard_id, seq }) => Ok(json!({
            "ShardId": shard_id,
            "SequenceNumber": seq.to_string(),
            "EncryptionType": "NONE",
        })),
        Some(PutOutcome::Throttled { shard_id }) => Err(
            KinesisError::ProvisionedThroughputExceeded(throttled_message(&shard_id, name)),
        ),
        None => Err(KinesisError::InternalFailure("the record was lost".into())),
    }
}

pub(crate) fn put_records(
    shared: &Arc<Shared>,
    input: PutRecordsInput,
) -> Result<Response<Body>, KinesisError> {
    let name = protocol::stream_name(input.name.as_deref(), input.arn.as_deref())?;
    if input.records.is_empty() || input.records.len() > PUT_RECORDS_MAX_ENTRIES {
        return Err(KinesisError::Validation(format!(
            "Records must hold 1 to {PUT_RECORDS_MAX_ENTRIES} entries, not {}",
            input.records.len()
        )));
    }
    let mut total = 0;
    let mut records = Vec::with_capacity(input.records.len());
    for entry in input.records {
        let (record, size) = decode_entry(entry)?;
        total += size;
        records.push(record);
    }
    if total > PUT_RECORDS_MAX_BYTES {
        return Err(KinesisError::InvalidArgument(format!(
            "the request carries {total} bytes, more than {PUT_RECORDS_MAX_BYTES}"
        )));
    }
    let outcomes = shared.store.put(name, records)?;
    let mut failed = 0;
    let records = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            PutOutcome::Stored { shard_id, seq } => PutRecordsResultEntry {
                seq: Some(seq.to_string()),
                shard_id: Some(shard_id),
                error_code: None,
                error_message: None,
            },
            PutOutcome::Throttled { shard_id } => {
                failed += 1;
                PutRecordsResultEntry {
                    seq: None,
                    shard_id: None,
                    error_code: Some("ProvisionedThroughputExceededException"),
                    error_message: Some(throttled_message(&shard_id, name)),
                }
            }
        })
        .collect();
    Ok(protocol::json_response(&PutRecordsOutput {
        failed,
        records,
        encryption: "NONE",
    }))
}

/// The iterator's contents: stream, shard, position, and when it was issued.
struct Iterator {
    stream: String,
    shard_id: String,
    position: Position,
    issued_millis: u128,
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

impl Iterator {
    fn encode(&self) -> String {
        let (kind, seq) = match self.position {
            Position::After(seq) => ("A", seq),
            Position::AtOrAfter(seq) => ("T", seq),
        };
        STANDARD.encode(format!(
            "{}|{}|{kind}|{seq}|{}",
            self.stream, self.shard_id, self.issued_millis
        ))
    }

    fn decode(text: &str) -> Result<Self, KinesisError> {
        let invalid = || KinesisError::InvalidArgument(format!("invalid ShardIterator {text:?}"));
        let bytes = STANDARD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let parts: Vec<&str> = text.splitn(5, '|').collect();
        let [stream, shard_id, kind, seq, issued] = parts[..] else {
            return Err(invalid());
        };
        let seq = SequenceNumber::parse(seq).ok_or_else(invalid)?;
        let position = match kind {
            "A" => Position::After(seq),
            "T" => Position::AtOrAfter(seq),
            _ => return Err(invalid()),
        };
        Ok(Self {
            stream: stream.to_owned(),
            shard_id: shard_id.to_owned(),
            position,
            issued_millis: issued.parse().map_err(|_| invalid())?,
        })
    }
}

pub(crate) fn get_shard_iterator(
    shared: &Arc<Shared>,
    input: GetShardIteratorInput,
) -> Result<Value, KinesisError> {
    let name = input.stream.name()?;
    let start = starting_position(
        &input.kind,
        input.sequence_number.as_deref(),
        input.timestamp.as_ref(),
    )?;
    let position = shared.store.position(name, &input.shard_id, &start)?;
    let iterator = Iterator {
        stream: name.to_owned(),
        shard_id: input.shard_id,
        position,
        issued_millis: now_millis(),
    };
    Ok(json!({ "ShardIterator": iterator.encode() }))
}

/// "5 minutes" as AWS says it for the default; other lifetimes as a plain duration.
fn describe_lifetime(lifetime: Duration) -> String {
    match lifetime.as_secs() {
        secs if secs >= 60 && secs % 60 == 0 && lifetime.subsec_nanos() == 0 => {
            format!("{} minutes", secs / 60)
        }
        _ => format!("{lifetime:?}"),
    }
}

pub(crate) fn get_records(
    shared: &Arc<Shared>,
    input: GetRecordsInput,
) -> Result<Response<Body>, KinesisError> {
    let limit = input.limit.unwrap_or(GET_RECORDS_MAX_RECORDS);
    if !(1..=GET_RECORDS_MAX_RECORDS).contains(&limit) {
        return Err(KinesisError::InvalidArgument(format!(
            "Limit must be between 1 and {GET_RECORDS_MAX_RECORDS}"
        )));
    }
    let iterator = Iterator::decode(&input.iterator)?;
    let lifetime = shared.settings.iterator_lifetime;
    if now_millis().saturating_sub(iterator.issued_millis) > lifetime.as_millis() {
        return Err(KinesisError::ExpiredIterator(format!(
            "Iterator expired. The iterator was created more than {} ago.",
            describe_lifetime(lifetime)
        )));
    }
    let batch = shared.store.get_records(
        &iterator.stream,
        &iterator.shard_id,
        iterator.position,
        limit,
        GET_RECORDS_MAX_BYTES,
    )?;
    let next = Iterator {
        position: Position::After(batch.continuation),
        issued_millis: now_millis(),
        ..iterator
    };
    Ok(protocol::json_bytes_response(records_json::batch(
        &batch,
        After::NextIterator(next.encode()),
    )))
}
