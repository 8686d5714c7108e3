//! What the catch-up run found, and the Markdown it prints.

use std::fmt::Write;

use super::{
    RECORD_BYTES, Sizes,
    clients::{Latency, LiveTally},
};

/// One subscriber reading the shard back.
#[derive(Debug, Clone)]
pub struct ReadBack {
    /// The emulator's limits.
    pub label: String,
    pub records: u64,
    /// Until the subscriber had every record.
    pub secs: f64,
    /// GetRecords calls until then.
    pub calls: u64,
    /// The relay's CPU over that time, percent of one core.
    pub cpu_pct: f64,
    /// This process's CPU (the emulator, the subscriber) over that time.
    pub harness_cpu_pct: f64,
    /// The time and calls the GetRecords limits allow, with limits on.
    pub budget: Option<(f64, u64)>,
}

impl ReadBack {
    pub fn mib(&self) -> f64 {
        (self.records * RECORD_BYTES as u64) as f64 / f64::from(1 << 20)
    }

    /// The time the budget allows over the time taken (none when the first call reads
    /// everything, which the budget allows at once).
    pub fn budget_use(&self) -> Option<f64> {
        self.budget
            .filter(|&(secs, _)| secs > 0.0)
            .map(|(secs, _)| secs / self.secs)
    }
}

/// One phase beside the live subscribers.
#[derive(Debug, Clone)]
pub struct Crowd {
    /// What reads the shard back.
    pub kind: Reader,
    /// Which round of the alternating phases (from 1).
    pub round: usize,
    /// GetRecords calls from the start until the upstream was quiet.
    pub calls: u64,
    /// Readers started over that time (GetShardIterator calls).
    pub readers: u64,
    /// Until every subscriber had every record (the phase length for live only).
    pub secs: f64,
    /// The relay's CPU over that time, percent of one core.
    pub cpu_pct: f64,
    /// This process's CPU (clients and emulator) over that time, percent of one core.
    pub harness_cpu_pct: f64,
    /// Live latency from the intended send.
    pub from_send: Latency,
    /// Live latency from the arrival in the stream.
    pub from_arrival: Latency,
}

/// What reads the shard back during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Nothing: live records only.
    Nobody,
    /// The harness itself, with GetRecords: the emulator's share of any slowdown.
    Harness,
    /// This many subscribers catching up through the relay.
    Subscribers(usize),
}

