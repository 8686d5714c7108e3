//! Ingest: from a stream name to an ordered, gap-free, duplicate-free sequence of records
//! per shard in the hub, whatever Kinesis does.
//!
//! # Layout
//! - `source.rs`: where records come from ([`Source`]: Kinesis, or another relay), chosen
//!   once; each source runs one stream until shutdown.
//! - `upstream_relay.rs`: the other relay as a source, through the API crate's resuming
//!   subscriber.
//! - `consumer.rs`: register / describe / wait for ACTIVE.
//! - `reader.rs`: one task per shard, `SubscribeToShard` and its renewals.
//! - `records.rs`: Kinesis records to hub records, KPL aggregates unpacked.
//! - `checkpoint.rs`: where a restarted relay resumes, in one format for both sources.
//! - `shards.rs`: the shards as `ListShards` lists them.
//! - `errors.rs`: how failures are classified ([`errors::CallError`]), retrying
//!   control-plane calls (backoff: `kinesis_relay_api::backoff`), and why ingest stops
//!   ([`IngestError`]).
//!
//! This file is the coordinator of one stream read from Kinesis: it lists shards, starts a reader for every
//! shard whose parents are finished, learns children from the readers and from a periodic
//! `ListShards`, re-registers a consumer deleted behind its back, and flushes checkpoints.

pub mod checkpoint;
pub mod consumer;
pub mod errors;
pub mod reader;
pub mod records;
mod shards;
mod source;
pub mod upstream_relay;

pub use self::{errors::IngestError, source::Source};

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_sdk_kinesis::Client;
use kinesis_relay_api::sequence::SequenceNumber;
use tokio::{
    sync::{mpsc, watch},
    task::{AbortHandle, JoinSet},
    time::{MissedTickBehavior, interval, timeout},
};
use tracing::{info, warn};

use self::{
    checkpoint::Checkpoints,
    consumer::ensure_consumer,
    errors::{CallError, retry},
    reader::{ReadFrom, ReaderContext, ReaderEvent, run_reader},
    shards::{KnownShard, list_shards, list_shards_once},
};
use crate::hub::{ReaderState, StreamHub, ring::Floor};

/// Where shards with no checkpoint start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPosition {
    /// New records only (shards closed before the start are skipped).
    Latest,
    /// Everything the stream retains.
    TrimHorizon,
    /// Records that arrived at or after this time.
    AtTimestamp(SystemTime),
}

/// How ingest behaves.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The enhanced fan-out consumer name.
    pub consumer_name: String,
    /// Where shards with no checkpoint start.
    pub initial_position: InitialPosition,
    /// Where checkpoints live; `None` keeps none.
    pub state_dir: Option<PathBuf>,
    /// How often checkpoints are written.
    pub checkpoint_interval: Duration,
    /// A subscription silent for longer than this is renewed.
    pub watchdog: Duration,
    /// How often shards are listed to find children (for upstreams that never send them).
    pub list_shards_interval: Duration,
    /// How long the consumer may take to become ACTIVE.
    pub consumer_deadline: Duration,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_cap: Duration,
    /// Wait after ResourceInUse (Kinesis refuses a second subscription for 5 s).
    pub takeover_wait: Duration,
    /// Least time between two SubscribeToShard calls of one shard.
    pub min_subscribe_interval: Duration,
    /// Deregister the consumer on shutdown.
    pub deregister_on_exit: bool,
    /// Read from another relay instead of Kinesis.
    pub upstream: Option<upstream_relay::UpstreamRelay>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            consumer_name: default_consumer_name(),
            initial_position: InitialPosition::Latest,
            state_dir: None,
            checkpoint_interval: Duration::from_secs(5),
            watchdog: Duration::from_secs(30),
            list_shards_interval: Duration::from_secs(60),
            consumer_deadline: Duration::from_secs(300),
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(10),
            takeover_wait: Duration::from_secs(5),
            min_subscribe_interval: Duration::from_secs(1),
            deregister_on_exit: false,
            upstream: None,
        }
    }
}

/// `kinesis-relay-<host>`: stable per host, so a restarted relay reuses its consumer.
pub fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("kinesis-relay-{cleaned}")
}

