//! The clients of the catch-up run: subscribers that catch up from `trim_horizon`, and the
//! live side (a publisher of timed records and subscribers at `latest` that measure their
//! latency).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use kinesis_relay_api::v1::{
    LagPolicy, Latest, SubscribeRequest, SubscribeResponse, TrimHorizon,
    subscribe_request::StartingPosition, subscribe_response::Event,
};
use tokio::task::JoinHandle;
use tonic::Streaming;

use super::RECORD_BYTES;
use crate::{
    payload::{self, Kind, SubStats},
    serve::STREAM,
    systems::{Server, relay},
};

/// Subscribers catching up from `trim_horizon`. They count the records written before the
/// relay started (kind `Load`, sequence numbers from 0) and skip the live ones.
///
/// They run on a runtime of their own whose thread has the lowest priority (`SCHED_IDLE`),
/// as the relay's catch-up readers do: in a deployment they would be other processes on other
/// machines, and here decoding their 100 MiB bursts on CPU 0 would otherwise delay the live
/// subscribers (and the emulator's pushes) on that CPU, which is the harness's contention,
/// not the relay's.
pub struct Catchers {
    stats: Vec<Arc<SubStats>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    /// Runs the subscribers; its drop ends them.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Catchers {
    /// Subscribes `n` clients at once, each on its own connection, with the relay's default
    /// lag policy (catch-up).
    pub async fn start(server: &Server, n: usize) -> anyhow::Result<Self> {
        let request = SubscribeRequest {
            stream: STREAM.to_owned(),
            starting_position: Some(StartingPosition::TrimHorizon(TrimHorizon {})),
            ..SubscribeRequest::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("catching-up")
            .on_thread_start(|| {
                let _ = kinesis_relay::catchup::thread::lowest_priority();
            })
            .enable_all()
            .build()?;
        let (addr, frame_size) = (server.addr.clone(), server.client_frame_size);
        let streams = runtime
            .spawn(async move {
                futures::future::try_join_all(
                    (0..n).map(|_| relay::open_at(&addr, frame_size, request.clone())),
                )
                .await
            })
            .await?
            .context("subscribing from trim_horizon")?;
        // Only `Load` records are observed, and those are never timed: this stays empty.
        let untimed = Arc::new(Mutex::new(payload::histogram()));
        let stats: Vec<Arc<SubStats>> = (0..n).map(|_| Arc::new(SubStats::default())).collect();
        let tasks = streams
            .into_iter()
            .zip(&stats)
            .map(|(mut stream, stats)| {
                let (stats, untimed) = (stats.clone(), untimed.clone());
                runtime.spawn(async move {
                    loop {
                        let response = stream.message().await.context("the stream failed")?;
                        let response = response.context("the relay ended the stream")?;
                        let Some(Event::Records(batch)) = response.event else {
                            continue;
                        };
                        for record in &batch.records {
                            if payload::is(&record.data, Kind::Load) {
                                stats.observe(&record.data, &untimed);
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(Self {
            stats,
            tasks,
            runtime: Some(runtime),
        })
    }

    /// Waits until every subscriber has `records` records; fails if a stream ended first
    /// or after `timeout`.
    pub async fn wait_for(&mut self, records: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let least = self.stats.iter().map(|s| s.received()).min().unwrap_or(0);
            if least >= records {
                return Ok(());
            }
            if let Some(ended) = self.tasks.iter_mut().find(|task| task.is_finished()) {
                let err = match ended.await {
                    Ok(Ok(())) => anyhow::anyhow!("its stream ended"),
                    Ok(Err(err)) => err,
                    Err(err) => err.into(),
                };
                return Err(err.context("a subscriber catching up"));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "after {timeout:?} the slowest subscriber had {least} of {records} records"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Checks that every subscriber got exactly records `0..records`, in order.
    pub fn check(&self, records: u64) -> anyhow::Result<()> {
        for (i, stats) in self.stats.iter().enumerate() {
            anyhow::ensure!(
                stats.received() == records
                    && stats.next() == Some(records)
                    && stats.gaps(records) == 0
                    && stats.repeats() == 0,
                "subscriber {i} caught up wrongly: {} records, next {:?}, {} gaps, {} repeats",
                stats.received(),
                stats.next(),
                stats.gaps(records),
                stats.repeats()
            );
        }
        Ok(())
    }
}

impl Drop for Catchers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            // Dropped from async code: a runtime may not wait for its tasks there.
            runtime.shutdown_background();
        }
    }
}

/// Latency quantiles of the live subscribers over one phase, microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    /// Records timed.
    pub count: u64,
}

impl Latency {
    fn of(hist: &Mutex<Histogram<u64>>) -> Self {
        let Ok(hist) = hist.lock() else {
            return Self::default();
        };
        Self {
            p50: hist.value_at_quantile(0.5),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            count: hist.len(),
        }
    }
}

/// What the live subscribers saw over the whole run.
#[derive(Debug, Clone, Copy)]
pub struct LiveTally {
    /// Records published.
    pub sent: u64,
    pub gaps: u64,
    pub repeats: u64,
}

/// The live side: an open-loop publisher of timed records and subscribers at `latest`, on
/// a runtime of their own, so that the harness's subscribers catching up (which decode
/// bursts of megabytes) do not hold them up in the same task queues.
pub struct Live {
    stats: Vec<Arc<SubStats>>,
    /// From the intended send time to receipt.
    from_send: Arc<Mutex<Histogram<u64>>>,
    /// From the record's arrival in the stream (ApproximateArrivalTimestamp) to receipt.
    from_arrival: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
    publisher: Option<JoinHandle<anyhow::Result<u64>>>,
    /// Runs the publisher and the subscribers; its drop ends them.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Live {
    /// Subscribes `subscribers` at `latest`, starts publishing `rate` records per second
    /// and waits until every subscriber has one.
    pub async fn start(server: &Server, subscribers: usize, rate: f64) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("live")
            .enable_all()
            .build()?;
        let from_send = Arc::new(Mutex::new(payload::histogram()));
        let from_arrival = Arc::new(Mutex::new(payload::histogram()));
        let stats: Vec<Arc<SubStats>> = (0..subscribers)
            .map(|_| Arc::new(SubStats::default()))
            .collect();
        for stats in &stats {
            let (addr, frame_size) = (server.addr.clone(), server.client_frame_size);
            let request = SubscribeRequest {
                stream: STREAM.to_owned(),
                starting_position: Some(StartingPosition::Latest(Latest {})),
                on_lag: LagPolicy::Skip as i32,
                ..SubscribeRequest::default()
            };
            let stream = runtime
                .spawn(async move { relay::open_at(&addr, frame_size, request).await })
                .await?
                .context("subscribing at latest")?;
            let (stats, from_send, from_arrival) =
                (stats.clone(), from_send.clone(), from_arrival.clone());
            runtime.spawn(read_live(stream, stats, from_send, from_arrival));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let endpoint = server
            .upstream
            .clone()
            .context("the relay has an upstream")?;
        let publisher = runtime.spawn(publish(endpoint, rate, stop.clone()));
        let live = Self {
            stats,
            from_send,
            from_arrival,
            stop,
            publisher: Some(publisher),
            runtime: Some(runtime),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while live.stats.iter().any(|s| s.next().is_none()) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "live subscribers saw no record within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(live)
    }

    /// Forgets the latency recorded so far: a phase starts.
    pub fn reset(&self) {
        for hist in [&self.from_send, &self.from_arrival] {
            if let Ok(mut hist) = hist.lock() {
                hist.reset();
            }
        }
    }

    /// The latency recorded since the last [`Live::reset`]: (from the intended send, from
    /// the arrival in the stream).
    pub fn latency(&self) -> (Latency, Latency) {
        (
            Latency::of(&self.from_send),
            Latency::of(&self.from_arrival),
        )
    }

    /// Stops publishing, waits (at most 10 s) until every subscriber has every record, and
    /// counts gaps and repeats.
    pub async fn stop(mut self) -> anyhow::Result<LiveTally> {
        self.stop.store(true, Ordering::Relaxed);
        let publisher = self.publisher.take().context("stopped once")?;
        let sent = publisher.await??;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stats.iter().any(|s| s.next().unwrap_or(0) < sent) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(LiveTally {
            sent,
            gaps: self.stats.iter().map(|s| s.gaps(sent)).sum(),
            repeats: self.stats.iter().map(|s| s.repeats()).sum(),
        })
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(runtime) = self.runtime.take() {
            // Dropped from async code: a runtime may not wait for its tasks there.
            runtime.shutdown_background();
        }
    }
}

/// Reads one live subscription into `stats` and the two latency histograms.
async fn read_live(
    mut stream: Streaming<SubscribeResponse>,
    stats: Arc<SubStats>,
    from_send: Arc<Mutex<Histogram<u64>>>,
    from_arrival: Arc<Mutex<Histogram<u64>>>,
) {
    while let Ok(Some(response)) = stream.message().await {
        let Some(Event::Records(batch)) = response.event else {
            continue;
        };
        let now = SystemTime::now();
        for record in &batch.records {
            stats.observe(&record.data, &from_send);
            let arrival = record
                .approximate_arrival_timestamp
                .as_ref()
                .and_then(|at| {
                    let nanos = u32::try_from(at.nanos).ok()?;
                    Some(UNIX_EPOCH + Duration::new(u64::try_from(at.seconds).ok()?, nanos))
                });
            // Arrival times are whole milliseconds: up to 1 ms more than the true delay.
            if let Some(waited) = arrival.and_then(|at| now.duration_since(at).ok())
                && let Ok(mut hist) = from_arrival.lock()
            {
                hist.saturating_record(waited.as_micros().max(1) as u64);
            }
        }
    }
}

/// Publishes `rate` timed records per second until `stop`, in 1 ms ticks, each stamped with
/// its intended send time (a late send counts as latency); returns how many it sent.
async fn publish(endpoint: String, rate: f64, stop: Arc<AtomicBool>) -> anyhow::Result<u64> {
    let client = kinesis_relay::embedded::client_for(&endpoint);
    let start_ns = payload::now_ns();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
        if due <= sent {
            continue;
        }
        let batch: Vec<Bytes> = (sent..due.min(sent + 500))
            .map(|seq| {
                let intended = start_ns + (seq as f64 / rate * 1e9) as u64;
                payload::make(seq, intended, Kind::Timed, RECORD_BYTES)
            })
            .collect();
        let count = batch.len() as u64;
        relay::send(&client, batch)
            .await
            .context("publishing live records")?;
        sent += count;
    }
    Ok(sent)
}
