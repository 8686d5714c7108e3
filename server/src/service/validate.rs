//! Validation of request fields. Every message says which field is wrong and what to do.

use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use kinesis_relay_api::{cursor::Cursor, v1};
use tonic::Status;

use crate::subscription::{KeyFilter, LagPolicy, Start, SubscriptionSpec};

/// Most shard ids one request may name.
pub const MAX_SHARD_IDS: usize = 1_000;
/// Most partition keys plus prefixes one request may name.
pub const MAX_KEY_FILTERS: usize = 1_000;
/// Longest partition key Kinesis allows (256 Unicode characters; bytes bound it here).
pub const MAX_PARTITION_KEY_BYTES: usize = 1_024;
/// Largest batch a subscriber may ask for.
pub const MAX_BATCH_LIMIT: u32 = 10_000;
/// Batch size when the request leaves it at 0.
pub const DEFAULT_BATCH: usize = 500;

/// The call's deadline from its `grpc-timeout` header (PROTOCOL-HTTP2.md: 1 to 8 digits
/// and a unit H, M, S, m, u or n), `None` without one.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Result<Option<Duration>, Status> {
    let Some(value) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let invalid = || {
        Status::invalid_argument(format!(
            "grpc-timeout {value:?} is not a gRPC timeout: 1 to 8 digits and a unit (H, M, S, m, u, n), e.g. 2S"
        ))
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    Ok(Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(invalid()),
    }))
}

/// Checks a stream name's shape (Kinesis: 1-128 of `[a-zA-Z0-9_.-]`).
pub fn stream_name(name: &str) -> Result<(), Status> {
    if name.len() > 128 || !name.bytes().all(valid_name_byte) {
        return Err(Status::invalid_argument(format!(
            "stream: {:?} is not a Kinesis stream name (1-128 characters of a-z, A-Z, 0-9, '_', '.', '-')",
            truncate(name)
        )));
    }
    Ok(())
}

fn valid_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Shortens what a client sent before quoting it back.
pub fn truncate(text: &str) -> String {
    if text.len() <= 64 {
        return text.to_owned();
    }
    let mut end = 64;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Turns a request into a subscription spec (the stream is resolved by the caller).
pub fn subscribe_request(
    request: &v1::SubscribeRequest,
    default_lag: LagPolicy,
) -> Result<SubscriptionSpec, Status> {
    if request.shard_ids.len() > MAX_SHARD_IDS {
        return Err(Status::invalid_argument(format!(
            "shard_ids: {} shard ids given, at most {MAX_SHARD_IDS} are allowed; leave it empty to read every shard",
            request.shard_ids.len()
        )));
    }
    let mut shard_ids = BTreeSet::new();
    for id in &request.shard_ids {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(valid_name_byte) {
            return Err(Status::invalid_argument(format!(
                "shard_ids: {:?} is not a shard id (like shardId-000000000000); DescribeStream lists them",
                truncate(id)
            )));
        }
        shard_ids.insert(id.clone());
    }
    let filter_count = request.partition_keys.len() + request.partition_key_prefixes.len();
    if filter_count > MAX_KEY_FILTERS {
        return Err(Status::invalid_argument(format!(
            "partition_keys and partition_key_prefixes: {filter_count} given, at most {MAX_KEY_FILTERS} together"
        )));
    }
    for (field, values) in [
        ("partition_keys", &request.partition_keys),
        ("partition_key_prefixes", &request.partition_key_prefixes),
    ] {
        for value in values {
            if value.is_empty() || value.len() > MAX_PARTITION_KEY_BYTES {
                return Err(Status::invalid_argument(format!(
                    "{field}: each entry must be 1 to {MAX_PARTITION_KEY_BYTES} bytes long, got {} bytes",
                    value.len()
                )));
            }
        }
    }
    let filter = KeyFilter {
        keys: request
            .partition_keys
            .iter()
            .cloned()
            .collect::<HashSet<_>>(),
        prefixes: request.partition_key_prefixes.clone(),
    };
    let on_lag = match v1::LagPolicy::try_from(request.on_lag) {
        Ok(v1::LagPolicy::Unspecified) => default_lag,
        Ok(v1::LagPolicy::Disconnect) => LagPolicy::Disconnect,
        Ok(v1::LagPolicy::Skip) => LagPolicy::Skip,
        Ok(v1::LagPolicy::CatchUp) => LagPolicy::CatchUp,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "on_lag: {} is not a LagPolicy; use LAG_POLICY_CATCH_UP, LAG_POLICY_DISCONNECT or LAG_POLICY_SKIP",
                request.on_lag
            )));
        }
    };
    let max_batch = match request.max_records_per_batch {
        0 => DEFAULT_BATCH,
        n if n > MAX_BATCH_LIMIT => {
            return Err(Status::invalid_argument(format!(
                "max_records_per_batch: {n} is above the limit of {MAX_BATCH_LIMIT}; use 0 for the default ({DEFAULT_BATCH})"
            )));
        }
        n => n as usize,
    };
    use v1::subscribe_request::StartingPosition;
    let start = match &request.starting_position {
        None | Some(StartingPosition::Latest(_)) => Start::Latest,
        Some(StartingPosition::Earliest(_)) => Start::Earliest,
        Some(StartingPosition::AfterCursor(text)) => Start::AfterCursor(
            Cursor::decode(text)
                .map_err(|err| Status::invalid_argument(format!("after_cursor: {err}")))?,
        ),
        Some(StartingPosition::AtTimestamp(ts)) => Start::AtTimestamp(timestamp(ts)?),
        Some(StartingPosition::TrimHorizon(_)) => Start::TrimHorizon,
    };
    Ok(SubscriptionSpec {
        shard_ids: (!shard_ids.is_empty()).then_some(shard_ids),
        start,
        filter,
        on_lag,
        max_batch,
    })
}

