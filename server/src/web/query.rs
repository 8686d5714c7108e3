//! The query parameters of `GET /v1/streams/{stream}/records` (and the `Last-Event-ID`
//! header) as the `SubscribeRequest` a gRPC client would send, so that the service checks
//! them as it checks every request; its messages then name the parameters, not the fields.

use kinesis_relay_api::v1::{self, subscribe_request::StartingPosition};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tonic::{Code, Status};

use crate::service::validate::truncate;

/// The parameters, for messages.
const KNOWN: &str =
    "cursor, start, at_timestamp, shard_id, partition_key, partition_key_prefix, on_lag";

/// The request for `stream` that `query` describes. `last_event_id` (what a reconnecting
/// `EventSource` sends) wins over every starting position in the query: the query is the
/// one the stream was first opened with.
pub(super) fn subscribe_request(
    stream: String,
    query: Option<&str>,
    last_event_id: Option<String>,
) -> Result<v1::SubscribeRequest, Status> {
    let mut request = v1::SubscribeRequest {
        stream,
        ..Default::default()
    };
    let mut position: Option<(&'static str, StartingPosition)> = None;
    let mut on_lag = None;
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).map_err(|err| bad(format!("a parameter name {err}")))?;
        let value = decode(value).map_err(|err| bad(format!("{name}: the value {err}")))?;
        let starting = match name.as_str() {
            "shard_id" => {
                request.shard_ids.push(value);
                continue;
            }
            "partition_key" => {
                request.partition_keys.push(value);
                continue;
            }
            "partition_key_prefix" => {
                request.partition_key_prefixes.push(value);
                continue;
            }
            "on_lag" => {
                if on_lag.replace(lag_policy(&value)?).is_some() {
                    return Err(bad("on_lag: given twice; give it once".to_owned()));
                }
                continue;
            }
            "cursor" if value.is_empty() => {
                return Err(bad(
                    "cursor: empty; pass a cursor exactly as the relay sent it (an event's id)"
                        .to_owned(),
                ));
            }
            "cursor" => ("cursor", StartingPosition::AfterCursor(value)),
            "start" => ("start", start(&value)?),
            "at_timestamp" => ("at_timestamp", at_timestamp(&value)?),
            _ => {
                return Err(bad(format!(
                    "{:?} is not a parameter of this endpoint; the parameters are {KNOWN}",
                    truncate(&name)
                )));
            }
        };
        if let Some((earlier, _)) = position.replace(starting) {
            return Err(bad(format!(
                "{earlier} and {name}: give at most one starting position (cursor, start or at_timestamp)"
            )));
        }
    }
    request.on_lag = on_lag.unwrap_or(v1::LagPolicy::Unspecified).into();
    request.starting_position = match last_event_id {
        Some(cursor) => Some(StartingPosition::AfterCursor(cursor)),
        None => position.map(|(_, position)| position),
    };
    Ok(request)
}

/// Rewrites what the service says of a request field to name the parameter (or header)
/// it came from.
pub(super) fn in_http_terms(status: Status, cursor_from_header: bool) -> Status {
    if status.code() != Code::InvalidArgument {
        return status;
    }
    let cursor = if cursor_from_header {
        "Last-Event-ID"
    } else {
        "cursor"
    };
    let renames = [
        ("after_cursor:", cursor),
        ("shard_ids:", "shard_id:"),
        (
            "partition_keys and partition_key_prefixes:",
            "partition_key and partition_key_prefix:",
        ),
        ("partition_keys:", "partition_key:"),
        ("partition_key_prefixes:", "partition_key_prefix:"),
    ];
    let message = status.message();
    for (field, parameter) in renames {
        if let Some(rest) = message.strip_prefix(field) {
            let parameter = parameter.trim_end_matches(':');
            return Status::invalid_argument(format!("{parameter}:{rest}"));
        }
    }
    status
}

fn bad(message: String) -> Status {
    Status::invalid_argument(message)
}

fn start(value: &str) -> Result<StartingPosition, Status> {
    match value.replace('-', "_").as_str() {
        "latest" => Ok(StartingPosition::Latest(v1::Latest {})),
        "earliest" => Ok(StartingPosition::Earliest(v1::Earliest {})),
        "trim_horizon" => Ok(StartingPosition::TrimHorizon(v1::TrimHorizon {})),
        _ => Err(bad(format!(
            "start: {:?} is not a starting position; use latest, earliest or trim_horizon (or cursor=, or at_timestamp=)",
            truncate(value)
        ))),
    }
}

