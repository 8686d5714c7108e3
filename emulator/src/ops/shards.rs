//! ListShards, SplitShard, MergeShards, UpdateShardCount.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;

use super::streams::StreamRef;
use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::protocol;
use crate::state::Shard;

#[derive(Debug, Deserialize)]
pub(crate) struct ListShardsInput {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<usize>,
    #[serde(rename = "ExclusiveStartShardId")]
    exclusive_start_shard_id: Option<String>,
    #[serde(rename = "ShardFilter")]
    filter: Option<ShardFilter>,
}

#[derive(Debug, Deserialize)]
struct ShardFilter {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "ShardId")]
    shard_id: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SplitShardInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "ShardToSplit")]
    shard: String,
    #[serde(rename = "NewStartingHashKey")]
    new_starting_hash_key: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MergeShardsInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "ShardToMerge")]
    shard: String,
    #[serde(rename = "AdjacentShardToMerge")]
    adjacent: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UpdateShardCountInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "TargetShardCount")]
    target: u32,
}

/// A shard filter, parsed.
enum Filter {
    All,
    AfterShardId(String),
    OpenOnly,
    OpenAt(SystemTime),
    OpenFrom(SystemTime),
}

impl Filter {
    fn parse(filter: Option<ShardFilter>) -> Result<Self, KinesisError> {
        let Some(filter) = filter else {
            return Ok(Self::All);
        };
        let timestamp = || {
            filter
                .timestamp
                .as_ref()
                .ok_or_else(|| {
                    KinesisError::InvalidArgument(format!("{} needs a Timestamp", filter.kind))
                })
                .and_then(protocol::parse_timestamp)
        };
        Ok(match filter.kind.as_str() {
            "AFTER_SHARD_ID" => Self::AfterShardId(filter.shard_id.clone().ok_or_else(|| {
                KinesisError::InvalidArgument("AFTER_SHARD_ID needs a ShardId".into())
            })?),
            "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" => Self::All,
            "AT_LATEST" => Self::OpenOnly,
            "AT_TIMESTAMP" => Self::OpenAt(timestamp()?),
            "FROM_TIMESTAMP" => Self::OpenFrom(timestamp()?),
            other => {
                return Err(KinesisError::InvalidArgument(format!(
                    "unknown ShardFilter type {other:?}"
                )));
            }
        })
    }

    fn keeps(&self, shard: &Shard) -> bool {
        let open_at = |t: &SystemTime| shard.closed.is_none_or(|closed| closed > *t);
        match self {
            Self::All => true,
            Self::AfterShardId(id) => shard.id.as_str() > id.as_str(),
            Self::OpenOnly => shard.is_open(),
            Self::OpenAt(t) => shard.created <= *t && open_at(t),
            Self::OpenFrom(t) => open_at(t),
        }
    }
}

fn encode_token(stream: &str, last_shard: &str) -> String {
    STANDARD.encode(format!("{stream}|{last_shard}"))
}

fn decode_token(token: &str) -> Result<(String, String), KinesisError> {
    let invalid = || KinesisError::InvalidArgument("invalid NextToken".into());
    let bytes = STANDARD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (stream, shard) = text.split_once('|').ok_or_else(invalid)?;
    Ok((stream.to_owned(), shard.to_owned()))
}

pub(crate) fn list_shards(
    shared: &Arc<Shared>,
    input: ListShardsInput,
) -> Result<Value, KinesisError> {
    let max = input.max_results.unwrap_or(1000).clamp(1, 10_000);
    let (stream_name, after) = match &input.next_token {
        Some(token) => {
            if input.name.is_some() || input.exclusive_start_shard_id.is_some() {
                return Err(KinesisError::InvalidArgument(
                    "NextToken cannot be combined with StreamName or ExclusiveStartShardId".into(),
                ));
            }
            let (stream, shard) = decode_token(token)?;
            (stream, Some(shard))
        }
        None => (
            protocol::stream_name(input.name.as_deref(), input.arn.as_deref())?.to_owned(),
            input.exclusive_start_shard_id.clone(),
        ),
    };
    let filter = Filter::parse(input.filter)?;
    let inner = shared.store.lock();
    let stream = inner.stream(&stream_name)?;
    let mut shards = stream
        .shards
        .iter()
        .filter(|s| filter.keeps(s) && after.as_deref().is_none_or(|after| s.id.as_str() > after));
    let page: Vec<&Shard> = shards.by_ref().take(max).collect();
    let mut output = json!({ "Shards": page.iter().map(|s| s.to_json()).collect::<Vec<_>>() });
    if shards.next().is_some()
        && let Some(last) = page.last()
    {
        output["NextToken"] = encode_token(&stream.name, &last.id).into();
    }
    Ok(output)
}

fn parse_hash_key(text: &str) -> Result<u128, KinesisError> {
    text.parse()
        .map_err(|_| KinesisError::InvalidArgument(format!("invalid hash key {text:?}")))
}

pub(crate) fn split_shard(
    shared: &Arc<Shared>,
    input: SplitShardInput,
) -> Result<Value, KinesisError> {
    let key = parse_hash_key(&input.new_starting_hash_key)?;
    shared
        .store
        .split_shard(input.stream.name()?, &input.shard, key)?;
    Ok(json!({}))
}

pub(crate) fn merge_shards(
    shared: &Arc<Shared>,
    input: MergeShardsInput,
) -> Result<Value, KinesisError> {
    shared
        .store
        .merge_shards(input.stream.name()?, &input.shard, &input.adjacent)?;
    Ok(json!({}))
}

pub(crate) fn update_shard_count(
    shared: &Arc<Shared>,
    input: UpdateShardCountInput,
) -> Result<Value, KinesisError> {
    let name = input.stream.name()?;
    let current = shared.store.update_shard_count(name, input.target)?;
    Ok(json!({
        "StreamName": name,
        "StreamARN": protocol::stream_arn(name),
        "CurrentShardCount": current,
        "TargetShardCount": input.target,
    }))
}
