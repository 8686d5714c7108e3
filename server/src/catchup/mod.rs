//! Catch-up: records older than the hub's rings, read from Kinesis with GetRecords for the
//! subscribers that ask for them, until they reach a record the ring holds.
//!
//! # Layout
//! - `mod.rs`: [`CatchUp`], one per stream: settings, counters, and attaching a subscriber
//!   to a reader (an existing one near its position, or a new one within the bound).
//! - `reader.rs`: one task per reader: GetShardIterator, GetRecords, expiry, retries.
//! - `window.rs`: what a reader fetched, shared by the subscribers attached to it.
//! - `budget.rs`: the GetRecords calls and bytes per second per shard, shared by readers.
//! - `thread.rs`: the low-priority thread the readers run on.
//! - `turns.rs`: catching-up subscribers write in turns, so live ones never queue behind
//!   them all.
//!
//! A subscription asks for catch-up when a position it must read from is older than the
//! ring (a cursor, a timestamp, `trim_horizon`, or lag under `LAG_POLICY_CATCH_UP`); it
//! reads the reader's window like a ring, and after every batch tries to join the ring at
//! the record after its position. Records are converted and encoded by the same code as
//! live ones, once per reader whatever the number of subscribers attached.

pub mod budget;
mod reader;
pub mod thread;
pub mod turns;
pub mod window;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use aws_sdk_kinesis::Client;
use kinesis_relay_api::cursor::Position;
use tokio::{runtime::Handle, sync::watch};
use tracing::info;

use self::{
    budget::{Budget, Rates},
    turns::Turns,
    window::{Attached, Window},
};
use crate::hub::StreamHub;

/// Where a catch-up read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// Right after this position; [`Position::Start`] is the oldest record Kinesis holds.
    After(Position),
    /// At the first record that arrived at or after this time.
    AtTimestamp(SystemTime),
}

/// How catch-up behaves.
#[derive(Debug, Clone)]
pub struct CatchUpSettings {
    /// Readers running at once per stream, all shards together.
    pub max_readers: usize,
    /// The GetRecords budget per shard.
    pub rates: Rates,
    /// Bytes of records a reader holds ahead of its subscribers.
    pub buffer_bytes: usize,
    /// Records asked for per GetRecords call (Kinesis allows up to 10,000). About 1 MiB
    /// of 1 KiB records: a 10 MiB answer, parsed on the relay's async workers as it was
    /// then, held them for 100+ ms (live subscribers' p99 went from 6 to 85 ms in the
    /// catch-up benchmark; 11 ms with 1,000), and on the readers' own thread it still
    /// holds 10 MiB per reader at once; five calls a second of 1,000 fill the 2 MiB/s
    /// budget.
    pub records_per_call: i32,
    /// Wait between calls at the tip of a shard, or while subscribers have enough.
    pub idle_poll: Duration,
    /// A reader with no subscriber stops after this long.
    pub idle_grace: Duration,
    /// Deadline of one AWS call.
    pub call_timeout: Duration,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_cap: Duration,
    /// Failures in a row (other than throttling) after which a reader gives up.
    pub max_failures: u32,
}

impl Default for CatchUpSettings {
    fn default() -> Self {
        Self {
            max_readers: 16,
            rates: Rates {
                calls: 5.0,
                bytes: 2.0 * 1024.0 * 1024.0,
            },
            buffer_bytes: 4 << 20,
            records_per_call: 1_000,
            idle_poll: Duration::from_secs(1),
            idle_grace: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            max_failures: 10,
        }
    }
}

/// What catch-up did since the relay started, for metrics.
#[derive(Debug, Default)]
pub struct CatchUpCounters {
    /// Readers started.
    pub readers_started: AtomicU64,
    /// Readers running now.
    pub readers_running: AtomicU64,
    /// GetRecords calls made.
    pub calls: AtomicU64,
    /// Bytes of records fetched.
    pub bytes: AtomicU64,
    /// Calls refused as throttled.
    pub throttled: AtomicU64,
    /// Iterators that expired and were renewed.
    pub expired_iterators: AtomicU64,
    /// Readers that stopped fetching because the hub's ring holds what follows.
    pub handed_over: AtomicU64,
    /// Subscribers refused a reader because all were busy.
    pub refused: AtomicU64,
}

/// Why a subscriber could not be given a reader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "all {max} catch-up readers of stream {stream:?} are busy reading older records from Kinesis; retry with your cursor in a few seconds"
)]
pub struct Busy {
    /// The stream.
    pub stream: String,
    /// The bound.
    pub max: usize,
}

/// The stream's retention, as Kinesis last said it.
#[derive(Debug, Clone, Copy)]
struct Retention {
    hours: u32,
    fetched: tokio::time::Instant,
}

