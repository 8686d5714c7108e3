//! The catch-up run (`--catch-up`): how fast the relay reads a shard back from Kinesis for
//! subscribers asking for records older than its ring, and whether subscribers at the same
//! position share one reader without slowing the live ones.
//!
//! 1. **Limits on.** The emulator enforces AWS's per-shard limits. Writes and GetRecords
//!    share that switch and it is fixed at start, so the shard is filled at 90% of its
//!    write limit (1,000 records/s): records of 1 KiB, about ten seconds of GetRecords'
//!    2 MiB/s. The relay then starts at `latest`, so none of them is in its ring.
//!    - One subscriber asks for `trim_horizon`: the time until it has every record, against
//!      the time the GetRecords limits allow for that read ([`upstream::budget_time`]).
//!    - A publisher writes timed records and live subscribers (at `latest`) measure their
//!      latency: alone; while the harness itself reads the shard with GetRecords (what the
//!      emulator's work costs them, the relay reading nothing); while one subscriber
//!      catches up from `trim_horizon`; while 100 do at once. The emulator counts the
//!      relay's GetRecords calls of each.
//! 2. **Limits off.** A new emulator, filled as fast as it takes records, and a relay whose
//!    catch-up budget is lifted: how fast the relay itself reads.
//!
//! # Layout
//! - `upstream.rs`: the emulator in this process, filling it, the time the budget allows.
//! - `clients.rs`: subscribers catching up, and the live publisher and subscribers.
//! - `report.rs`: the figures and the tables.
//! - `mod.rs`: the phases.

mod clients;
mod report;
mod upstream;

use std::time::{Duration, Instant};

use kinesis_relay::catchup::CatchUpSettings;

use self::{
    clients::{Catchers, Live, LiveTally},
    report::{Crowd, ReadBack, Reader, table},
    upstream::Upstream,
};
use crate::{
    procstat,
    systems::{Placement, Server, System, relay},
};

/// Bytes of every record.
pub const RECORD_BYTES: usize = 1024;
/// The relay's ring: its default; it holds only what arrives after the relay started.
const RING_BYTES: u64 = 256 << 20;
/// How much longer than its grace period an idle catch-up reader may take to stop.
const RETIRE_MARGIN: Duration = Duration::from_secs(2);
/// Filling with limits on: 90% of the shard's 1,000 records/s.
const FILL_RATE: f64 = 900.0;

/// How much the run does.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Records read back with limits on.
    pub limited: u64,
    /// Records read back with limits off.
    pub unlimited: u64,
    /// Subscribers catching up at once.
    pub crowd: usize,
    /// Live subscribers.
    pub live: usize,
    /// Live records per second.
    pub live_rate: f64,
    /// The live-only phase.
    pub baseline: Duration,
    /// Rounds of a live-only phase and the crowd catching up: the live p99 moves by tens
    /// of percent between phases of the same kind on a shared machine, so the verdict
    /// compares medians of phases that alternate.
    pub rounds: usize,
}

impl Sizes {
    /// The full run, or a quick one for a smoke test.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                limited: 2_000,
                unlimited: 20_000,
                crowd: 100,
                live: 10,
                // Few live records: the shard's live records are read back too (until the
                // subscribers join the ring), and with the 2,000 old ones they stay below
                // a reader's 8 MiB buffer, so slow (debug) subscribers are never dropped
                // from its window onto a second reader.
                live_rate: 50.0,
                baseline: Duration::from_secs(2),
                rounds: 1,
            }
        } else {
            Self {
                // 20 MiB: ten seconds at 2 MiB/s.
                limited: 20_480,
                unlimited: 200_000,
                crowd: 100,
                live: 10,
                live_rate: 200.0,
                baseline: Duration::from_secs(10),
                rounds: 3,
            }
        }
    }
}

/// Runs both parts and prints the tables.
pub async fn run(sizes: Sizes, placement: &Placement, machine: &str) -> anyhow::Result<()> {
    let (limited, crowds, live) = limits_on(&sizes, placement).await?;
    let unlimited = limits_off(&sizes, placement).await?;
    print!(
        "{}",
        table(&sizes, machine, &[limited, unlimited], &crowds, &live)
    );
    Ok(())
}

