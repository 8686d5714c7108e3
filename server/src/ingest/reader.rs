//! The shard reader: one task per shard, holding a `SubscribeToShard` subscription and
//! renewing it for as long as the shard is open.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_sdk_kinesis::{
    Client,
    primitives::DateTime,
    types::{
        ShardIteratorType, StartingPosition, SubscribeToShardEvent, SubscribeToShardEventStream,
    },
};
use kinesis_relay_api::backoff::Backoff;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, sleep, sleep_until, timeout},
};
use tracing::{debug, error, info, warn};

use super::{
    IngestSettings,
    checkpoint::{self, Checkpoints},
    errors::{CallError, ErrorKind},
    records,
};
use crate::hub::{ReaderState, ShardMeta, StreamHub};

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    /// New records only.
    Latest,
    /// The oldest record in the shard.
    TrimHorizon,
    /// Records that arrived at or after this time.
    AtTimestamp(SystemTime),
    /// Right after this sequence number (a continuation or a checkpoint).
    After(String),
}

impl ReadFrom {
    fn starting_position(&self) -> StartingPosition {
        let builder = StartingPosition::builder();
        let builder = match self {
            Self::Latest => builder.r#type(ShardIteratorType::Latest),
            Self::TrimHorizon => builder.r#type(ShardIteratorType::TrimHorizon),
            Self::AtTimestamp(at) => builder
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from(*at)),
            Self::After(sequence) => builder
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
        };
        builder.build().expect("type is always set")
    }
}

/// What a reader tells the coordinator.
#[derive(Debug)]
pub enum ReaderEvent {
    /// The shard was read to its end.
    Finished {
        /// The shard.
        shard_id: String,
        /// Its children, as the last event listed them (empty for upstreams that do not say).
        children: Vec<ShardMeta>,
    },
    /// SubscribeToShard said the consumer does not exist (deregistered behind our back).
    ConsumerGone {
        /// The ARN that failed.
        arn: String,
    },
}

/// What every reader of a stream shares.
#[derive(Debug, Clone)]
pub struct ReaderContext {
    /// The Kinesis client.
    pub client: Client,
    /// Where records go.
    pub hub: Arc<StreamHub>,
    /// Where positions are recorded.
    pub checkpoints: Checkpoints,
    /// The consumer ARN; changes when the consumer is registered again.
    pub consumer_arn: watch::Receiver<String>,
    /// Reports to the coordinator.
    pub events: mpsc::Sender<ReaderEvent>,
    /// Timing settings.
    pub settings: Arc<IngestSettings>,
    /// Becomes true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// The consumer name, for messages.
    pub consumer_name: String,
}

/// How one subscription ended.
enum Ended {
    /// The shard is finished.
    ShardEnd,
    /// The subscription ended normally (lifetime) or went silent: renew now.
    Renew,
    /// An error: wait as its kind says.
    Error(CallError),
    /// Shutdown.
    Shutdown,
}

