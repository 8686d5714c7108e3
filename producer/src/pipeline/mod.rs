//! The dispatcher: one task that owns every queue. It routes records to per-shard lanes,
//! aggregates, takes tokens from each shard's buckets, fills PutRecords batches, sends
//! them (at most `--concurrency` at once) and puts failed entries back at the front of
//! their lane after a backoff.
//!
//! Owning all state in one task keeps it lock-free and makes order easy to reason about:
//! a lane is a FIFO, retries go back to its front, and under `--ordered` a lane has at most
//! one batch in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::aggregator::Aggregator;
use crate::batcher::{Admit, Batch};
use crate::error::ProducerError;
use crate::failed_output::FailedOutput;
use crate::input::Item;
use crate::rate_limit::ShardLimiter;
use crate::record::Entry;
use crate::sender::{BatchResult, Outcome, put_records};
use crate::shard_map::ShardMap;
use crate::summary::Stats;

mod outcome;
mod resharding;

pub use outcome::backoff;

/// The lane of records whose shard is unknown (no shard map, or a gap while resharding).
const UNKNOWN_SHARD: &str = "?";
/// Least time between two shard map refreshes asked for by surprising responses.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Rejections printed one by one before they are only counted.
const REJECTIONS_SHOWN: u64 = 10;
/// Input items taken in one go before the lanes are looked at again.
const INPUT_CHUNK: usize = 512;

/// What the dispatcher needs to know from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Stream name.
    pub stream: String,
    /// Region, for error messages.
    pub region: String,
    /// Longest wait for a batch (or aggregate) to fill.
    pub linger: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Sends per entry at most.
    pub max_attempts: u32,
    /// Longest time an entry is retried after its first send.
    pub record_ttl: Duration,
    /// Aggregate size limit, when aggregating.
    pub aggregate_max_bytes: Option<usize>,
    /// Keep per-key order.
    pub ordered: bool,
    /// Per-shard record rate (0: unlimited).
    pub shard_records_per_sec: f64,
    /// Per-shard byte rate (0: unlimited).
    pub shard_bytes_per_sec: f64,
    /// Periodic shard map refresh.
    pub shard_refresh: Duration,
    /// User records held at most.
    pub max_buffered_records: u64,
}

/// How the dispatcher ended.
#[derive(Debug)]
pub struct Finished {
    /// The error that stopped it early, if any.
    pub fatal: Option<ProducerError>,
    /// Open shards known at the end.
    pub shards: usize,
}

/// The queue of one shard.
#[derive(Debug)]
struct Lane {
    /// Entries waiting, oldest (or retried) first.
    queue: VecDeque<Entry>,
    /// The shard's write budget.
    limiter: ShardLimiter,
    /// No sends before this (backoff after a failure).
    paused_until: Option<Instant>,
    /// Batches in flight holding entries of this lane (counted under --ordered only).
    in_flight: usize,
    /// The aggregate being filled (--aggregate).
    aggregator: Option<Aggregator>,
}

/// The dispatcher.
pub struct Pipeline {
    /// The Kinesis client.
    client: Client,
    /// Settings.
    config: Config,
    /// Shared counters.
    stats: Arc<Stats>,
    /// Where records that could not be written go.
    failed: FailedOutput,
    /// Current shard map (empty: unknown).
    map: ShardMap,
    /// One lane per shard (plus the unknown lane when needed).
    lanes: HashMap<Arc<str>, Lane>,
    /// The request being filled.
    batch: Batch,
    /// Requests in flight.
    in_flight: usize,
    /// User records held (queued, aggregating, batched, in flight).
    buffered: u64,
    /// Where sender tasks report; bounded by `concurrency` since each request reports once.
    results_tx: mpsc::Sender<BatchResult>,
    /// The receiving end.
    results_rx: mpsc::Receiver<BatchResult>,
    /// The sender tasks: a run ends only after each has ended, and a run that fails
    /// (dropping the dispatcher) aborts those still sending.
    senders: JoinSet<()>,
    /// A ListShards in progress (at most one), aborted if the dispatcher is dropped.
    refresh: JoinSet<Result<ShardMap, ProducerError>>,
    /// When the shard map is next re-read anyway.
    next_refresh: Instant,
    /// When a refresh was last started.
    last_refresh: Instant,
    /// The error that stops the run.
    fatal: Option<ProducerError>,
    /// Whether the input has ended (everything left is flushed without lingering).
    draining: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("lanes", &self.lanes.len())
            .field("in_flight", &self.in_flight)
            .field("buffered", &self.buffered)
            .finish()
    }
}

