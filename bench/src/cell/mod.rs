//! One cell of the matrix: a system, a payload size and a subscriber count.
//!
//! 1. Start the server; its RSS is the baseline.
//! 2. Connect the subscribers; warm up until each has a record; RSS is "idle".
//! 3. Saturation: closed loop, the publisher keeps at most a window of records ahead of
//!    the slowest subscriber; delivered records/s summed over subscribers.
//! 4. Latency: open loop at half the saturation rate, each record stamped with its
//!    intended send time (no coordinated omission); p50/p99/p99.9.
//! 5. Latency again at a load common to every system (see [`common_deliveries_per_s`]).
//! 6. Gaps and repeats over everything sent.
//!
//! The open-loop (timed) phases are in `timed.rs`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;

use crate::{
    payload::{self, Kind, SubStats},
    procstat::{self, PeakRss},
    systems::{self, Placement, Publisher, Server, SubscriberCompression, System},
};

mod span;
mod timed;

use self::{span::WorkSpan, timed::timed_phase};

/// What one cell measures.
#[derive(Debug, Clone)]
pub struct CellSpec {
    /// The system under test.
    pub system: System,
    /// Payload bytes per record.
    pub payload: usize,
    /// Subscribers, each on its own connection.
    pub subscribers: usize,
    /// Length of the saturation phase and of the latency phase.
    pub phase: Duration,
    /// Ring bytes of the relay.
    pub ring_bytes: u64,
    /// Compressed responses the relay's gRPC subscribers accept.
    pub accept: SubscriberCompression,
    /// Records padded with JSON text rather than one repeated byte.
    pub json: bool,
    /// Saturation: bytes of records the publisher may be ahead of the slowest subscriber.
    pub window_bytes: usize,
}

/// What one cell found.
#[derive(Debug, Clone, Default)]
pub struct CellResult {
    pub system: String,
    pub payload: usize,
    pub subscribers: usize,
    /// Saturation: records delivered per second, summed over subscribers.
    pub sat_records_per_s: f64,
    /// Saturation: payload bytes delivered per second, summed over subscribers.
    pub sat_bytes_per_s: f64,
    /// Saturation: server CPU, percent of one core.
    pub sat_cpu_pct: f64,
    /// Saturation: percent of the machine's CPU time the hypervisor gave other guests over
    /// the rate's span (`procstat::MachineTicks`): time neither the server nor the load
    /// side could run, which no system controls.
    pub sat_steal_pct: f64,
    /// Saturation: records delivered per second of server CPU, from the phase's start to
    /// the end of its drain, where no record is in flight (`span.rs`; 0 when records were
    /// lost); a cell's report: the median of its rounds' own figures, `rounds::median`.
    pub deliveries_per_cpu_s: f64,
    /// Saturation: bytes the server wrote (to its sockets, mostly) per record delivered.
    pub wire_bytes_per_record: f64,
    /// Saturation: bytes the server wrote per write system call (fewer, larger writes read
    /// higher).
    pub bytes_per_write: f64,
    /// Saturation: records per response, for the relay's gRPC subscribers (0 elsewhere):
    /// where subscribers keep up, each response carries what arrived since the last one,
    /// and the relay's work per response is spread over that many records.
    pub records_per_response: f64,
    /// Latency phase: records published per second.
    pub lat_publish_rate: f64,
    /// Latency phase: records delivered per second, summed over subscribers.
    pub lat_records_per_s: f64,
    /// Latency phase: server CPU, percent of one core.
    pub lat_cpu_pct: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Latency phase, relay only: p50, p99, p99.9 of the delay the relay itself adds
    /// (entering the relay to handed to the subscriber's stream), as the upper bounds of
    /// its metric's buckets, microseconds (`u64::MAX`: above the last bound).
    pub added: Option<(u64, u64, u64)>,
    /// Common-load phase: records published per second (the same for every system).
    pub common_publish_rate: f64,
    /// Common-load phase: records delivered per second, summed over subscribers.
    pub common_records_per_s: f64,
    pub common_p50_us: u64,
    pub common_p99_us: u64,
    pub common_p999_us: u64,
    /// Common-load phase, relay only: as [`CellResult::added`].
    pub common_added: Option<(u64, u64, u64)>,
    /// RSS with no subscriber, KiB.
    pub rss_base_kib: u64,
    /// RSS with the subscribers connected and idle, KiB.
    pub rss_idle_kib: u64,
    /// Largest RSS under load, KiB.
    pub rss_loaded_kib: u64,
    /// Bytes of records held for replay at the end (the relay's ring), KiB.
    pub held_kib: u64,
    /// Records published in the cell.
    pub sent: u64,
    /// Records delivered, summed over subscribers.
    pub delivered: u64,
    pub gaps: u64,
    pub repeats: u64,
    /// Why the cell failed, if it did.
    pub error: String,
}

impl CellResult {
    /// (idle - base) / subscribers, KiB.
    pub fn idle_per_sub_kib(&self) -> f64 {
        self.rss_idle_kib.saturating_sub(self.rss_base_kib) as f64 / self.subscribers.max(1) as f64
    }

