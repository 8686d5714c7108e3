//! Flags, the matrix they select, and the top-level run.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    catchup,
    cell::{self, CellSpec},
    loopback, plot, report, rounds, serve, soak,
    systems::{Placement, SubscriberCompression, System},
};

/// `--window-kib` of the committed results.
const DEFAULT_WINDOW_KIB: u64 = 1024;
/// `--max-steal-pct` of a full run: under load this machine has lost from 5% to 55% of a
/// second to the hypervisor (2026-12-03), and a round of `relay-16k` at 1 KiB x 100 that
/// lost about half read 393k records/s against 599k for the round before it.
const DEFAULT_MAX_STEAL_PCT: u8 = 25;

/// The relay side by side with Redis pub/sub and NATS core: saturation throughput, latency
/// at half of it, server CPU and memory per subscriber, gaps and repeats.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// Internal: run one server process for the harness.
    #[command(subcommand)]
    pub serve: Option<Serve>,
    /// A small matrix (1 KiB x 1 and 10 subscribers, 1 s phases) for a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Systems to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [System::Relay, System::Relay16k, System::Redis, System::Nats])]
    pub systems: Vec<System>,
    /// Payload sizes in bytes (default 100,1024,10240; --quick: 1024).
    #[arg(long, value_delimiter = ',')]
    pub payloads: Vec<usize>,
    /// Subscriber counts (default 1,100,1000; --quick: 1,10).
    #[arg(long, value_delimiter = ',')]
    pub subscribers: Vec<usize>,
    /// Seconds of each phase (saturation, latency) per cell (default 3; --quick: 1).
    #[arg(long)]
    pub phase_secs: Option<f64>,
    /// Rounds of each cell (default 3; --quick: 1): its systems run in turns, a different
    /// one first each round, and the report keeps each system's median round by delivered
    /// records/s (with every round's gaps and repeats, and the median of the rounds'
    /// deliveries per CPU-second), so that a swing of the machine's speed during one
    /// system's turn does not decide the comparison; rounds.csv holds every round.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub rounds: Option<u64>,
    /// A round whose saturation span had more than this percent of the machine's CPU time
    /// stolen by the hypervisor (`steal` in /proc/stat; the report's steal column) is run
    /// again, at most twice, and the least stolen attempt kept: stolen time falls on one
    /// system's turn and not on the others' (default 25; --quick: 100, never run again).
    /// A round that failed, lost or repeated records is kept as it ran.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_steal_pct: Option<u8>,
    /// Compressed responses the relay's gRPC subscribers accept (`none`, `gzip`, `zstd`);
    /// the report's "wire B/rec" shows what it saves. Redis, NATS and SSE ignore it.
    #[arg(long, value_enum, default_value_t = SubscriberCompression::None)]
    pub subscriber_compression: SubscriberCompression,
    /// Pad records with JSON text (compressible as JSON records are) instead of one
    /// repeated byte (which compresses to almost nothing).
    #[arg(long)]
    pub json_payloads: bool,
    /// Saturation phase: KiB of records the publisher may be ahead of the slowest
    /// subscriber (closed loop). Too small a window measures the round trip through the
    /// system rather than its capacity: neither core is busy.
    #[arg(long, default_value_t = DEFAULT_WINDOW_KIB, value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub window_kib: u64,
    /// The relay's ring size in MiB (the relay's default).
    #[arg(long, default_value_t = 256)]
    pub ring_mib: u64,
    /// Do not pin the server and the load generator to different CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Where the relay's upstream (the emulator standing in for Kinesis) runs: on the
    /// server's core with the relay (`server`), so the load generator's core does the same
    /// work for every system (a publisher and the subscribers), or on the load generator's
    /// core (`load`, the placement of the figures before 2026-12-02).
    #[arg(long, value_enum, default_value_t = UpstreamOn::Server)]
    pub upstream_on: UpstreamOn,
    /// Instead of the matrix: a soak run of connection churn at the relay's limits (see
    /// `soak.rs`); prints RSS and open files before and after.
    #[arg(long)]
    pub soak: bool,
    /// Instead of the matrix: catch-up (see `catchup/`): one shard read back from the
    /// emulator with and without its GetRecords limits, and 100 subscribers catching up at
    /// once beside live subscribers. With --quick, fewer records (a smoke test).
    #[arg(long, conflicts_with = "soak")]
    pub catch_up: bool,
    /// Connect-subscribe-drop cycles of the soak run (default 36,000: ten a second for an
    /// hour).
    #[arg(long, default_value_t = 36_000)]
    pub soak_cycles: usize,
    /// Where results.md, results.csv, rounds.csv and results.png go (default: the committed
    /// bench/results for a full run; a temporary directory for --quick and for partial
    /// matrices, so that only a deliberate full run changes the committed results).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Which core the relay's upstream shares (ADR 0014).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamOn {
    /// The load generator's core.
    Load,
    /// The server's core.
    Server,
}