/// The tables and the verdicts, in Markdown.
pub fn table(
    sizes: &Sizes,
    machine: &str,
    reads: &[ReadBack],
    crowds: &[Crowd],
    live: &LiveTally,
) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, "## Catch-up\n\nMachine: {machine}.\n");
    let _ = writeln!(
        out,
        "**Reading one shard back** (one subscriber from trim_horizon; records of {RECORD_BYTES} bytes written before the relay started at latest):\n"
    );
    let _ = writeln!(
        out,
        "| emulator limits | records | MiB | time s | records/s | MiB/s | GetRecords calls | relay CPU % | harness CPU % | the budget allows | use of the budget |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for read in reads {
        let allows = read.budget.map_or("-".to_owned(), |(secs, calls)| {
            let plural = if calls == 1 { "" } else { "s" };
            format!("{secs:.2} s, {calls} call{plural}")
        });
        let used = read
            .budget_use()
            .map_or("-".to_owned(), |used| format!("{:.0}%", used * 100.0));
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.2} | {:.0} | {:.2} | {} | {:.0} | {:.0} | {allows} | {used} |",
            read.label,
            read.records,
            read.mib(),
            read.secs,
            read.records as f64 / read.secs,
            read.mib() / read.secs,
            read.calls,
            read.cpu_pct,
            read.harness_cpu_pct,
        );
    }
    let _ = writeln!(
        out,
        "\n**Catching up beside live subscribers** (limits on; {} live subscribers at latest, {:.0} records/s; live latency from each record's arrival in the stream to its receipt, and from its intended send):\n",
        sizes.live, sizes.live_rate
    );
    let _ = writeln!(
        out,
        "| reading the shard back | readers | GetRecords calls | calls vs one | time to every record s | relay CPU % | harness CPU % | live records | p50 ms | p99 ms | p99.9 ms | p99 vs none | p99 from send ms |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let find = |kind: Reader| crowds.iter().find(|c| c.kind == kind);
    let single = find(Reader::Subscribers(1)).map(|c| c.calls);
    // Each phase against the live-only phase of its round.
    let none = |round: usize| {
        crowds
            .iter()
            .find(|c| c.kind == Reader::Nobody && c.round == round)
            .map(|c| c.from_arrival.p99)
    };
    let ratio = |c: &Crowd| single.map(|one| c.calls as f64 / one.max(1) as f64);
    let change = |c: &Crowd| {
        none(c.round).map(|base| (c.from_arrival.p99 as f64 / base.max(1) as f64 - 1.0) * 100.0)
    };
    let rounds = crowds.iter().map(|c| c.round).max().unwrap_or(1);
    for c in crowds {
        let round = if rounds > 1 {
            format!(" (round {})", c.round)
        } else {
            String::new()
        };
        let (label, readers, calls, versus, secs, change) = match c.kind {
            Reader::Nobody => (
                format!("nothing (live only){round}"),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                format!("({:.0} s)", c.secs),
                "-".to_owned(),
            ),
            kind => (
                match kind {
                    Reader::Subscribers(1) => format!("1 subscriber from trim_horizon{round}"),
                    Reader::Subscribers(n) => format!("{n} subscribers from trim_horizon{round}"),
                    _ => format!("the harness, with GetRecords (no relay){round}"),
                },
                c.readers.to_string(),
                c.calls.to_string(),
                match kind {
                    Reader::Subscribers(_) => ratio(c).map_or("-".into(), |r| format!("{r:.2}")),
                    _ => "-".to_owned(),
                },
                format!("{:.2}", c.secs),
                change(c).map_or("-".into(), |pct| format!("{pct:+.0}%")),
            ),
        };
        let _ = writeln!(
            out,
            "| {label} | {readers} | {calls} | {versus} | {secs} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {change} | {:.2} |",
            c.cpu_pct,
            c.harness_cpu_pct,
            c.from_arrival.count,
            ms(c.from_arrival.p50),
            ms(c.from_arrival.p99),
            ms(c.from_arrival.p999),
            ms(c.from_send.p99),
        );
    }
    let _ = writeln!(
        out,
        "\nLive subscribers: {} records published, {} gaps, {} repeats in all.\n",
        live.sent, live.gaps, live.repeats
    );
    let verdict = |met: bool| if met { "met" } else { "NOT MET" };
    if let Some(used) = reads.first().and_then(ReadBack::budget_use) {
        let _ = writeln!(
            out,
            "- budget use with limits on: {:.0}% (target >= 90%: {})",
            used * 100.0,
            verdict(used >= 0.9)
        );
    }
    // The crowd's worst round for sharing; medians over the rounds for the live p99.
    let crowd_rounds: Vec<&Crowd> = crowds
        .iter()
        .filter(|c| c.kind == Reader::Subscribers(sizes.crowd))
        .collect();
    let p99s = |kind: Reader| {
        median(
            crowds
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| c.from_arrival.p99)
                .collect(),
        )
    };
    let medians = (p99s(Reader::Nobody), p99s(Reader::Subscribers(sizes.crowd)));
    if let Some(crowd) = crowd_rounds.iter().max_by_key(|c| (c.readers, c.calls))
        && let Some(r) = ratio(crowd)
        && let (Some(none), Some(with)) = medians
    {
        let pct = (with as f64 / none.max(1) as f64 - 1.0) * 100.0;
        let one = find(Reader::Subscribers(1)).map_or(0, |c| c.readers);
        let worst = if crowd_rounds.len() > 1 {
            " (the worst of the rounds)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "- shared reader: {} subscribers from one position were served by {} reader(s){worst}, one subscriber by {one} (GetShardIterator calls)",
            sizes.crowd, crowd.readers
        );
        let _ = writeln!(
            out,
            "- GetRecords calls: {} subscribers made {r:.2}x the calls of one ({} against {}; target <= 1.10: {})",
            sizes.crowd,
            crowd.calls,
            single.unwrap_or(0),
            verdict(r <= 1.1)
        );
        let over = if crowd_rounds.len() > 1 {
            format!(" (medians of {} rounds)", crowd_rounds.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "- live p99 with {} catching up: {:.2} ms against {:.2} ms with none{over}, {pct:+.0}% (target within 10%: {})",
            sizes.crowd,
            with as f64 / 1000.0,
            none as f64 / 1000.0,
            verdict(pct <= 10.0)
        );
    }
    out
}

/// The median of `values` (the lower middle one for an even count).
fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len().saturating_sub(1) / 2).copied()
}