/// Part 1: read-back throughput, then sharing beside the live subscribers.
async fn limits_on(
    sizes: &Sizes,
    placement: &Placement,
) -> anyhow::Result<(ReadBack, Vec<Crowd>, LiveTally)> {
    let upstream = Upstream::start(true).await?;
    let took = upstream.fill(sizes.limited, Some(FILL_RATE)).await?;
    eprintln!(
        "limits on: wrote {} records in {:.1} s",
        sizes.limited,
        took.as_secs_f64()
    );
    let server = start_relay(placement, &upstream, &["--from-latest"]).await?;
    let records_per_call = CatchUpSettings::default().records_per_call;
    let budget = upstream::budget_time(
        sizes.limited,
        RECORD_BYTES as u64,
        u64::try_from(records_per_call).unwrap_or(1),
    );
    let limited = read_back(
        &server,
        &upstream,
        "on (5 calls/s, 2 MiB/s per shard)",
        sizes.limited,
        Some(budget),
    )
    .await?;

    let live = Live::start(&server, sizes.live, sizes.live_rate).await?;
    retire().await;
    let mut crowds = Vec::new();
    for kind in [
        Reader::Nobody,
        Reader::Harness,
        Reader::Subscribers(1),
        Reader::Subscribers(sizes.crowd),
    ] {
        crowds.push(crowd(&server, &upstream, &live, kind, 1, sizes).await?);
    }
    for round in 2..=sizes.rounds {
        for kind in [Reader::Nobody, Reader::Subscribers(sizes.crowd)] {
            crowds.push(crowd(&server, &upstream, &live, kind, round, sizes).await?);
        }
    }
    let tally = live.stop().await?;
    // The relay before its upstream (see `Server`'s drop).
    drop(server);
    drop(upstream);
    Ok((limited, crowds, tally))
}

/// Part 2: read-back throughput of the relay itself.
async fn limits_off(sizes: &Sizes, placement: &Placement) -> anyhow::Result<ReadBack> {
    let upstream = Upstream::start(false).await?;
    let took = upstream.fill(sizes.unlimited, None).await?;
    eprintln!(
        "limits off: wrote {} records in {:.1} s",
        sizes.unlimited,
        took.as_secs_f64()
    );
    let extra = ["--from-latest", "--unbudgeted-catch-up"];
    let server = start_relay(placement, &upstream, &extra).await?;
    let label = "off, the relay's budget lifted";
    let unlimited = read_back(&server, &upstream, label, sizes.unlimited, None).await?;
    // The relay before its upstream (see `Server`'s drop).
    drop(server);
    drop(upstream);
    Ok(unlimited)
}

/// Starts the relay under test on `upstream` (in this process) with `serve-relay` flags
/// `extra`.
async fn start_relay(
    placement: &Placement,
    upstream: &Upstream,
    extra: &[&str],
) -> anyhow::Result<Server> {
    let extra: Vec<String> = extra.iter().map(|&arg| arg.to_owned()).collect();
    relay::start_on(
        System::Relay,
        placement,
        &upstream.endpoint,
        Vec::new(),
        RING_BYTES,
        &extra,
    )
    .await
}

/// One subscriber from `trim_horizon` until it has `records` records.
async fn read_back(
    server: &Server,
    upstream: &Upstream,
    label: &str,
    records: u64,
    budget: Option<(f64, u64)>,
) -> anyhow::Result<ReadBack> {
    let calls0 = upstream.get_records_calls();
    let cpu = Cpu::start(server);
    let started = Instant::now();
    let mut catcher = Catchers::start(server, 1).await?;
    catcher.wait_for(records, deadline(records)).await?;
    let secs = started.elapsed().as_secs_f64();
    let calls = upstream.get_records_calls() - calls0;
    let (cpu_pct, harness_cpu_pct) = cpu.percent(secs);
    catcher.check(records)?;
    let read = ReadBack {
        label: label.to_owned(),
        records,
        secs,
        calls,
        cpu_pct,
        harness_cpu_pct,
        budget,
    };
    eprintln!(
        "limits {label}: {records} records in {secs:.2} s ({:.2} MiB/s)",
        read.mib() / secs
    );
    Ok(read)
}

