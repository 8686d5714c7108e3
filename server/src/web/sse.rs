//! Subscribe's responses as Server-Sent Events. Each response the subscription yields
//! (the same pre-encoded bytes gRPC writes) is decoded and written as text:
//!
//! - each record: an event with no name (an `EventSource`'s `message`), its `id:` the cursor
//!   right after that record and its data the record as JSON;
//! - shard events and gaps: events named `shard` and `gap`, their `id:` the response's cursor;
//! - heartbeats: comment lines (`: heartbeat {...}`), which `EventSource` ignores and keep
//!   proxies from closing an idle connection;
//! - the status that ends a subscription early (lag policy DISCONNECT, shutdown, expired
//!   records): a last event named `error` whose data carries the cursor to resume from.
//!
//! A batch of gRPC records shares one cursor; the events of its records need one each, so
//! that a client resuming from any event's id gets exactly the records after it. The
//! cursor after a record within a batch is the batch's cursor with that shard's position
//! set back to the record (the batch covers one shard; what the cursor says of the other
//! shards is already delivered or filtered out).

use std::{borrow::Cow, convert::Infallible};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, header};
use http_body::Frame;
use http_body_util::StreamBody;
use kinesis_relay_api::{
    cursor::{Cursor, Position},
    v1::{self, subscribe_response::Event},
};
use tonic::{Status, body::Body};

use super::{ApiError, json};
use crate::{service::relay::EncodedStream, wire::EncodedResponse};

/// The 200 answer streaming `first` (if the subscription already yielded it) and the rest
/// of `responses` as events.
pub(super) fn response(
    first: Option<EncodedResponse>,
    responses: EncodedStream,
) -> http::Response<Body> {
    let state = Events {
        first,
        responses,
        ended: false,
    };
    let frames = futures::stream::unfold(state, |mut state| async move {
        let text = state.next_text().await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), state))
    });
    let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer responses (nginx) would hold the events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Where the event text comes from.
struct Events {
    /// A response read before the answer started, sent first.
    first: Option<EncodedResponse>,
    /// The subscription: the same stream a gRPC Subscribe writes.
    responses: EncodedStream,
    /// Set after the `error` event: nothing follows it.
    ended: bool,
}

impl Events {
    /// The text of the next response; `None` when the subscription has ended.
    async fn next_text(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.ended {
                return None;
            }
            let item = match self.first.take() {
                Some(first) => Ok(first),
                None => self.responses.next().await?,
            };
            let text = match item.and_then(|encoded| transcode(&encoded)) {
                Ok(text) => text,
                Err(status) => {
                    self.ended = true;
                    error_event(status)
                }
            };
            // An empty frame would end an HTTP/1.1 chunked body early.
            if !text.is_empty() {
                return Some(text);
            }
        }
    }
}

