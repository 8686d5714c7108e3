//! SubscribeToShard: the checks, then the event pump that writes the event stream.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_stream::wrappers::ReceiverStream;

use super::starting_position;
use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::eventstream;
use crate::limits::{EFO_READ_BYTES_PER_SEC, TokenBucket};
use crate::protocol::{self, Body, BoxError};
use crate::reading::{Position, ReadBatch};
use crate::records_json::{self, After};
use crate::server::ConnectionState;
use crate::subscriptions::{Claim, EndMode, EndReason};

/// Frames buffered between the pump and the connection; the pump waits when it is full.
const FRAME_BUFFER: usize = 4;
/// The most records of one event.
const EVENT_MAX_RECORDS: usize = 10_000;
/// The most data bytes of one event with limits on (at least one record is always sent).
const EVENT_MAX_BYTES_LIMITED: usize = 1024 * 1024;
/// The most data bytes of one event with limits off.
const EVENT_MAX_BYTES_UNLIMITED: usize = 4 * 1024 * 1024;
/// How long the pump waits to deliver its last frame before giving up.
const LAST_FRAME_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub(crate) struct SubscribeToShardInput {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    #[serde(rename = "ShardId")]
    shard_id: String,
    #[serde(rename = "StartingPosition")]
    starting_position: StartingPositionInput,
}

#[derive(Debug, Deserialize)]
struct StartingPositionInput {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "SequenceNumber")]
    sequence_number: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<Value>,
}

type FrameSender = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

pub(crate) fn subscribe_to_shard(
    shared: &Arc<Shared>,
    connection: &ConnectionState,
    input: SubscribeToShardInput,
) -> Result<Response<Body>, KinesisError> {
    let stream = {
        let inner = shared.store.lock();
        let consumer = inner.consumer_by_arn(&input.consumer_arn)?;
        if consumer.status() != "ACTIVE" {
            return Err(KinesisError::ResourceInUse(format!(
                "Consumer {} is not ACTIVE",
                consumer.arn
            )));
        }
        let stream = protocol::stream_name_from_arn(&consumer.stream_arn)
            .unwrap_or_default()
            .to_owned();
        inner.stream(&stream)?.shard(&input.shard_id)?;
        stream
    };
    let start = starting_position(
        &input.starting_position.kind,
        input.starting_position.sequence_number.as_deref(),
        input.starting_position.timestamp.as_ref(),
    )?;
    // Subscribe to wake-ups before reading the position, so no write is missed.
    let wake = shared.store.wake_receiver(&stream, &input.shard_id)?;
    let position = shared.store.position(&stream, &input.shard_id, &start)?;
    let claim = shared.subscriptions.claim(
        &input.consumer_arn,
        &input.shard_id,
        shared.settings.takeover_window,
    )?;
    connection.mark_subscription();
    let (frames, receiver) = mpsc::channel(FRAME_BUFFER);
    let pump = Pump {
        shared: shared.clone(),
        stream,
        shard_id: input.shard_id,
        position,
        wake,
        silence: shared.faults.silence_receiver(),
        shutdown: shared.shutdown.clone(),
        frames,
        read_limit: TokenBucket::new(EFO_READ_BYTES_PER_SEC),
    };
    let pump_shared = shared.clone();
    shared.spawn(async move {
        pump.run(&claim).await;
        pump_shared.subscriptions.release(&claim);
    });
    let body = StreamBody::new(ReceiverStream::new(receiver)).boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(eventstream::EVENT_STREAM_CONTENT_TYPE),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    Ok(response)
}

/// Why the pump stopped.
#[derive(Debug)]
enum Stop {
    /// The subscription lifetime is over: the stream just ends.
    Lifetime,
    /// The shard is closed and its last event (with ChildShards) was sent.
    ShardEnd,
    /// The emulator is shutting down.
    Shutdown,
    /// The client went away.
    ClientGone,
    /// Ended by takeover, deregistration or fault injection.
    Ended(EndReason),
    /// The stream or shard no longer exists.
    Gone(KinesisError),
}

/// Writes one subscription's event stream.
struct Pump {
    /// The emulator's state.
    shared: Arc<Shared>,
    /// The stream name.
    stream: String,
    /// The shard read.
    shard_id: String,
    /// Where the next read starts.
    position: Position,
    /// Changes when the shard gets records or closes.
    wake: watch::Receiver<u64>,
    /// The silence fault.
    silence: watch::Receiver<bool>,
    /// Turns true at shutdown.
    shutdown: watch::Receiver<bool>,
    /// The response body.
    frames: FrameSender,
    /// The 2 MiB/s read limit of this consumer and shard.
    read_limit: TokenBucket,
}