/// Catch-up of one stream.
#[derive(Debug)]
pub struct CatchUp {
    /// For calls made from the async workers (DescribeStreamSummary).
    client: Client,
    /// For the readers: the same configuration, its own connections (see `thread.rs`).
    reader_client: Client,
    /// The catch-up thread, where readers run.
    thread: Handle,
    /// Whose turn it is to write catch-up responses (shared by every stream).
    turns: Turns,
    hub: Arc<StreamHub>,
    settings: Arc<CatchUpSettings>,
    budget: Budget,
    /// Windows of the readers, by shard (weak: a window lives while its reader or a
    /// subscriber holds it).
    readers: Mutex<HashMap<String, Vec<Weak<Window>>>>,
    shutdown: watch::Receiver<bool>,
    retention: Mutex<Option<Retention>>,
    /// Bumped whenever a reader fetched records or ended: wakes the subscribers catching
    /// up (and only them; live subscribers wait on the hub).
    changes: watch::Sender<u64>,
    /// Counters.
    pub counters: CatchUpCounters,
}

impl CatchUp {
    /// Catch-up of `hub`'s stream through `client`, its readers running on `thread`
    /// (see [`thread::start`]) and its subscribers writing in `turns`.
    pub fn new(
        client: Client,
        hub: Arc<StreamHub>,
        settings: CatchUpSettings,
        thread: Handle,
        turns: Turns,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        // `from_conf` gives the client a new default HTTP client, so a pool of its own:
        // connections the readers open are driven by the catch-up thread, and must not
        // carry the ingest's calls (nor the readers' calls ride the workers' connections).
        let reader_client = Client::from_conf(client.config().clone());
        Arc::new(Self {
            client,
            reader_client,
            thread,
            turns,
            budget: Budget::new(settings.rates),
            hub,
            settings: Arc::new(settings),
            readers: Mutex::new(HashMap::new()),
            shutdown,
            retention: Mutex::new(None),
            changes: watch::Sender::new(0),
            counters: CatchUpCounters::default(),
        })
    }

    /// A receiver that wakes whenever a reader of this stream fetched records or ended.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn notify(&self) {
        self.changes.send_modify(|version| *version += 1);
    }

    /// Whose turn it is to write catch-up responses.
    pub fn turns(&self) -> &Turns {
        &self.turns
    }

    /// The stream.
    pub fn stream(&self) -> &str {
        self.hub.name()
    }

    /// Attaches a subscriber that must read `shard_id` from `from`: to a reader whose
    /// window holds that position, or to a new reader.
    pub fn attach(self: &Arc<Self>, shard_id: &str, from: &From) -> Result<Attached, Busy> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        for windows in readers.values_mut() {
            windows.retain(|window| window.strong_count() > 0);
        }
        readers.retain(|_, windows| !windows.is_empty());
        let windows = readers.entry(shard_id.to_owned()).or_default();
        for window in windows.iter().filter_map(Weak::upgrade) {
            let next = window.lock().seek(from);
            if let Some(next) = next {
                return Ok(Attached::new(window, next));
            }
        }
        let running = self.counters.readers_running.load(Ordering::Relaxed);
        if running >= self.settings.max_readers as u64 {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Busy {
                stream: self.hub.name().to_owned(),
                max: self.settings.max_readers,
            });
        }
        let window = Window::new(shard_id.to_owned(), from.clone());
        windows.push(Arc::downgrade(&window));
        let attached = Attached::new(window.clone(), 0);
        self.counters
            .readers_started
            .fetch_add(1, Ordering::Relaxed);
        self.counters
            .readers_running
            .fetch_add(1, Ordering::Relaxed);
        info!(stream = self.hub.name(), shard = shard_id, from = ?from, "catch-up reader started");
        self.thread.spawn(reader::run(self.clone(), window));
        Ok(attached)
    }

    /// The stream's retention period in hours, from DescribeStreamSummary at most every
    /// five minutes; `None` when Kinesis did not answer (within two seconds).
    pub async fn retention_hours(&self) -> Option<u32> {
        const FRESH: Duration = Duration::from_secs(300);
        let cached = *self.retention.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(retention) = cached
            && retention.fetched.elapsed() < FRESH
        {
            return Some(retention.hours);
        }
        let call = self
            .client
            .describe_stream_summary()
            .stream_name(self.hub.name())
            .send();
        let hours = match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(output)) => output
                .stream_description_summary()
                .map(|summary| summary.retention_period_hours())
                .and_then(|hours| u32::try_from(hours).ok()),
            _ => None,
        };
        match hours {
            Some(hours) => {
                *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = Some(Retention {
                    hours,
                    fetched: tokio::time::Instant::now(),
                });
                Some(hours)
            }
            None => cached.map(|retention| retention.hours),
        }
    }
}
