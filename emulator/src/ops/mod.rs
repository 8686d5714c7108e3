//! The Kinesis operations, one module per group, and the dispatch by operation name.

mod consumers;
mod records;
mod shards;
mod streams;
mod subscribe;

use http::Response;
use std::sync::Arc;

use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::protocol::{self, Body, parse_input};
use crate::reading::StartingPosition;
use crate::sequence::SequenceNumber;
use crate::server::ConnectionState;

/// Runs the operation `name` on a JSON request body.
pub(crate) fn call(
    shared: &Arc<Shared>,
    connection: &ConnectionState,
    name: &str,
    body: &[u8],
) -> Result<Response<Body>, KinesisError> {
    let json = |value: serde_json::Value| Ok(protocol::json_response(&value));
    match name {
        "CreateStream" => json(streams::create_stream(shared, parse_input(body)?)?),
        "DeleteStream" => json(streams::delete_stream(shared, parse_input(body)?)?),
        "DescribeStream" => json(streams::describe_stream(shared, parse_input(body)?)?),
        "DescribeStreamSummary" => json(streams::describe_stream_summary(
            shared,
            parse_input(body)?,
        )?),
        "ListStreams" => json(streams::list_streams(shared, parse_input(body)?)?),
        "ListShards" => json(shards::list_shards(shared, parse_input(body)?)?),
        "SplitShard" => json(shards::split_shard(shared, parse_input(body)?)?),
        "MergeShards" => json(shards::merge_shards(shared, parse_input(body)?)?),
        "UpdateShardCount" => json(shards::update_shard_count(shared, parse_input(body)?)?),
        "PutRecord" => json(records::put_record(shared, parse_input(body)?)?),
        "PutRecords" => records::put_records(shared, parse_input(body)?),
        "GetShardIterator" => json(records::get_shard_iterator(shared, parse_input(body)?)?),
        "GetRecords" => records::get_records(shared, parse_input(body)?),
        "RegisterStreamConsumer" => json(consumers::register(shared, parse_input(body)?)?),
        "DescribeStreamConsumer" => json(consumers::describe(shared, parse_input(body)?)?),
        "ListStreamConsumers" => json(consumers::list(shared, parse_input(body)?)?),
        "DeregisterStreamConsumer" => json(consumers::deregister(shared, parse_input(body)?)?),
        "SubscribeToShard" => subscribe::subscribe_to_shard(shared, connection, parse_input(body)?),
        other => Err(KinesisError::UnknownOperation(format!(
            "operation {other} is not supported by the emulator"
        ))),
    }
}

/// Parses the starting position of GetShardIterator and SubscribeToShard.
pub(crate) fn starting_position(
    kind: &str,
    sequence_number: Option<&str>,
    timestamp: Option<&serde_json::Value>,
) -> Result<StartingPosition, KinesisError> {
    let sequence = || {
        let text = sequence_number.ok_or_else(|| {
            KinesisError::InvalidArgument(format!("{kind} requires a sequence number"))
        })?;
        SequenceNumber::parse(text).ok_or_else(|| {
            KinesisError::InvalidArgument(format!("invalid sequence number {text:?}"))
        })
    };
    Ok(match kind {
        "LATEST" => StartingPosition::Latest,
        "TRIM_HORIZON" => StartingPosition::TrimHorizon,
        "AT_SEQUENCE_NUMBER" => StartingPosition::AtSequenceNumber(sequence()?),
        "AFTER_SEQUENCE_NUMBER" => StartingPosition::AfterSequenceNumber(sequence()?),
        "AT_TIMESTAMP" => {
            let timestamp = timestamp.ok_or_else(|| {
                KinesisError::InvalidArgument("AT_TIMESTAMP requires a Timestamp".into())
            })?;
            StartingPosition::AtTimestamp(protocol::parse_timestamp(timestamp)?)
        }
        other => {
            return Err(KinesisError::InvalidArgument(format!(
                "unknown starting position type {other:?}"
            )));
        }
    })
}