fn timestamp(ts: &prost_types::Timestamp) -> Result<SystemTime, Status> {
    if ts.seconds < 0 || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(Status::invalid_argument(
            "at_timestamp: must be a time after 1970-01-01T00:00:00Z with nanos in 0..1e9",
        ));
    }
    UNIX_EPOCH
        .checked_add(Duration::new(ts.seconds as u64, ts.nanos as u32))
        .ok_or_else(|| Status::invalid_argument("at_timestamp: too far in the future"))
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn check(request: v1::SubscribeRequest) -> Result<SubscriptionSpec, Status> {
        subscribe_request(&request, LagPolicy::Disconnect)
    }

    #[test]
    fn rejects_each_bad_field_with_its_name() {
        let cases = [
            (
                v1::SubscribeRequest {
                    shard_ids: vec!["x".into(); MAX_SHARD_IDS + 1],
                    ..Default::default()
                },
                "shard_ids",
            ),
            (
                v1::SubscribeRequest {
                    shard_ids: vec!["bad id!".into()],
                    ..Default::default()
                },
                "shard_ids",
            ),
            (
                v1::SubscribeRequest {
                    partition_key_prefixes: vec!["p".repeat(1 << 20)],
                    ..Default::default()
                },
                "partition_key_prefixes",
            ),
            (
                v1::SubscribeRequest {
                    partition_keys: vec![String::new()],
                    ..Default::default()
                },
                "partition_keys",
            ),
            (
                v1::SubscribeRequest {
                    on_lag: 42,
                    ..Default::default()
                },
                "on_lag",
            ),
            (
                v1::SubscribeRequest {
                    max_records_per_batch: MAX_BATCH_LIMIT + 1,
                    ..Default::default()
                },
                "max_records_per_batch",
            ),
            (
                v1::SubscribeRequest {
                    starting_position: Some(v1::subscribe_request::StartingPosition::AfterCursor(
                        "%%%".into(),
                    )),
                    ..Default::default()
                },
                "after_cursor",
            ),
            (
                v1::SubscribeRequest {
                    starting_position: Some(v1::subscribe_request::StartingPosition::AtTimestamp(
                        prost_types::Timestamp {
                            seconds: -5,
                            nanos: 0,
                        },
                    )),
                    ..Default::default()
                },
                "at_timestamp",
            ),
        ];
        for (request, field) in cases {
            let status = check(request).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().starts_with(field), "{}", status.message());
            assert!(
                status.message().len() < 300,
                "message too long: {}",
                status.message()
            );
        }
    }

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_says() {
        let parse = |value: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("grpc-timeout", value.parse().unwrap());
            grpc_timeout(&metadata)
        };
        assert_eq!(parse("2S").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse("3M").unwrap(), Some(Duration::from_secs(180)));
        assert_eq!(parse("250m").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(
            parse("99999999n").unwrap(),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "2", "2s", "123456789S", "-1S", "1.5S"] {
            let status = parse(bad).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
            assert!(status.message().contains("grpc-timeout"));
        }
        assert_eq!(grpc_timeout(&Default::default()).unwrap(), None);
    }

    #[test]
    fn defaults() {
        let spec = check(v1::SubscribeRequest::default()).unwrap();
        assert!(spec.shard_ids.is_none());
        assert!(matches!(spec.start, Start::Latest));
        assert_eq!(spec.on_lag, LagPolicy::Disconnect);
        assert_eq!(spec.max_batch, DEFAULT_BATCH);
        assert!(stream_name("demo-1.x_y").is_ok());
        assert!(stream_name("no spaces").is_err());
    }
}
