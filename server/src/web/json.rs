//! The JSON form of the contract's messages: the proto's field names in lowerCamelCase
//! and enum values by their full proto names, as the proto3 JSON mapping (and grpcurl)
//! writes them, with three differences made for scripts: every field is present (defaults
//! included, an unset time is `null`), 64-bit integers are numbers rather than strings, and
//! a record's data is text when it is UTF-8 (`dataEncoding` says which).

use std::borrow::Cow;

use base64::{Engine, engine::general_purpose::STANDARD};
use kinesis_relay_api::v1;
use serde::Serialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// A time as RFC 3339 in UTC; `None` when unset or beyond what RFC 3339 writes.
pub(super) fn time(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    let timestamp = timestamp?;
    let nanos = i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// The body of every error: the gRPC code's name, what to fix, and where to resume.
pub(super) fn error(code: &str, message: &str, cursor: Option<&str>) -> Value {
    let mut value = json!({ "code": code, "message": message });
    if let Some(cursor) = cursor {
        value["cursor"] = json!(cursor);
    }
    value
}

pub(super) fn list_streams(response: &v1::ListStreamsResponse) -> Value {
    let streams: Vec<Value> = response
        .streams
        .iter()
        .map(|stream| {
            json!({
                "name": stream.name,
                "shardCount": stream.shard_count,
                "status": stream_status(stream.status),
            })
        })
        .collect();
    json!({ "streams": streams })
}

pub(super) fn describe_stream(response: &v1::DescribeStreamResponse) -> Value {
    let shards: Vec<Value> = response.shards.iter().map(shard).collect();
    let consumer = response.consumer.as_ref().map(|consumer| {
        json!({
            "name": consumer.name,
            "arn": consumer.arn,
            "status": consumer.status,
        })
    });
    json!({
        "stream": response.stream,
        "status": stream_status(response.status),
        "consumer": consumer,
        "shards": shards,
        "subscriberCount": response.subscriber_count,
        "oldestCursor": response.oldest_cursor,
        "oldestTimestamp": time(response.oldest_timestamp.as_ref()),
        "upstreamRetentionHours": response.upstream_retention_hours,
        "upstreamOldestTimestamp": time(response.upstream_oldest_timestamp.as_ref()),
    })
}

fn shard(shard: &v1::Shard) -> Value {
    let range = shard.hash_key_range.as_ref().map(|range| {
        json!({
            "startingHashKey": range.starting_hash_key,
            "endingHashKey": range.ending_hash_key,
        })
    });
    let state = v1::ShardState::try_from(shard.state).unwrap_or(v1::ShardState::Unspecified);
    json!({
        "shardId": shard.shard_id,
        "parentShardId": shard.parent_shard_id,
        "adjacentParentShardId": shard.adjacent_parent_shard_id,
        "hashKeyRange": range,
        "state": state.as_str_name(),
        "lastSequenceNumber": shard.last_sequence_number,
        "millisBehindLatest": shard.millis_behind_latest,
        "oldestSequenceNumber": shard.oldest_sequence_number,
        "recordsHeld": shard.records_held,
        "bytesHeld": shard.bytes_held,
    })
}

fn stream_status(status: i32) -> &'static str {
    v1::StreamStatus::try_from(status)
        .unwrap_or(v1::StreamStatus::Unspecified)
        .as_str_name()
}

/// One record, as the data of its event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Record<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_sequence_number: Option<u64>,
    partition_key: &'a str,
    approximate_arrival_timestamp: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    explicit_hash_key: &'a str,
    /// `utf8` when `data` is the record's bytes as text, `base64` otherwise.
    data_encoding: &'static str,
    data: Cow<'a, str>,
}

impl<'a> Record<'a> {
    pub(super) fn new(shard_id: &'a str, record: &'a v1::Record) -> Self {
        let (data_encoding, data) = match std::str::from_utf8(&record.data) {
            Ok(text) => ("utf8", Cow::Borrowed(text)),
            Err(_) => ("base64", Cow::Owned(STANDARD.encode(&record.data))),
        };
        Self {
            shard_id,
            sequence_number: &record.sequence_number,
            sub_sequence_number: record.sub_sequence_number,
            partition_key: &record.partition_key,
            approximate_arrival_timestamp: time(record.approximate_arrival_timestamp.as_ref()),
            explicit_hash_key: &record.explicit_hash_key,
            data_encoding,
            data,
        }
    }
}

/// What a heartbeat comment says: the relay's time and how far behind the tip of its
/// shards it is (the most of any shard).
pub(super) fn heartbeat(heartbeat: &v1::Heartbeat) -> Value {
    let behind = heartbeat
        .shards
        .iter()
        .map(|shard| shard.millis_behind_latest)
        .max()
        .unwrap_or(0);
    json!({
        "serverTime": time(heartbeat.server_time.as_ref()),
        "millisBehindLatest": behind,
    })
}

pub(super) fn shard_event(event: &v1::ShardEvent) -> Value {
    let kind = v1::ShardEventKind::try_from(event.kind).unwrap_or(v1::ShardEventKind::Unspecified);
    json!({
        "shardId": event.shard_id,
        "kind": kind.as_str_name(),
        "childShardIds": event.child_shard_ids,
        "parentShardIds": event.parent_shard_ids,
    })
}

pub(super) fn gap(gap: &v1::Gap) -> Value {
    let reason = v1::GapReason::try_from(gap.reason).unwrap_or(v1::GapReason::Unspecified);
    let shards: Vec<Value> = gap
        .shards
        .iter()
        .map(|shard| {
            json!({
                "shardId": shard.shard_id,
                "fromSequenceNumber": shard.from_sequence_number,
                "toSequenceNumber": shard.to_sequence_number,
                "recordsMissed": shard.records_missed,
            })
        })
        .collect();
    json!({ "reason": reason.as_str_name(), "shards": shards })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_text_when_they_can_be_and_base64_otherwise() {
        let mut record = v1::Record {
            partition_key: "k".into(),
            data: b"{\"t\":\"line\nbreak\"}".to_vec().into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            sub_sequence_number: None,
            approximate_arrival_timestamp: Some(prost_types::Timestamp {
                seconds: 1_738_324_800,
                nanos: 250_000_000,
            }),
            explicit_hash_key: String::new(),
        };
        let text = serde_json::to_value(Record::new("shardId-000000000000", &record)).unwrap();
        assert_eq!(
            text,
            json!({
                "shardId": "shardId-000000000000",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "partitionKey": "k",
                "approximateArrivalTimestamp": "2025-01-31T12:00:00.25Z",
                "dataEncoding": "utf8",
                "data": "{\"t\":\"line\nbreak\"}",
            })
        );
        record.data = vec![0xff, 0x00, 0x10].into();
        record.sub_sequence_number = Some(3);
        let binary = serde_json::to_value(Record::new("s", &record)).unwrap();
        assert_eq!(binary["dataEncoding"], "base64");
        assert_eq!(binary["data"], "/wAQ");
        assert_eq!(binary["subSequenceNumber"], 3);
        // One line, whatever the data holds: an SSE `data:` line cannot span lines.
        assert!(
            !serde_json::to_string(&Record::new("s", &record))
                .unwrap()
                .contains('\n')
        );
    }

    #[test]
    fn times_outside_rfc_3339_are_null_not_a_panic() {
        let far = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(time(Some(&far)), None);
        assert_eq!(time(None), None);
    }
}