/// Reads `shard_id` from `from` until the shard ends or the relay shuts down.
pub async fn run_reader(ctx: ReaderContext, shard_id: String, mut from: ReadFrom) {
    let mut backoff = Backoff::new(ctx.settings.backoff_base, ctx.settings.backoff_cap);
    let mut last_subscribe: Option<Instant> = None;
    let mut in_use_streak = 0u32;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Never more than one SubscribeToShard per shard per interval.
        if let Some(at) = last_subscribe {
            tokio::select! {
                _ = sleep_until(at + ctx.settings.min_subscribe_interval) => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
        last_subscribe = Some(Instant::now());
        let ended = subscribe_once(&ctx, &shard_id, &mut from, &mut backoff).await;
        let delay = match ended {
            Ended::ShardEnd | Ended::Shutdown => return,
            Ended::Renew => {
                in_use_streak = 0;
                Duration::ZERO
            }
            Ended::Error(CallError {
                kind,
                message: cause,
            }) => {
                ctx.hub.set_state(&shard_id, ReaderState::Reconnecting);
                ctx.hub.count_error(&shard_id, kind.label());
                match kind {
                    ErrorKind::InUse => {
                        in_use_streak += 1;
                        if in_use_streak >= 3 {
                            error!(
                                stream = ctx.hub.name(), shard = %shard_id, consumer = %ctx.consumer_name,
                                "another process holds the subscription of this consumer on this shard (ResourceInUse {in_use_streak} times in a row); give each relay its own --consumer-name"
                            );
                        }
                        // Wait past the 5-second window in which a second subscription is refused.
                        let delay = ctx.settings.takeover_wait + backoff.next_delay();
                        warn!(stream = ctx.hub.name(), shard = %shard_id, cause, ?delay, "subscription in use, waiting");
                        delay
                    }
                    ErrorKind::NotFound => {
                        let arn = ctx.consumer_arn.borrow().clone();
                        warn!(stream = ctx.hub.name(), shard = %shard_id, cause, "consumer not found, asking for it to be registered again");
                        let _ = ctx
                            .events
                            .send(ReaderEvent::ConsumerGone { arn: arn.clone() })
                            .await;
                        let mut consumer = ctx.consumer_arn.clone();
                        // Wait (bounded) for a new ARN, then retry in any case.
                        let _ = timeout(
                            ctx.settings.backoff_cap * 3,
                            consumer.wait_for(|now| *now != arn),
                        )
                        .await;
                        backoff.next_delay()
                    }
                    ErrorKind::Throttled
                    | ErrorKind::Transient
                    | ErrorKind::ExpiredIterator
                    | ErrorKind::InvalidArgument => {
                        let delay = backoff.next_delay();
                        warn!(stream = ctx.hub.name(), shard = %shard_id, kind = kind.label(), cause, ?delay, "subscription failed, backing off");
                        delay
                    }
                }
            }
        };
        if !delay.is_zero() {
            tokio::select! {
                _ = sleep(delay) => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
    }
}

/// One `SubscribeToShard` call, read until it ends.
async fn subscribe_once(
    ctx: &ReaderContext,
    shard_id: &str,
    from: &mut ReadFrom,
    backoff: &mut Backoff,
) -> Ended {
    let mut shutdown = ctx.shutdown.clone();
    let arn = ctx.consumer_arn.borrow().clone();
    let call = ctx
        .client
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id(shard_id)
        .starting_position(from.starting_position())
        .send();
    let output = tokio::select! {
        result = timeout(ctx.settings.watchdog, call) => match result {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => return Ended::Error(CallError::from_sdk(&err)),
            Err(_) => return Ended::Error(CallError::transient("SubscribeToShard did not answer in time")),
        },
        _ = crate::stopped(&mut shutdown) => return Ended::Shutdown,
    };
    let mut events = output.event_stream;
    ctx.hub.set_state(shard_id, ReaderState::Reading);
    ctx.hub.count_subscription(shard_id);
    info!(stream = ctx.hub.name(), shard = shard_id, from = ?from, "subscribed");
    loop {
        let next = tokio::select! {
            next = timeout(ctx.settings.watchdog, events.recv()) => next,
            _ = crate::stopped(&mut shutdown) => return Ended::Shutdown,
        };
        match next {
            Err(_) => {
                warn!(stream = ctx.hub.name(), shard = shard_id, timeout = ?ctx.settings.watchdog, "subscription silent for too long, renewing");
                return Ended::Renew;
            }
            Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => {
                backoff.reset();
                if handle_event(ctx, shard_id, from, event).await {
                    return Ended::ShardEnd;
                }
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => {
                debug!(
                    stream = ctx.hub.name(),
                    shard = shard_id,
                    "subscription ended, renewing"
                );
                return Ended::Renew;
            }
            Ok(Err(err)) => return Ended::Error(CallError::from_sdk(&err)),
        }
    }
}

/// Hands an event's records to the hub; returns true at shard end.
async fn handle_event(
    ctx: &ReaderContext,
    shard_id: &str,
    from: &mut ReadFrom,
    event: SubscribeToShardEvent,
) -> bool {
    let records: Vec<_> = event
        .records()
        .iter()
        .flat_map(|record| records::convert(record, shard_id))
        .collect();
    let last = records
        .last()
        .map(|record| (record.sequence.clone(), record.sub_sequence));
    ctx.hub
        .append(shard_id, records, event.millis_behind_latest());
    let continuation = event.continuation_sequence_number();
    // A reader that began part way learns from its first empty event where it stands, so
    // that cursors from before it can be served from the ring once catch-up reaches it.
    if last.is_none()
        && let Some(position) = checkpoint::position(Some(continuation), None)
    {
        ctx.hub.settle_floor(shard_id, position);
    }
    ctx.checkpoints.update(shard_id, |checkpoint| {
        if let Some((sequence, sub_sequence)) = &last {
            checkpoint.last_sequence = Some(sequence.to_string());
            checkpoint.last_sub_sequence = *sub_sequence;
        }
        if !continuation.is_empty() {
            checkpoint.continuation = Some(continuation.to_owned());
        }
    });
    if !continuation.is_empty() {
        *from = ReadFrom::After(continuation.to_owned());
        return false;
    }
    // No continuation: the shard is closed and read to its end.
    let children: Vec<ShardMeta> = event
        .child_shards()
        .iter()
        .map(|child| ShardMeta {
            shard_id: child.shard_id().to_owned(),
            parents: child.parent_shards().to_vec(),
            hash_key_range: child
                .hash_key_range()
                .map(|range| {
                    (
                        range.starting_hash_key().to_owned(),
                        range.ending_hash_key().to_owned(),
                    )
                })
                .unwrap_or_default(),
        })
        .collect();
    let child_ids: Vec<String> = children
        .iter()
        .map(|child| child.shard_id.clone())
        .collect();
    info!(stream = ctx.hub.name(), shard = shard_id, children = ?child_ids, "shard ended");
    ctx.checkpoints
        .update(shard_id, |checkpoint| checkpoint.finished = true);
    ctx.hub.finish_shard(shard_id, child_ids);
    let _ = ctx
        .events
        .send(ReaderEvent::Finished {
            shard_id: shard_id.to_owned(),
            children,
        })
        .await;
    true
}