impl Pipeline {
    /// A dispatcher for `map`'s shards.
    pub fn new(
        client: Client,
        config: Config,
        map: ShardMap,
        stats: Arc<Stats>,
        failed: FailedOutput,
    ) -> Self {
        let (results_tx, results_rx) = mpsc::channel(config.concurrency.max(1));
        let now = Instant::now();
        let mut pipeline = Pipeline {
            client,
            batch: Batch::new(config.ordered),
            next_refresh: now + config.shard_refresh,
            config,
            stats,
            failed,
            map: ShardMap::default(),
            lanes: HashMap::new(),
            in_flight: 0,
            buffered: 0,
            results_tx,
            results_rx,
            senders: JoinSet::new(),
            refresh: JoinSet::new(),
            last_refresh: now,
            fatal: None,
            draining: false,
        };
        pipeline.apply_map(map, now);
        pipeline
    }

    /// Runs until the input has ended and every record is written or failed.
    pub async fn run(mut self, mut input: mpsc::Receiver<Item>) -> anyhow::Result<Finished> {
        let mut input_open = true;
        loop {
            let now = Instant::now();
            self.step(now);
            if self.fatal.is_some() {
                self.abort_queued();
            }
            let idle = self.buffered == 0 && self.in_flight == 0;
            if (!input_open || self.fatal.is_some()) && idle {
                break;
            }
            let wake = self.next_wakeup(now);
            let take_input = input_open
                && self.fatal.is_none()
                && self.buffered < self.config.max_buffered_records;
            tokio::select! {
                biased;
                Some(result) = self.results_rx.recv() => {
                    self.on_result(result);
                    // Its sender has ended or is about to: reap the ended ones, so that the
                    // set holds only the requests in flight.
                    while self.senders.try_join_next().is_some() {}
                }
                Some(refreshed) = self.refresh.join_next(), if !self.refresh.is_empty() => {
                    match refreshed {
                        Ok(Ok(map)) => self.apply_map(map, Instant::now()),
                        Ok(Err(err @ ProducerError::StreamNotFound { .. })) => self.set_fatal(err),
                        Ok(Err(err)) => tracing::warn!(cause = %err, "shard map refresh failed; keeping the old map"),
                        Err(err) => tracing::warn!(cause = %err, "shard map refresh task failed"),
                    }
                }
                item = input.recv(), if take_input => match item {
                    Some(item) => {
                        self.on_item(item)?;
                        // Take what is already there before looking at the lanes again.
                        for _ in 0..INPUT_CHUNK {
                            if self.buffered >= self.config.max_buffered_records {
                                break;
                            }
                            match input.try_recv() {
                                Ok(item) => self.on_item(item)?,
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        input_open = false;
                        self.draining = true;
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        // Every sender has reported: each ends right after. A refresh still listing shards
        // is of no use any more.
        while self.senders.join_next().await.is_some() {}
        self.refresh.abort_all();
        while self.refresh.join_next().await.is_some() {}
        self.failed.flush()?;
        Ok(Finished {
            fatal: self.fatal,
            shards: self.map.len(),
        })
    }

    /// The lane a record with these keys goes to.
    fn lane_id(&self, partition_key: &str, explicit_hash_key: Option<&str>) -> Arc<str> {
        self.map
            .predict(partition_key, explicit_hash_key)
            .cloned()
            .unwrap_or_else(|| Arc::from(UNKNOWN_SHARD))
    }

    fn lane(&mut self, id: &Arc<str>) -> &mut Lane {
        let config = &self.config;
        self.lanes
            .entry(id.clone())
            .or_insert_with(|| new_lane(config, id, Instant::now()))
    }

    fn on_item(&mut self, item: Item) -> anyhow::Result<()> {
        self.stats.read.fetch_add(1, Relaxed);
        match item {
            Item::Record(record) => {
                self.buffered += 1;
                let id = self.lane_id(&record.partition_key, record.explicit_hash_key.as_deref());
                let lane = self.lane(&id);
                match &mut lane.aggregator {
                    Some(aggregator) if !aggregator.too_big(&record) => {
                        if let Some(entry) = aggregator.push(record, &id) {
                            lane.queue.push_back(entry);
                        }
                    }
                    _ => lane.queue.push_back(Entry::plain(record, id)),
                }
            }
            Item::Rejected {
                record,
                code,
                message,
            } => {
                let rejected = self.stats.rejected.fetch_add(1, Relaxed) + 1;
                if rejected <= REJECTIONS_SHOWN {
                    eprintln!("kinesis-producer: rejected: {message}");
                } else if rejected == REJECTIONS_SHOWN + 1 {
                    eprintln!("kinesis-producer: further rejections are only counted");
                }
                let user = Entry::plain(record, Arc::from(UNKNOWN_SHARD)).user_records();
                self.failed.write(&user[0], code, &message)?;
            }
        }
        Ok(())
    }

    /// Closes due aggregates, fills the batch from the lanes, sends ready batches.
    fn step(&mut self, now: Instant) {
        let linger = self.config.linger;
        let draining = self.draining;
        for (id, lane) in &mut self.lanes {
            let due = lane
                .aggregator
                .as_ref()
                .and_then(Aggregator::born)
                .is_some_and(|born| draining || now >= born + linger);
            if due && let Some(entry) = lane.aggregator.as_mut().and_then(|a| a.close(id)) {
                lane.queue.push_back(entry);
            }
        }
        loop {
            self.fill(now);
            if self.fatal.is_none()
                && self.in_flight < self.config.concurrency
                && self.batch.ready(now, self.draining)
            {
                self.send(now);
            } else {
                break;
            }
        }
    }

    /// Moves entries from the lanes into the batch while tokens and the batch allow.
    fn fill(&mut self, now: Instant) {
        if self.batch.full || self.fatal.is_some() {
            return;
        }
        let ordered = self.config.ordered;
        let linger = self.config.linger;
        for lane in self.lanes.values_mut() {
            if lane.paused_until.is_some_and(|until| now < until) || (ordered && lane.in_flight > 0)
            {
                continue;
            }
            lane.paused_until = None;
            while let Some(entry) = lane.queue.front() {
                match self.batch.admit(entry) {
                    Admit::Yes => {}
                    Admit::Full => {
                        self.batch.full = true;
                        return;
                    }
                    Admit::Conflict => {
                        self.batch.blocked = true;
                        break;
                    }
                }
                if !lane.limiter.try_take(now, entry.size()) {
                    break;
                }
                let entry = lane.queue.pop_front().expect("front exists");
                self.batch.push(entry, linger);
            }
        }
    }

    /// Sends the batch in its own task.
    fn send(&mut self, now: Instant) {
        if self.config.ordered {
            let shards: Vec<Arc<str>> = self.batch.shards().cloned().collect();
            for shard in shards {
                self.lane(&shard).in_flight += 1;
            }
        }
        let mut entries = self.batch.take();
        for entry in &mut entries {
            entry.attempts += 1;
            entry.first_attempt.get_or_insert(now);
        }
        self.in_flight += 1;
        self.stats.requests.fetch_add(1, Relaxed);
        let client = self.client.clone();
        let stream = self.config.stream.clone();
        let region = self.config.region.clone();
        let results = self.results_tx.clone();
        self.senders.spawn(async move {
            let result = put_records(&client, &stream, &region, entries).await;
            // The dispatcher outlives every sender task it spawned.
            let _ = results.send(result).await;
        });
    }

    /// When something will next be due, so the loop can sleep until then.
    fn next_wakeup(&mut self, now: Instant) -> Instant {
        // Token waits are rounded up: fewer wakeups, and the bucket holds 50 ms anyway.
        let granularity = Duration::from_millis(5);
        let mut wake = self.next_refresh;
        if now >= self.next_refresh && !self.map.is_empty() {
            self.request_refresh(now);
            wake = now + self.config.shard_refresh;
        }
        if let Some(deadline) = self.batch.deadline()
            && self.in_flight < self.config.concurrency
        {
            wake = wake.min(deadline);
        }
        let waiting_on_results = self.batch.full || self.batch.blocked;
        for lane in self.lanes.values_mut() {
            if let Some(born) = lane.aggregator.as_ref().and_then(Aggregator::born) {
                wake = wake.min(born + self.config.linger);
            }
            if waiting_on_results || (self.config.ordered && lane.in_flight > 0) {
                continue;
            }
            if let Some(entry) = lane.queue.front() {
                let mut ready = lane
                    .limiter
                    .ready_at(now, entry.size())
                    .max(now + granularity);
                if let Some(until) = lane.paused_until {
                    ready = ready.max(until);
                }
                wake = wake.min(ready);
            }
        }
        wake.max(now + Duration::from_millis(1))
    }
}

fn new_lane(config: &Config, id: &str, now: Instant) -> Lane {
    let limited = id != UNKNOWN_SHARD;
    Lane {
        queue: VecDeque::new(),
        limiter: if limited {
            ShardLimiter::new(
                config.shard_records_per_sec,
                config.shard_bytes_per_sec,
                now,
            )
        } else {
            ShardLimiter::new(0.0, 0.0, now)
        },
        paused_until: None,
        in_flight: 0,
        aggregator: config.aggregate_max_bytes.map(Aggregator::new),
    }
}