/// Reads `stream` from Kinesis into `hub` until `shutdown` becomes true.
pub async fn run_stream(
    client: Client,
    stream: String,
    hub: Arc<StreamHub>,
    settings: Arc<IngestSettings>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let stream_arn = retry(
        &settings,
        &mut shutdown,
        "describing the stream",
        || async {
            let output = client
                .describe_stream_summary()
                .stream_name(&stream)
                .send()
                .await
                .map_err(|err| CallError::from_sdk(&err))?;
            Ok(output
                .stream_description_summary()
                .map(|summary| summary.stream_arn().to_owned())
                .unwrap_or_default())
        },
    )
    .await
    .map_err(|err| err.of_stream(&stream))?;
    let consumer = ensure_consumer(
        &client,
        &stream_arn,
        &settings.consumer_name,
        settings.consumer_deadline,
    )
    .await?;
    hub.set_consumer(consumer.clone());
    let (arn_tx, arn_rx) = watch::channel(consumer.arn.clone());
    let checkpoints = Checkpoints::load(settings.state_dir.as_deref(), &stream)?;
    let (events_tx, mut events) = mpsc::channel(256);
    let ctx = ReaderContext {
        client: client.clone(),
        hub: hub.clone(),
        checkpoints: checkpoints.clone(),
        consumer_arn: arn_rx,
        events: events_tx,
        settings: settings.clone(),
        shutdown: shutdown.clone(),
        consumer_name: settings.consumer_name.clone(),
    };
    let mut coordinator = Coordinator {
        ctx,
        known: BTreeMap::new(),
        started: HashMap::new(),
        finished: HashSet::new(),
        readers: JoinSet::new(),
    };
    let listing = list_shards(&client, &stream, &settings, &mut shutdown).await?;
    coordinator.learn(listing, true);
    hub.set_started();
    info!(stream, shards = coordinator.known.len(), consumer = %consumer.name, "ingest started");

    let mut list_tick = interval(settings.list_shards_interval);
    list_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    list_tick.reset();
    let mut flush_tick = interval(settings.checkpoint_interval);
    flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(event) = events.recv() => match event {
                ReaderEvent::Finished { shard_id, children } => {
                    coordinator.finished.insert(shard_id.clone());
                    coordinator.started.remove(&shard_id);
                    coordinator.learn(children.into_iter().map(|meta| KnownShard { meta, ending: None, initial: false }).collect(), false);
                }
                ReaderEvent::ConsumerGone { arn } => {
                    let current = arn_tx.borrow().clone();
                    if current == arn {
                        warn!(stream, consumer = %settings.consumer_name, "consumer disappeared, registering it again");
                        match ensure_consumer(&client, &stream_arn, &settings.consumer_name, settings.consumer_deadline).await {
                            Ok(consumer) => {
                                hub.set_consumer(consumer.clone());
                                let _ = arn_tx.send(consumer.arn);
                            }
                            Err(err) => warn!(stream, cause = %format!("{err:#}"), "registering the consumer again failed; readers will retry"),
                        }
                    }
                }
            },
            _ = list_tick.tick() => {
                match list_shards_once(&client, &stream).await {
                    Ok(listing) => coordinator.learn(listing, false),
                    Err(cause) => warn!(stream, cause = %cause, "periodic ListShards failed"),
                }
            }
            _ = flush_tick.tick() => {
                if let Err(err) = checkpoints.flush() {
                    warn!(stream, cause = %format!("{err:#}"), "writing checkpoints failed");
                }
            }
            _ = crate::stopped(&mut shutdown) => break,
        }
    }
    // Readers see the same shutdown signal; give them a bounded time to stop.
    let _ = timeout(Duration::from_secs(5), async {
        while coordinator.readers.join_next().await.is_some() {}
    })
    .await;
    coordinator.readers.abort_all();
    checkpoints.flush()?;
    if settings.deregister_on_exit {
        let arn = arn_tx.borrow().clone();
        consumer::deregister(&client, &arn).await?;
    }
    hub.set_stopped();
    info!(stream, "ingest stopped");
    Ok(())
}

/// Decides which shards are read and from where.
struct Coordinator {
    ctx: ReaderContext,
    known: BTreeMap<String, KnownShard>,
    /// Running readers.
    started: HashMap<String, AbortHandle>,
    /// Shards read to their end.
    finished: HashSet<String>,
    readers: JoinSet<()>,
}