/// One phase beside the live subscribers: `kind` reads the shard back (the records
/// written before the relay started) while the live subscribers measure their latency.
async fn crowd(
    server: &Server,
    upstream: &Upstream,
    live: &Live,
    kind: Reader,
    round: usize,
    sizes: &Sizes,
) -> anyhow::Result<Crowd> {
    let records = sizes.limited;
    live.reset();
    let calls0 = upstream.get_records_calls();
    let readers0 = upstream.iterator_calls();
    let cpu = Cpu::start(server);
    let started = Instant::now();
    match kind {
        Reader::Nobody => tokio::time::sleep(sizes.baseline).await,
        Reader::Harness => {
            let per_call = CatchUpSettings::default().records_per_call;
            upstream.read(records, per_call).await?;
        }
        Reader::Subscribers(n) => {
            let mut catchers = Catchers::start(server, n).await?;
            catchers.wait_for(records, deadline(records)).await?;
            catchers.check(records)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu_pct, harness_cpu_pct) = cpu.percent(secs);
    let (from_send, from_arrival) = live.latency();
    if kind == Reader::Harness {
        // Until the shard's GetRecords buckets are full again: the relay's reader does not
        // know about this reader's calls, and would be throttled for their debt.
        tokio::time::sleep(upstream::longest_debt() + Duration::from_secs(1)).await;
    }
    if let Reader::Subscribers(n) = kind {
        // Every call of this phase's reader counts, and the next phase must not find it: it
        // reads on until its subscribers have joined the ring, may then wait out the debt
        // of its last answer and make one more call, and stops once it has had no
        // subscriber for its grace period. So: no call for the longer of those, plus a
        // margin for a busy relay.
        let settings = CatchUpSettings::default();
        let quiet = upstream::longest_debt().max(settings.idle_grace) + RETIRE_MARGIN;
        if !upstream.wait_quiet(quiet, Duration::from_secs(60)).await {
            eprintln!("catch-up: GetRecords calls went on 60 s after {n} subscribers caught up");
        }
    }
    eprintln!("limits on: {kind:?} done in {secs:.2} s");
    Ok(Crowd {
        kind,
        round,
        calls: upstream.get_records_calls() - calls0,
        readers: upstream.iterator_calls() - readers0,
        secs,
        cpu_pct,
        harness_cpu_pct,
        from_send,
        from_arrival,
    })
}

/// CPU seconds of the relay and of this process since a phase started.
struct Cpu {
    relay_pid: u32,
    relay: f64,
    harness: f64,
}

impl Cpu {
    fn start(server: &Server) -> Self {
        Self {
            relay_pid: server.pid,
            relay: procstat::cpu_seconds(server.pid),
            harness: procstat::cpu_seconds(std::process::id()),
        }
    }

    /// (relay, this process) CPU over `secs`, percent of one core.
    fn percent(&self, secs: f64) -> (f64, f64) {
        let used = |now: f64, then: f64| (now - then) / secs * 100.0;
        (
            used(procstat::cpu_seconds(self.relay_pid), self.relay),
            used(procstat::cpu_seconds(std::process::id()), self.harness),
        )
    }
}

/// How long reading `records` back may take: three times what 2 MiB/s needs, plus 30 s.
fn deadline(records: u64) -> Duration {
    let at_budget = (records * RECORD_BYTES as u64) as f64 / f64::from(2 << 20);
    Duration::from_secs_f64(at_budget * 3.0 + 30.0)
}

/// Waits until the catch-up readers of the last phase have stopped (the relay keeps an
/// idle reader for its grace period, and a later subscriber from the same position would
/// share what it still holds instead of causing calls of its own).
async fn retire() {
    let grace = CatchUpSettings::default().idle_grace;
    tokio::time::sleep(grace + RETIRE_MARGIN).await;
}
