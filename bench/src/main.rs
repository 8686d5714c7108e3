//! `kinesis-relay-bench`: the relay side by side with Redis pub/sub and NATS core, in one
//! run, on this machine.
//!
//! # Layout
//! - [`cli`]: flags and the matrix they select.
//! - [`payload`]: the benchmark record (sequence number, send time, padding) and the
//!   per-subscriber gap/repeat/latency bookkeeping.
//! - [`systems`]: starting each system under test, its publisher and its subscribers.
//! - [`cell`]: one cell of the matrix: saturation, then latency at half of it, CPU, memory.
//! - [`rounds`]: each cell's systems in turns, over several rounds, and the median kept.
//! - [`procstat`]: CPU time and RSS of a process from `/proc`.
//! - [`loopback`]: the plain-socket loopback TCP ceiling.
//! - [`report`]: Markdown and CSV; [`plot`]: the PNG.
//! - [`soak`]: connection churn at the relay's limits, RSS and open files before and after.
//! - [`catchup`]: reading a shard back from Kinesis (the emulator) for subscribers older
//!   than the relay's ring, and 100 of them sharing one reader beside live subscribers.
//! - [`serve`]: the `serve-emulator` / `serve-relay` subcommands the harness re-executes
//!   itself as, so the relay runs in its own process.

mod catchup;
mod cell;
mod cli;
mod loopback;
mod payload;
mod plot;
mod procstat;
mod report;
mod rounds;
mod serve;
mod soak;
mod systems;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kinesis-relay-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