    /// (loaded - base - records held for replay) / subscribers, KiB.
    pub fn loaded_per_sub_kib(&self) -> f64 {
        self.rss_loaded_kib
            .saturating_sub(self.rss_base_kib + self.held_kib) as f64
            / self.subscribers.max(1) as f64
    }

    /// Deliveries in the latency phase over what was offered, percent.
    pub fn kept_up_pct(&self) -> f64 {
        let offered = self.lat_publish_rate * self.subscribers as f64;
        if offered > 0.0 {
            self.lat_records_per_s / offered * 100.0
        } else {
            0.0
        }
    }

    /// Deliveries in the common-load phase over what was offered, percent.
    pub fn common_kept_up_pct(&self) -> f64 {
        let offered = self.common_publish_rate * self.subscribers as f64;
        if offered > 0.0 {
            self.common_records_per_s / offered * 100.0
        } else {
            0.0
        }
    }
}

/// The readers of a cell.
struct Readers {
    stats: Vec<Arc<SubStats>>,
    latency: Arc<Mutex<Histogram<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    /// The smallest next-expected sequence over all readers (0 if one has none yet).
    fn min_next(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.next().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    fn delivered(&self) -> u64 {
        self.stats.iter().map(|s| s.received()).sum()
    }

    /// Responses that carried records, summed over readers (0 where a system does not
    /// batch records into responses).
    fn responses(&self) -> u64 {
        self.stats.iter().map(|s| s.responses()).sum()
    }

    /// Waits until every reader has everything up to `sent`, or `timeout`.
    async fn drain(&self, sent: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.min_next() < sent {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Publishes records with consecutive sequence numbers.
struct Sender {
    publisher: Publisher,
    payload: usize,
    /// Pad records with JSON text.
    json: bool,
    next_seq: u64,
}

impl Sender {
    async fn send(
        &mut self,
        count: usize,
        kind: Kind,
        stamp: impl Fn(u64) -> u64,
    ) -> anyhow::Result<()> {
        let batch: Vec<Bytes> = (0..count as u64)
            .map(|i| {
                let seq = self.next_seq + i;
                if self.json {
                    payload::make_json(seq, stamp(seq), kind, self.payload)
                } else {
                    payload::make(seq, stamp(seq), kind, self.payload)
                }
            })
            .collect();
        self.publisher.send(batch).await?;
        self.next_seq += count as u64;
        Ok(())
    }
}

/// Runs one cell; failures are reported in the result rather than aborting the matrix.
pub async fn run(spec: &CellSpec, placement: &Placement) -> CellResult {
    let mut result = CellResult {
        system: spec.system.name().to_owned(),
        payload: spec.payload,
        subscribers: spec.subscribers,
        ..CellResult::default()
    };
    if let Err(err) = run_inner(spec, placement, &mut result).await {
        result.error = format!("{err:#}");
    }
    result
}

async fn run_inner(
    spec: &CellSpec,
    placement: &Placement,
    result: &mut CellResult,
) -> anyhow::Result<()> {
    let server = systems::start(spec.system, placement, spec.ring_bytes).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    result.rss_base_kib = procstat::rss_kib(server.pid);

    let readers = connect_readers(&server, spec.subscribers, spec.accept).await?;
    let mut sender = Sender {
        publisher: Publisher::connect(&server).await?,
        payload: spec.payload,
        json: spec.json,
        next_seq: 0,
    };
    warm_up(&mut sender, &readers).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    result.rss_idle_kib = procstat::rss_kib(server.pid);

    let peak = PeakRss::start(server.pid);
    // At most 4,096 records a MiB of window: small records are not allowed a window of
    // more records than that (the committed figures were measured with this bound).
    let most = (spec.window_bytes >> 20).max(1) * 4096;
    let window = spec.window_bytes.div_ceil(spec.payload).clamp(16, most) as u64;
    let max_batch = (256usize << 10)
        .div_ceil(spec.payload)
        .clamp(1, sender.publisher.max_batch());

    // Saturation, measured after a short ramp.
    let ramp = (spec.phase / 4).min(Duration::from_millis(500));
    // The server's CPU and bytes per delivered record are counted from here, where nothing
    // is in flight, to the end of the drain below (span.rs): counted over the rate's span,
    // a window of records written before it and delivered in it made them read low or high.
    let span = WorkSpan::open(
        server.pid,
        sender.next_seq,
        readers.delivered(),
        readers.responses(),
    );
    // The rates are measured over `phase - ramp` from a mark taken after the ramp. A send
    // can hold the loop for seconds (the publisher shares its core with a thousand
    // subscribers), so the mark may come late: the phase then runs on until the span after
    // the mark is whole, where it used to end on time with a span of a few milliseconds (or
    // none) to measure. Bounded: three phases at most.
    let start = Instant::now();
    let measured = spec.phase - ramp;
    let cutoff = start + spec.phase * 3;
    let mut mark: Option<(Instant, u64, f64, procstat::MachineTicks)> = None;
    loop {
        let now = Instant::now();
        match mark {
            None if now >= start + ramp => {
                mark = Some((
                    now,
                    readers.delivered(),
                    procstat::cpu_seconds(server.pid),
                    procstat::MachineTicks::now(),
                ));
            }
            Some((t0, ..)) if now >= t0 + measured => break,
            _ => {}
        }
        if now >= cutoff {
            break;
        }
        let allowed = readers.min_next() + window;
        if sender.next_seq < allowed {
            let count = ((allowed - sender.next_seq) as usize).min(max_batch);
            sender
                .send(count, Kind::Load, |_| payload::now_ns())
                .await?;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (t0, delivered0, cpu0, machine0) = mark.context("no send returned within three phases")?;
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = readers.delivered() - delivered0;
    result.sat_records_per_s = delivered as f64 / elapsed;
    result.sat_bytes_per_s = result.sat_records_per_s * spec.payload as f64;
    // How busy the server was at that rate; what a delivery costs it is the span's.
    result.sat_cpu_pct = (procstat::cpu_seconds(server.pid) - cpu0) / elapsed * 100.0;
    result.sat_steal_pct = procstat::MachineTicks::now().stolen_pct_since(machine0);
    // A drain that times out (records lost) leaves the span without a CPU figure.
    readers
        .drain(sender.next_seq, Duration::from_secs(20))
        .await;
    let figures = span.close(
        sender.next_seq,
        readers.delivered(),
        readers.responses(),
        spec.subscribers,
    );
    result.deliveries_per_cpu_s = figures.deliveries_per_cpu_s;
    result.wire_bytes_per_record = figures.wire_bytes_per_record;
    result.bytes_per_write = figures.bytes_per_write;
    result.records_per_response = figures.records_per_response;

    // Latency at half the saturation rate, open loop.
    let rate = (result.sat_records_per_s / spec.subscribers as f64 / 2.0).max(10.0);
    let cpu0 = procstat::cpu_seconds(server.pid);
    let half = timed_phase(&server, &mut sender, &readers, rate, spec.phase, max_batch).await?;
    result.lat_cpu_pct = (procstat::cpu_seconds(server.pid) - cpu0) / half.elapsed * 100.0;
    result.lat_publish_rate = rate;
    result.lat_records_per_s = half.delivered_per_s;
    (result.p50_us, result.p99_us, result.p999_us, result.max_us) = half.quantiles;
    result.added = half.added;

    // Latency at the same offered load for every system of the cell.
    let common = common_deliveries_per_s(spec.payload) / spec.subscribers as f64;
    let same = timed_phase(
        &server,
        &mut sender,
        &readers,
        common.max(1.0),
        spec.phase,
        max_batch,
    )
    .await?;
    result.common_publish_rate = common.max(1.0);
    result.common_records_per_s = same.delivered_per_s;
    (
        result.common_p50_us,
        result.common_p99_us,
        result.common_p999_us,
        _,
    ) = same.quantiles;
    result.common_added = same.added;

    result.rss_loaded_kib = peak.peak().max(procstat::rss_kib(server.pid));
    drop(peak);
    result.held_kib = systems::held_bytes(&server).await / 1024;

    result.sent = sender.next_seq;
    result.delivered = readers.delivered();
    result.gaps = readers.stats.iter().map(|s| s.gaps(sender.next_seq)).sum();
    result.repeats = readers.stats.iter().map(|s| s.repeats()).sum();
    drop(readers);
    drop(server);
    Ok(())
}

/// Deliveries per second (summed over subscribers) of the common-load latency phase: the
/// same for every system, below every system's saturation on a small machine.
pub fn common_deliveries_per_s(payload: usize) -> f64 {
    (40e6 / payload as f64).min(20_000.0)
}

/// Connects `n` readers, 32 at a time, accepting `accept`.
async fn connect_readers(
    server: &Server,
    n: usize,
    accept: SubscriberCompression,
) -> anyhow::Result<Readers> {
    let latency = Arc::new(Mutex::new(payload::histogram()));
    let stats: Vec<Arc<SubStats>> = (0..n).map(|_| Arc::new(SubStats::default())).collect();
    let tasks = futures::stream::iter(stats.iter().cloned())
        .map(|s| systems::subscribe(server, s, latency.clone(), accept))
        .buffered(32)
        .try_collect()
        .await
        .context("connecting subscribers")?;
    Ok(Readers {
        stats,
        latency,
        tasks,
    })
}

/// Sends one warm-up record every 10 ms until every reader has one, then lets them drain.
async fn warm_up(sender: &mut Sender, readers: &Readers) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while readers.stats.iter().any(|s| s.next().is_none()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "subscribers saw no record within 30 s"
        );
        sender.send(1, Kind::Warmup, |_| payload::now_ns()).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::ensure!(
        readers
            .drain(sender.next_seq, Duration::from_secs(10))
            .await,
        "subscribers did not catch up after warm-up"
    );
    Ok(())
}