/// Server processes the harness starts by re-executing itself.
#[derive(Debug, Subcommand)]
pub enum Serve {
    /// The emulator (the relay's upstream); prints `ENDPOINT <url>`.
    ServeEmulator,
    /// The relay; prints `LISTEN <addr>` once it reads every shard.
    ServeRelay {
        /// The emulator's endpoint.
        #[arg(long)]
        endpoint_url: String,
        /// Ring bytes.
        #[arg(long)]
        ring_bytes: u64,
        /// The relay's --max-connections.
        #[arg(long, default_value_t = 16_384)]
        max_connections: usize,
        /// The relay's --connection-setup-timeout, milliseconds.
        #[arg(long, default_value_t = 10_000)]
        setup_timeout_ms: u64,
        /// The relay's --coalesce-writes.
        #[arg(long, default_value = "on")]
        coalesce_writes: kinesis_relay::config::Switch,
        /// Start every shard at the newest record (older ones are caught up).
        #[arg(long)]
        from_latest: bool,
        /// Lift catch-up's GetRecords budget (for an emulator without limits).
        #[arg(long)]
        unbudgeted_catch_up: bool,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(serve) = cli.serve {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(async {
            match serve {
                Serve::ServeEmulator => serve::emulator().await,
                Serve::ServeRelay {
                    endpoint_url,
                    ring_bytes,
                    max_connections,
                    setup_timeout_ms,
                    coalesce_writes,
                    from_latest,
                    unbudgeted_catch_up,
                } => {
                    let limits = serve::Limits {
                        max_connections,
                        setup_timeout: Duration::from_millis(setup_timeout_ms),
                        coalesce_writes: coalesce_writes == kinesis_relay::config::Switch::On,
                    };
                    let reading = serve::Reading {
                        from_latest,
                        unbudgeted_catch_up,
                    };
                    serve::relay(&endpoint_url, ring_bytes, limits, reading).await
                }
            }
        });
    }
    if cli.soak {
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(soak::run(cli.soak_cycles));
    }
    if cli.catch_up {
        let placement = place(cli.no_pin, cli.upstream_on)?;
        let machine = report::Machine::describe(&placement, 0.0);
        let machine = format!(
            "{} x {}, {:.1} GiB, Linux {}; {}",
            machine.cpus, machine.cpu, machine.mem_gib, machine.kernel, machine.placement
        );
        eprintln!("{machine}");
        let runtime = tokio::runtime::Runtime::new()?;
        let sizes = catchup::Sizes::new(cli.quick);
        return runtime.block_on(catchup::run(sizes, &placement, &machine));
    }
    bench(cli)
}

fn bench(cli: Cli) -> anyhow::Result<()> {
    let pick = |given: &[usize], quick: &[usize], full: &[usize]| -> Vec<usize> {
        match (given.is_empty(), cli.quick) {
            (false, _) => given.to_vec(),
            (true, true) => quick.to_vec(),
            (true, false) => full.to_vec(),
        }
    };
    let payloads = pick(&cli.payloads, &[1024], &[100, 1024, 10240]);
    let subscribers = pick(&cli.subscribers, &[1, 10], &[1, 100, 1000]);
    let phase =
        Duration::from_secs_f64(cli.phase_secs.unwrap_or(if cli.quick { 1.0 } else { 3.0 }));
    let rounds = cli
        .rounds
        .map_or(if cli.quick { 1 } else { 3 }, |n| n as usize);
    let max_steal_pct = f64::from(cli.max_steal_pct.unwrap_or(if cli.quick {
        100
    } else {
        DEFAULT_MAX_STEAL_PCT
    }));
    let full_run = !cli.quick
        && cli.subscriber_compression == SubscriberCompression::None
        && !cli.json_payloads
        && cli.payloads.is_empty()
        && cli.subscribers.is_empty()
        && cli.systems.len() == 4
        && cli.phase_secs.is_none()
        && cli.rounds.is_none()
        && cli.max_steal_pct.is_none()
        && cli.window_kib == DEFAULT_WINDOW_KIB
        && cli.upstream_on == UpstreamOn::Server;
    let out = cli.out.clone().unwrap_or_else(|| {
        if full_run {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"))
        } else {
            std::env::temp_dir().join("kinesis-relay-bench")
        }
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // The ceiling first, with both CPUs free.
    let loopback = loopback::measure(Duration::from_millis(1500))?;
    eprintln!("loopback TCP ceiling: {:.0} MB/s", loopback / 1e6);

    let placement = place(cli.no_pin, cli.upstream_on)?;
    let machine = report::Machine::describe(&placement, loopback);
    eprintln!("{}", machine.summary());

    let runtime = tokio::runtime::Runtime::new()?;
    let mut results = Vec::new();
    // Every round as it ran (rounds.csv), beside the medians the report keeps.
    let mut every_round = Vec::new();
    for &payload in &payloads {
        for &n in &subscribers {
            let mut cell_rounds = vec![Vec::new(); cli.systems.len()];
            for round in 0..rounds {
                for at in rounds::order(cli.systems.len(), round) {
                    let spec = CellSpec {
                        system: cli.systems[at],
                        payload,
                        subscribers: n,
                        phase,
                        ring_bytes: cli.ring_mib << 20,
                        accept: cli.subscriber_compression,
                        json: cli.json_payloads,
                        window_bytes: (cli.window_kib as usize) << 10,
                    };
                    let label = format!("round {}/{rounds}", round + 1);
                    let attempts = run_round(&runtime, &spec, &placement, &label, max_steal_pct);
                    if let Some(result) = rounds::keep(attempts) {
                        every_round.push((round + 1, result.clone()));
                        cell_rounds[at].push(result);
                    }
                }
            }
            results.extend(cell_rounds.into_iter().filter_map(rounds::median));
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(2));

    let csv = out.join("results.csv");
    let md = out.join("results.md");
    let png = out.join("results.png");
    std::fs::write(&csv, report::csv(&results, &machine))?;
    std::fs::write(
        out.join("rounds.csv"),
        report::rounds_csv(&every_round, &machine),
    )?;
    std::fs::write(
        &md,
        report::markdown(&results, &machine, rounds, max_steal_pct),
    )?;
    if let Err(err) = plot::draw(&results, &png) {
        eprintln!("plot not drawn: {err:#}");
    }
    println!(
        "{}",
        report::markdown(&results, &machine, rounds, max_steal_pct)
    );
    eprintln!(
        "wrote {}, {}, {} and rounds.csv",
        md.display(),
        csv.display(),
        png.display()
    );
    Ok(())
}

/// One round of a cell: measured, and measured again while it ran clean but more than
/// `max_steal_pct` of the machine was stolen (at most `rounds::MAX_RERUNS` times); every
/// attempt, for `rounds::keep` to choose from. Each prints its line under `label`.
fn run_round(
    runtime: &tokio::runtime::Runtime,
    spec: &CellSpec,
    placement: &Placement,
    label: &str,
    max_steal_pct: f64,
) -> Vec<cell::CellResult> {
    let mut attempts = Vec::new();
    loop {
        let result = runtime.block_on(cell::run(spec, placement));
        let again =
            attempts.len() < rounds::MAX_RERUNS && rounds::run_again(&result, max_steal_pct);
        let note = if again {
            " | more than --max-steal-pct stolen: run again"
        } else {
            ""
        };
        eprintln!("{label} {}{note}", report::line(&result));
        attempts.push(result);
        // Let sockets of the previous server close before the next starts.
        std::thread::sleep(Duration::from_millis(300));
        if !again {
            return attempts;
        }
    }
}

/// Where the server and the load side run: the server on the last CPU, everything else
/// (this process included) on the others, unless `no_pin` or there is one CPU; the relay's
/// upstream where `upstream_on` says.
fn place(no_pin: bool, upstream_on: UpstreamOn) -> anyhow::Result<Placement> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placement = placement(if no_pin { 1 } else { cpus }, upstream_on);
    // Pin this process before the runtime starts its threads.
    if let Some(client) = &placement.client_cpus {
        pin_self(client)?;
    }
    Ok(placement)
}

/// The placement on `cpus` CPUs: the last for the server, the others for the publisher and
/// the subscribers, the relay's upstream where `upstream_on` says; nothing pinned on one.
fn placement(cpus: usize, upstream_on: UpstreamOn) -> Placement {
    if cpus < 2 {
        return Placement {
            server_cpus: None,
            client_cpus: None,
            upstream_cpus: None,
        };
    }
    let client = if cpus == 2 {
        "0".to_owned()
    } else {
        format!("0-{}", cpus - 2)
    };
    let server = (cpus - 1).to_string();
    Placement {
        upstream_cpus: Some(match upstream_on {
            UpstreamOn::Load => client.clone(),
            UpstreamOn::Server => server.clone(),
        }),
        server_cpus: Some(server),
        client_cpus: Some(client),
    }
}

/// Pins this process (and the threads it starts later) to `cpus` with taskset.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    // taskset lists the process's threads, then pins each; a thread that ends in between
    // (the loopback measurement's, just joined) fails the whole call with "No such
    // process". Listing again is enough: a few tries, not a loop.
    let mut tries = 0;
    loop {
        tries += 1;
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running taskset (util-linux)")?;
        if status.success() {
            return Ok(());
        }
        anyhow::ensure!(tries < 5, "taskset failed {tries} times, last: {status}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_shares_the_core_it_is_placed_on() {
        let on_server = placement(2, UpstreamOn::Server);
        assert_eq!(on_server.server_cpus.as_deref(), Some("1"));
        assert_eq!(on_server.client_cpus.as_deref(), Some("0"));
        assert_eq!(on_server.upstream_cpus.as_deref(), Some("1"));
        let on_load = placement(4, UpstreamOn::Load);
        assert_eq!(on_load.server_cpus.as_deref(), Some("3"));
        assert_eq!(on_load.upstream_cpus.as_deref(), Some("0-2"));
        assert!(placement(1, UpstreamOn::Server).upstream_cpus.is_none());
    }

    #[test]
    fn the_upstream_runs_on_the_server_core_unless_told() {
        let default = Cli::try_parse_from(["kinesis-relay-bench"]).expect("no flags parse");
        assert_eq!(default.upstream_on, UpstreamOn::Server);
        let load = Cli::try_parse_from(["kinesis-relay-bench", "--upstream-on", "load"])
            .expect("--upstream-on load parses");
        assert_eq!(load.upstream_on, UpstreamOn::Load);
        assert!(Cli::try_parse_from(["kinesis-relay-bench", "--upstream-on", "moon"]).is_err());
    }
}