/// The events of one response.
fn transcode(encoded: &EncodedResponse) -> Result<Vec<u8>, Status> {
    let response = encoded
        .decode()
        .map_err(|err| Status::internal(format!("response encoding: {err}")))?;
    let mut out = Vec::with_capacity(encoded.len() * 2);
    match &response.event {
        Some(Event::Records(batch)) => write_batch(&mut out, batch, &response.cursor)?,
        Some(Event::Heartbeat(heartbeat)) => {
            out.extend_from_slice(b": heartbeat ");
            out.extend_from_slice(json::heartbeat(heartbeat).to_string().as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        Some(Event::ShardEvent(event)) => write_event(
            &mut out,
            Some("shard"),
            Some(&response.cursor),
            &json::shard_event(event),
        )?,
        Some(Event::Gap(gap)) => write_event(
            &mut out,
            Some("gap"),
            Some(&response.cursor),
            &json::gap(gap),
        )?,
        None => {}
    }
    Ok(out)
}

/// One event per record, each with the cursor right after it.
fn write_batch(out: &mut Vec<u8>, batch: &v1::RecordBatch, cursor: &str) -> Result<(), Status> {
    let last = batch.records.len().saturating_sub(1);
    let mut decoded: Option<Cursor> = None;
    for (index, record) in batch.records.iter().enumerate() {
        let id = if index == last {
            Cow::Borrowed(cursor)
        } else {
            let within = match &mut decoded {
                Some(cursor) => cursor,
                None => decoded.insert(Cursor::decode(cursor).map_err(|err| {
                    Status::internal(format!("the relay's own cursor does not decode: {err}"))
                })?),
            };
            let sequence = record.sequence_number.parse().map_err(|_| {
                Status::internal(format!(
                    "record sequence number {:?} does not parse",
                    record.sequence_number
                ))
            })?;
            within.shards.insert(
                batch.shard_id.clone(),
                Position::After {
                    sequence,
                    sub_sequence: record.sub_sequence_number,
                },
            );
            Cow::Owned(within.encode())
        };
        write_event(
            out,
            None,
            Some(&id),
            &json::Record::new(&batch.shard_id, record),
        )?;
    }
    Ok(())
}

/// The last event of a subscription the relay ended with `status`.
fn error_event(status: Status) -> Vec<u8> {
    let error = ApiError::from(status);
    let value = json::error(error.code, &error.message, error.cursor.as_deref());
    let mut out = Vec::new();
    // No id: the cursor is in the data. An `EventSource` that reconnects by itself then
    // resumes after the last record it got, whatever the error said.
    if write_event(&mut out, Some("error"), None, &value).is_err() {
        out = b"event: error\ndata: {\"code\":\"INTERNAL\"}\n\n".to_vec();
    }
    out
}

/// Writes one event. JSON escapes line breaks, so the data is one line; names and cursors
/// (base64url) hold none either.
fn write_event(
    out: &mut Vec<u8>,
    name: Option<&str>,
    id: Option<&str>,
    data: &impl serde::Serialize,
) -> Result<(), Status> {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, data)
        .map_err(|err| Status::internal(format!("event encoding: {err}")))?;
    out.extend_from_slice(b"\n\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use kinesis_relay_api::{cursor::Cursor, sequence::SequenceNumber};
    use tonic::Code;

    use super::*;
    use crate::hub::entry::{Entry, RelayRecord};

    fn batch(shard: &str, sequences: &[u64], cursor: &str) -> EncodedResponse {
        let chunks = sequences
            .iter()
            .map(|sequence| {
                Entry::encode(RelayRecord {
                    partition_key: format!("key-{sequence}"),
                    data: Bytes::from(format!("record {sequence}")),
                    sequence: sequence.to_string().parse().unwrap(),
                    sub_sequence: None,
                    arrival: UNIX_EPOCH,
                    explicit_hash_key: None,
                })
                .encoded
            })
            .collect();
        EncodedResponse::record_batch(shard, chunks, sequences.len(), cursor, None)
    }

    /// (id, data) of each event in `text`.
    fn events(text: &[u8]) -> Vec<(Option<String>, serde_json::Value)> {
        let text = std::str::from_utf8(text).unwrap();
        text.split("\n\n")
            .filter(|event| !event.is_empty())
            .map(|event| {
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(str::to_owned)
                };
                let data = field("data: ").unwrap();
                (field("id: "), serde_json::from_str(&data).unwrap())
            })
            .collect()
    }

    #[test]
    fn each_record_carries_the_cursor_right_after_it() {
        let mut batch_cursor = Cursor::new("demo");
        let after = |sequence: u64| Position::After {
            sequence: sequence.to_string().parse::<SequenceNumber>().unwrap(),
            sub_sequence: None,
        };
        batch_cursor.shards.insert("shard-a".into(), after(13));
        batch_cursor.shards.insert("shard-b".into(), after(99));
        let text = transcode(&batch("shard-a", &[10, 11, 12], &batch_cursor.encode())).unwrap();
        let events = events(&text);
        assert_eq!(events.len(), 3);
        for (index, (id, data)) in events.iter().enumerate() {
            let sequence = 10 + index as u64;
            assert_eq!(data["sequenceNumber"], sequence.to_string());
            assert_eq!(data["data"], format!("record {sequence}"));
            let cursor = Cursor::decode(id.as_deref().unwrap()).unwrap();
            // The last record's event carries the batch's cursor as it is (it may be past
            // the record, over records filtered out).
            let expected = if index == 2 {
                after(13)
            } else {
                after(sequence)
            };
            assert_eq!(cursor.shards["shard-a"], expected);
            assert_eq!(cursor.shards["shard-b"], after(99));
        }
    }

    #[test]
    fn heartbeats_are_comments_and_gaps_are_named() {
        let heartbeat = EncodedResponse::from_message(&v1::SubscribeResponse {
            event: Some(Event::Heartbeat(v1::Heartbeat {
                shards: vec![],
                server_time: Some(prost_types::Timestamp::default()),
            })),
            cursor: "c1".into(),
        });
        let text = String::from_utf8(transcode(&heartbeat).unwrap()).unwrap();
        assert!(text.starts_with(": heartbeat {"), "{text}");
        let gap = EncodedResponse::from_message(&v1::SubscribeResponse {
            event: Some(Event::Gap(v1::Gap {
                shards: vec![],
                reason: v1::GapReason::SubscriberTooSlow.into(),
            })),
            cursor: "c2".into(),
        });
        let text = String::from_utf8(transcode(&gap).unwrap()).unwrap();
        assert!(text.starts_with("event: gap\nid: c2\ndata: {"), "{text}");
        assert!(text.contains("GAP_REASON_SUBSCRIBER_TOO_SLOW"), "{text}");
    }

    #[test]
    fn an_ending_status_becomes_an_error_event_with_its_cursor() {
        let status = kinesis_relay_api::resume::with_cursor(
            Code::ResourceExhausted,
            "too slow".into(),
            "resume-here",
        );
        let text = String::from_utf8(error_event(status)).unwrap();
        assert!(text.starts_with("event: error\ndata: "), "{text}");
        let data: serde_json::Value =
            serde_json::from_str(text.trim().strip_prefix("event: error\ndata: ").unwrap())
                .unwrap();
        assert_eq!(data["code"], "RESOURCE_EXHAUSTED");
        assert_eq!(data["cursor"], "resume-here");
    }
}
