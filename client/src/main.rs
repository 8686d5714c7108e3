//! The `kinesis-relay-client` binary: parses flags, runs the library, reports the outcome.

use std::{io::Write, time::Duration};

use clap::Parser;
use kinesis_relay_client::{cli::Cli, exit_code::ExitCode};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    run(cli).into()
}

fn run(cli: Cli) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let outcome = runtime.block_on(kinesis_relay_client::run(cli));
            // A write to a stalled stdout may still be pending on a blocking thread: do not
            // wait for it.
            runtime.shutdown_timeout(Duration::from_millis(200));
            outcome
        });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "kinesis-relay-client: error: {err:#}");
            ExitCode::of_error(&err)
        }
    }
}
