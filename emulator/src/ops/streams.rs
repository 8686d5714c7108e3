//! CreateStream, DeleteStream, DescribeStream, DescribeStreamSummary, ListStreams.

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::protocol::{self, epoch_seconds};
use crate::state::Stream;

/// The shard count of an ON_DEMAND stream (AWS starts them with 4).
const ON_DEMAND_SHARDS: u32 = 4;

#[derive(Debug, Deserialize)]
pub(crate) struct CreateStreamInput {
    #[serde(rename = "StreamName")]
    name: String,
    #[serde(rename = "ShardCount")]
    shard_count: Option<u32>,
    #[serde(rename = "StreamModeDetails")]
    mode: Option<StreamModeDetails>,
}

#[derive(Debug, Deserialize)]
struct StreamModeDetails {
    #[serde(rename = "StreamMode")]
    mode: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamRef {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
}

impl StreamRef {
    pub(crate) fn name(&self) -> Result<&str, KinesisError> {
        protocol::stream_name(self.name.as_deref(), self.arn.as_deref())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeleteStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "EnforceConsumerDeletion", default)]
    enforce_consumer_deletion: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DescribeStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "Limit")]
    limit: Option<usize>,
    #[serde(rename = "ExclusiveStartShardId")]
    exclusive_start_shard_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListStreamsInput {
    #[serde(rename = "Limit")]
    limit: Option<usize>,
    #[serde(rename = "ExclusiveStartStreamName")]
    exclusive_start: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

pub(crate) fn create_stream(
    shared: &Arc<Shared>,
    input: CreateStreamInput,
) -> Result<Value, KinesisError> {
    let on_demand = input.mode.is_some_and(|m| m.mode == "ON_DEMAND");
    let shards = match (input.shard_count, on_demand) {
        (Some(count), _) => count,
        (None, true) => ON_DEMAND_SHARDS,
        (None, false) => {
            return Err(KinesisError::InvalidArgument(
                "ShardCount is required for a PROVISIONED stream".into(),
            ));
        }
    };
    shared.store.create_stream(&input.name, shards, on_demand)?;
    Ok(json!({}))
}

pub(crate) fn delete_stream(
    shared: &Arc<Shared>,
    input: DeleteStreamInput,
) -> Result<Value, KinesisError> {
    let consumers = shared
        .store
        .delete_stream(input.stream.name()?, input.enforce_consumer_deletion)?;
    for arn in consumers {
        shared.subscriptions.end_consumer(&arn);
    }
    Ok(json!({}))
}

fn mode_details(stream: &Stream) -> Value {
    json!({ "StreamMode": if stream.on_demand { "ON_DEMAND" } else { "PROVISIONED" } })
}

fn retention_hours(shared: &Shared) -> u64 {
    (shared.settings.retention.as_secs() / 3600).max(1)
}

pub(crate) fn describe_stream(
    shared: &Arc<Shared>,
    input: DescribeStreamInput,
) -> Result<Value, KinesisError> {
    let limit = input.limit.unwrap_or(100).clamp(1, 10_000);
    let inner = shared.store.lock();
    let stream = inner.stream(input.stream.name()?)?;
    let after = input.exclusive_start_shard_id.as_deref();
    let mut shards = stream
        .shards
        .iter()
        .filter(|s| after.is_none_or(|after| s.id.as_str() > after));
    let page: Vec<Value> = shards.by_ref().take(limit).map(|s| s.to_json()).collect();
    let has_more = shards.next().is_some();
    Ok(json!({
        "StreamDescription": {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(stream),
            "Shards": page,
            "HasMoreShards": has_more,
            "RetentionPeriodHours": retention_hours(shared),
            "StreamCreationTimestamp": epoch_seconds(stream.created),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
        }
    }))
}

pub(crate) fn describe_stream_summary(
    shared: &Arc<Shared>,
    input: StreamRef,
) -> Result<Value, KinesisError> {
    let inner = shared.store.lock();
    let stream = inner.stream(input.name()?)?;
    Ok(json!({
        "StreamDescriptionSummary": {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(stream),
            "RetentionPeriodHours": retention_hours(shared),
            "StreamCreationTimestamp": epoch_seconds(stream.created),
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
            "OpenShardCount": stream.open_shard_count(),
            "ConsumerCount": stream.consumers.len(),
        }
    }))
}

pub(crate) fn list_streams(
    shared: &Arc<Shared>,
    input: ListStreamsInput,
) -> Result<Value, KinesisError> {
    let limit = input.limit.unwrap_or(100).clamp(1, 10_000);
    // The next token is the last name of the previous page.
    let after = input.next_token.or(input.exclusive_start);
    let inner = shared.store.lock();
    let mut streams = inner
        .streams
        .values()
        .filter(|s| after.as_deref().is_none_or(|after| s.name.as_str() > after));
    let page: Vec<&Stream> = streams.by_ref().take(limit).collect();
    let has_more = streams.next().is_some();
    let mut output = json!({
        "StreamNames": page.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "HasMoreStreams": has_more,
        "StreamSummaries": page.iter().map(|s| json!({
            "StreamName": s.name,
            "StreamARN": s.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": mode_details(s),
            "StreamCreationTimestamp": epoch_seconds(s.created),
        })).collect::<Vec<_>>(),
    });
    if has_more && let Some(last) = page.last() {
        output["NextToken"] = last.name.clone().into();
    }
    Ok(output)
}
