//! kinesis-relay-client: subscribes to a kinesis-relay and prints records as they arrive,
//! resuming after reconnects without losing or repeating a record; also lists and describes
//! what a relay serves, and archives records to rotated files, exactly once, in a directory
//! or an object store.
//!
//! # Layout
//! - [`cli`]: command-line flags (the doc comments are the `--help` text).
//! - [`connect`]: URL, TLS, bearer token and deadlines of a connection.
//! - [`resume`]: a subscription that reconnects with backoff and resumes from its cursor:
//!   the API crate's resuming subscriber (`kinesis_relay_api::subscriber`) with this
//!   client's connection, failure classes and stderr reports.
//! - [`subscribe`]: the `subscribe` command: print, stop conditions, checkpoint.
//! - [`output`]: the record formats (`text`, `json`, `raw`, `base64`) and stderr notices.
//! - [`checkpoint`]: the cursor file, written atomically.
//! - [`archive`]: the `archive` command: rotated NDJSON or Parquet files, each committed
//!   with the cursor that covers it, in a directory or S3, GCS, Azure (its own `# Layout`).
//! - [`describe`]: the `streams` and `describe` commands.
//! - [`error`], [`exit_code`]: failure classes and their exit codes.
//! - [`shutdown`]: signals. Backoff, flag units and the status cursor come from the API
//!   crate (`kinesis_relay_api::{backoff, units, resume}`).
//!
//! [`run`] dispatches a parsed command line; `main.rs` only parses, runs and reports.

pub mod archive;
pub mod checkpoint;
pub mod cli;
pub mod connect;
pub mod describe;
pub mod error;
pub mod exit_code;
pub mod output;
pub mod resume;
pub mod shutdown;
pub mod subscribe;

use anyhow::Context;

use crate::{
    cli::{Cli, Command},
    connect::Connector,
    exit_code::ExitCode,
    shutdown::Signals,
};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let connector = Connector::new(&cli.connection)?;
    match cli.command {
        Command::Subscribe(args) => {
            let signals = Signals::install().context("installing signal handlers")?;
            subscribe::run(connector, args, signals).await
        }
        Command::Archive(args) => {
            let signals = Signals::install().context("installing signal handlers")?;
            archive::run(connector, args, signals).await
        }
        Command::Streams(args) => describe::streams(connector, args).await,
        Command::Describe(args) => describe::describe(connector, args).await,
    }
}
