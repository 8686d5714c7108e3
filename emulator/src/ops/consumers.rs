//! RegisterStreamConsumer, DescribeStreamConsumer, ListStreamConsumers,
//! DeregisterStreamConsumer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::protocol;

#[derive(Debug, Deserialize)]
pub(crate) struct ConsumerRef {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "ConsumerName")]
    name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    arn: Option<String>,
}

impl ConsumerRef {
    fn stream(&self) -> Result<Option<&str>, KinesisError> {
        self.stream_arn
            .as_deref()
            .map(|arn| protocol::stream_name(None, Some(arn)))
            .transpose()
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListStreamConsumersInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<usize>,
}

pub(crate) fn register(shared: &Arc<Shared>, input: ConsumerRef) -> Result<Value, KinesisError> {
    let stream = input
        .stream()?
        .ok_or_else(|| KinesisError::InvalidArgument("StreamARN is required".into()))?;
    let name = input
        .name
        .as_deref()
        .ok_or_else(|| KinesisError::InvalidArgument("ConsumerName is required".into()))?;
    let consumer = shared.store.register_consumer(stream, name)?;
    Ok(json!({ "Consumer": consumer.to_json() }))
}

pub(crate) fn describe(shared: &Arc<Shared>, input: ConsumerRef) -> Result<Value, KinesisError> {
    let consumer = shared.store.describe_consumer(
        input.stream()?,
        input.name.as_deref(),
        input.arn.as_deref(),
    )?;
    Ok(json!({ "ConsumerDescription": consumer.to_description_json() }))
}

pub(crate) fn list(
    shared: &Arc<Shared>,
    input: ListStreamConsumersInput,
) -> Result<Value, KinesisError> {
    let stream = protocol::stream_name(None, Some(&input.stream_arn))?;
    let max = input.max_results.unwrap_or(100).clamp(1, 10_000);
    let after = match &input.next_token {
        None => None,
        Some(token) => Some(
            STANDARD
                .decode(token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| KinesisError::InvalidArgument("invalid NextToken".into()))?,
        ),
    };
    let inner = shared.store.lock();
    let stream = inner.stream(stream)?;
    let mut consumers = stream
        .consumers
        .values()
        .filter(|c| after.as_deref().is_none_or(|after| c.name.as_str() > after));
    let page: Vec<_> = consumers.by_ref().take(max).collect();
    let mut output = json!({ "Consumers": page.iter().map(|c| c.to_json()).collect::<Vec<_>>() });
    if consumers.next().is_some()
        && let Some(last) = page.last()
    {
        output["NextToken"] = STANDARD.encode(&last.name).into();
    }
    Ok(output)
}

pub(crate) fn deregister(shared: &Arc<Shared>, input: ConsumerRef) -> Result<Value, KinesisError> {
    let arn = shared.store.deregister_consumer(
        input.stream()?,
        input.name.as_deref(),
        input.arn.as_deref(),
    )?;
    shared.subscriptions.end_consumer(&arn);
    Ok(json!({}))
}