impl Pump {
    async fn run(mut self, claim: &Claim) {
        let mut ended = claim.ended.clone();
        let stop = self.pump(&mut ended).await;
        tracing::debug!(shard = %self.shard_id, ?stop, "subscription ended");
        let last = match stop {
            Stop::Lifetime | Stop::ShardEnd | Stop::Shutdown | Stop::ClientGone => return,
            Stop::Ended(EndReason::Superseded) => Ok(eventstream::exception(
                "ResourceInUseException",
                "Another subscription for this consumer and shard took over",
            )),
            Stop::Ended(EndReason::ConsumerDeleted) => Ok(eventstream::exception(
                "ResourceNotFoundException",
                "The consumer was deregistered",
            )),
            Stop::Ended(EndReason::Fault(EndMode::ErrorEvent)) => Ok(eventstream::exception(
                "InternalFailure",
                "The subscription was ended by fault injection",
            )),
            Stop::Ended(EndReason::Fault(EndMode::DropConnection)) => {
                Err(BoxError::from("subscription dropped by fault injection"))
            }
            Stop::Gone(err) => Ok(eventstream::exception(err.error_type(), &err.to_string())),
        };
        let frame = last.map(Frame::data);
        let _ = tokio::time::timeout(LAST_FRAME_DEADLINE, self.frames.send(frame)).await;
    }

    async fn pump(&mut self, ended: &mut watch::Receiver<Option<EndReason>>) -> Stop {
        let settings = self.shared.settings.clone();
        let deadline = Instant::now() + settings.subscription_lifetime;
        let max_bytes = if settings.limits {
            EVENT_MAX_BYTES_LIMITED
        } else {
            EVENT_MAX_BYTES_UNLIMITED
        };
        if let Err(stop) = self
            .send(eventstream::initial_response(), deadline, ended)
            .await
        {
            return stop;
        }
        // The first event goes out at once; later empty ones after idle intervals.
        let mut send_empty = true;
        let mut next_idle = Instant::now() + settings.idle_event_interval;
        loop {
            if Instant::now() >= deadline {
                return Stop::Lifetime;
            }
            if *self.silence.borrow_and_update() {
                tokio::select! {
                    _ = sleep_until(deadline) => return Stop::Lifetime,
                    _ = ended.changed() => return Stop::Ended(ended.borrow().unwrap_or(EndReason::Superseded)),
                    _ = self.shutdown.wait_for(|stop| *stop) => return Stop::Shutdown,
                    _ = self.frames.closed() => return Stop::ClientGone,
                    _ = self.silence.changed() => {}
                }
                send_empty = true;
                continue;
            }
            self.wake.borrow_and_update();
            let read = self
                .shared
                .store
                .lock()
                .stream(&self.stream)
                .and_then(|stream| {
                    stream.read(&self.shard_id, self.position, EVENT_MAX_RECORDS, max_bytes)
                });
            let batch = match read {
                Ok(batch) => batch,
                Err(err) => return Stop::Gone(err),
            };
            if !batch.records.is_empty() || batch.children.is_some() || send_empty {
                if settings.limits {
                    let bytes: usize = batch.records.iter().map(|r| r.data.len()).sum();
                    let now = std::time::Instant::now();
                    self.read_limit.take(bytes as f64, now);
                    let wait = self.read_limit.wait_until_positive(now);
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = sleep(wait) => {}
                            _ = sleep_until(deadline) => return Stop::Lifetime,
                            _ = ended.changed() => return Stop::Ended(ended.borrow().unwrap_or(EndReason::Superseded)),
                            _ = self.shutdown.wait_for(|stop| *stop) => return Stop::Shutdown,
                        }
                    }
                }
                self.position = Position::After(batch.continuation);
                let shard_end = batch.children.is_some();
                let more = batch.more;
                if let Err(stop) = self.send(event_frame(batch), deadline, ended).await {
                    return stop;
                }
                if shard_end {
                    return Stop::ShardEnd;
                }
                send_empty = false;
                next_idle = Instant::now() + settings.idle_event_interval;
                if more {
                    continue;
                }
            }
            let mut written = false;
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        return Stop::Gone(KinesisError::ResourceNotFound(format!(
                            "Stream {} was deleted", self.stream
                        )));
                    }
                    written = true;
                }
                _ = sleep_until(next_idle) => send_empty = true,
                _ = sleep_until(deadline) => return Stop::Lifetime,
                _ = ended.changed() => return Stop::Ended(ended.borrow().unwrap_or(EndReason::Superseded)),
                _ = self.shutdown.wait_for(|stop| *stop) => return Stop::Shutdown,
                _ = self.silence.changed() => {}
                _ = self.frames.closed() => return Stop::ClientGone,
            }
            if written && !settings.push_delay.is_zero() {
                tokio::select! {
                    _ = sleep(settings.push_delay) => {}
                    _ = self.shutdown.wait_for(|stop| *stop) => return Stop::Shutdown,
                }
            }
        }
    }

    /// Sends one frame, giving up at the deadline or when told to end.
    async fn send(
        &mut self,
        frame: Bytes,
        deadline: Instant,
        ended: &mut watch::Receiver<Option<EndReason>>,
    ) -> Result<(), Stop> {
        tokio::select! {
            sent = self.frames.send(Ok(Frame::data(frame))) => sent.map_err(|_| Stop::ClientGone),
            _ = sleep_until(deadline) => Err(Stop::Lifetime),
            _ = ended.changed() => Err(Stop::Ended(ended.borrow().unwrap_or(EndReason::Superseded))),
            _ = self.shutdown.wait_for(|stop| *stop) => Err(Stop::Shutdown),
        }
    }
}

/// The SubscribeToShardEvent frame of a batch. At shard end the continuation number is
/// left out and the children are listed.
fn event_frame(batch: ReadBatch) -> Bytes {
    eventstream::subscribe_to_shard_event(records_json::batch(&batch, After::Continuation))
}