impl Coordinator {
    /// Adds shards from a listing or from ChildShards, then starts what can start.
    fn learn(&mut self, shards: Vec<KnownShard>, initial: bool) {
        let settings = self.ctx.settings.clone();
        for shard in shards {
            let id = shard.meta.shard_id.clone();
            if let Some(known) = self.known.get_mut(&id) {
                if known.ending.is_none() {
                    known.ending = shard.ending.clone();
                }
                continue;
            }
            let checkpoint = self.ctx.checkpoints.get(&id);
            let skip_closed = initial
                && checkpoint.is_none()
                && shard.ending.is_some()
                && settings.initial_position == InitialPosition::Latest;
            let floor = floor(
                checkpoint.as_ref(),
                skip_closed.then_some(shard.ending.as_deref()).flatten(),
                initial && settings.initial_position != InitialPosition::TrimHorizon,
            );
            self.ctx
                .hub
                .add_shard(shard.meta.clone(), floor, ReaderState::Waiting);
            if checkpoint.as_ref().is_some_and(|c| c.finished) || skip_closed {
                self.finished.insert(id.clone());
                self.ctx.hub.finish_shard(&id, Vec::new());
            }
            self.known.insert(id, KnownShard { initial, ..shard });
        }
        self.finish_drained();
        self.start_ready();
    }

    /// For upstreams that never send ChildShards: a shard the listing shows closed, whose
    /// checkpoint reached its ending sequence number, is finished.
    fn finish_drained(&mut self) {
        let drained: Vec<String> = self
            .started
            .keys()
            .filter(|id| {
                let Some(ending) = self.known.get(*id).and_then(|k| k.ending.as_deref()) else {
                    return false;
                };
                let Ok(ending) = ending.parse::<SequenceNumber>() else {
                    return false;
                };
                self.ctx.checkpoints.get(id).is_some_and(|c| {
                    [c.continuation, c.last_sequence]
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.parse::<SequenceNumber>().ok())
                        .any(|reached| reached >= ending)
                })
            })
            .cloned()
            .collect();
        for id in drained {
            if let Some(handle) = self.started.remove(&id) {
                handle.abort();
            }
            info!(stream = self.ctx.hub.name(), shard = %id, "shard drained (closed in ListShards)");
            let children = self
                .known
                .values()
                .filter(|k| k.meta.parents.contains(&id))
                .map(|k| k.meta.shard_id.clone())
                .collect();
            self.ctx.checkpoints.update(&id, |c| c.finished = true);
            self.ctx.hub.finish_shard(&id, children);
            self.finished.insert(id);
        }
    }

    fn start_ready(&mut self) {
        let ready: Vec<KnownShard> = self
            .known
            .values()
            .filter(|k| {
                !self.started.contains_key(&k.meta.shard_id)
                    && !self.finished.contains(&k.meta.shard_id)
            })
            .filter(|k| {
                k.meta.parents.iter().all(|parent| {
                    self.finished.contains(parent) || !self.known.contains_key(parent)
                })
            })
            .cloned()
            .collect();
        for shard in ready {
            let id = shard.meta.shard_id.clone();
            let from = match self.ctx.checkpoints.get(&id).and_then(|c| c.continuation) {
                Some(continuation) => ReadFrom::After(continuation),
                None if shard.initial => match &self.ctx.settings.initial_position {
                    InitialPosition::Latest => ReadFrom::Latest,
                    InitialPosition::TrimHorizon => ReadFrom::TrimHorizon,
                    InitialPosition::AtTimestamp(at) => ReadFrom::AtTimestamp(*at),
                },
                // A child of a shard we read: all of it, after its parents.
                None => ReadFrom::TrimHorizon,
            };
            info!(stream = self.ctx.hub.name(), shard = %id, from = ?from, "starting shard reader");
            self.ctx.hub.set_state(&id, ReaderState::Reconnecting);
            let handle = self
                .readers
                .spawn(run_reader(self.ctx.clone(), id.clone(), from));
            self.started.insert(id, handle);
        }
    }
}

/// What precedes the first record the relay will hold of a shard: what its checkpoint
/// says was read, the end of a closed shard it skips (all of it is read from Kinesis on
/// demand), nothing known when it starts part way (LATEST or a timestamp), or the shard's
/// beginning.
fn floor(
    checkpoint: Option<&checkpoint::ShardCheckpoint>,
    skipped_ending: Option<&str>,
    part_way: bool,
) -> Floor {
    let known = checkpoint
        .and_then(|c| {
            checkpoint::position(c.last_sequence.as_deref(), c.last_sub_sequence)
                .or_else(|| checkpoint::position(c.continuation.as_deref(), None))
        })
        .or_else(|| checkpoint::position(skipped_ending, None));
    match known {
        Some(position) => Floor::After {
            position,
            arrival: None,
        },
        None if part_way && checkpoint.is_none() => Floor::Unknown,
        None => Floor::Origin,
    }
}