fn at_timestamp(value: &str) -> Result<StartingPosition, Status> {
    let time = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        bad(format!(
            "at_timestamp: {:?} is not an RFC 3339 time; write it like 2025-01-31T12:00:00Z (a + in an offset must be sent as %2B)",
            truncate(value)
        ))
    })?;
    Ok(StartingPosition::AtTimestamp(prost_types::Timestamp {
        seconds: time.unix_timestamp(),
        nanos: time.nanosecond() as i32,
    }))
}

fn lag_policy(value: &str) -> Result<v1::LagPolicy, Status> {
    let name = value.to_ascii_lowercase().replace('-', "_");
    match name.strip_prefix("lag_policy_").unwrap_or(&name) {
        "catch_up" => Ok(v1::LagPolicy::CatchUp),
        "skip" => Ok(v1::LagPolicy::Skip),
        "disconnect" => Ok(v1::LagPolicy::Disconnect),
        _ => Err(bad(format!(
            "on_lag: {:?} is not a lag policy; use catch_up, skip or disconnect",
            truncate(value)
        ))),
    }
}

/// Decodes one part of a query string as forms encode it: `%XX` escapes, `+` for a space,
/// and UTF-8 text.
fn decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let digit = |offset: usize| bytes.get(at + offset).and_then(|b| hex(*b));
                let (Some(high), Some(low)) = (digit(1), digit(2)) else {
                    return Err("has a % that is not followed by two hex digits");
                };
                out.push((high << 4) | low);
                at += 2;
            }
            other => out.push(other),
        }
        at += 1;
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded")
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<v1::SubscribeRequest, Status> {
        subscribe_request("demo".into(), Some(query), None)
    }

    #[test]
    fn every_parameter_lands_in_its_field() {
        let request = parse(
            "shard_id=shardId-000000000001&shard_id=shardId-000000000002&partition_key=a%2Bb&partition_key=c+d&partition_key_prefix=sensor-&on_lag=skip&start=earliest",
        )
        .unwrap();
        assert_eq!(request.stream, "demo");
        assert_eq!(
            request.shard_ids,
            ["shardId-000000000001", "shardId-000000000002"]
        );
        assert_eq!(request.partition_keys, ["a+b", "c d"]);
        assert_eq!(request.partition_key_prefixes, ["sensor-"]);
        assert_eq!(request.on_lag, v1::LagPolicy::Skip as i32);
        assert!(matches!(
            request.starting_position,
            Some(StartingPosition::Earliest(_))
        ));
        let request = parse("at_timestamp=2025-01-31T12:00:00.5Z&on_lag=catch-up").unwrap();
        let Some(StartingPosition::AtTimestamp(ts)) = request.starting_position else {
            panic!("{request:?}");
        };
        assert_eq!((ts.seconds, ts.nanos), (1_738_324_800, 500_000_000));
        assert_eq!(request.on_lag, v1::LagPolicy::CatchUp as i32);
        assert_eq!(parse("").unwrap().starting_position, None);
    }

    #[test]
    fn last_event_id_wins_over_the_query() {
        let request = subscribe_request(
            "demo".into(),
            Some("start=earliest"),
            Some("header-cursor".into()),
        )
        .unwrap();
        assert_eq!(
            request.starting_position,
            Some(StartingPosition::AfterCursor("header-cursor".into()))
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, named) in [
            ("start=newest", "start:"),
            ("at_timestamp=yesterday", "at_timestamp:"),
            ("on_lag=wait", "on_lag:"),
            ("on_lag=skip&on_lag=skip", "on_lag:"),
            ("cursor=", "cursor:"),
            ("start=latest&cursor=abc", "start and cursor:"),
            ("partition_keys=a", "\"partition_keys\" is not a parameter"),
            ("shard_id=%zz", "shard_id:"),
            ("shard_id=%ff", "shard_id:"),
            ("token=secret", "\"token\" is not a parameter"),
        ] {
            let status = parse(query).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{query}");
            assert!(
                status.message().starts_with(named),
                "{query}: {}",
                status.message()
            );
        }
    }

    #[test]
    fn field_names_become_parameter_names() {
        let status = in_http_terms(
            Status::invalid_argument("after_cursor: the cursor is not valid base64url"),
            true,
        );
        assert_eq!(
            status.message(),
            "Last-Event-ID: the cursor is not valid base64url"
        );
        let status = in_http_terms(Status::invalid_argument("shard_ids: \"x y\" is not"), false);
        assert_eq!(status.message(), "shard_id: \"x y\" is not");
        let status = in_http_terms(Status::not_found("shard_ids: kept"), false);
        assert_eq!(status.message(), "shard_ids: kept");
    }
}
