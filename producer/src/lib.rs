//! kinesis-producer: writes records to an Amazon Kinesis data stream with PutRecords,
//! batched, kept under each shard's write limits, with only the failed entries retried and
//! nothing lost silently.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive; the doc comments are the help text).
//! - [`input`]: standard input, files and the generator, cut into [`record::Record`]s.
//! - [`partition_key`]: the `--partition-key` template and key validation.
//! - [`shard_map`]: ListShards hash key ranges; which shard a key lands on.
//! - [`rate_limit`]: per-shard token buckets (records/s and bytes/s).
//! - [`aggregator`]: KPL aggregation per predicted shard (`--aggregate`).
//! - [`batcher`]: one PutRecords request being filled (500 records, 5 MiB, order rules).
//! - [`sender`]: sends a request and sorts its entries into written, retry, failed.
//! - [`pipeline`]: the dispatcher task that owns the lanes and drives all of the above.
//! - [`failed_output`]: the `--failed-output` JSON lines file.
//! - [`summary`]: counters, the progress line, the final summary.
//! - [`error`], [`exit_code`]: fatal errors, how AWS errors map onto them, exit codes.

pub mod aggregator;
pub mod batcher;
pub mod cli;
pub mod error;
pub mod exit_code;
pub mod failed_output;
pub mod input;
pub mod partition_key;
pub mod pipeline;
pub mod rate_limit;
pub mod record;
pub mod sender;
pub mod shard_map;
pub mod summary;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use clap::Parser;
use tokio::sync::{mpsc, watch};

use crate::cli::Args;
use crate::error::ProducerError;
use crate::exit_code::ExitCode;
use crate::failed_output::FailedOutput;
use crate::input::{RecordMaker, Source};
use crate::partition_key::KeyTemplate;
use crate::pipeline::{Config, Pipeline};
use crate::shard_map::ShardMap;
use crate::summary::Stats;

/// Records read ahead of the dispatcher.
const INPUT_QUEUE: usize = 4096;

/// Parses the command line and runs the producer on a new runtime.
pub fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Err(message) = args.validate() {
        eprintln!("kinesis-producer: error: {message}");
        return Ok(ExitCode::Usage);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("kinesis_producer=warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(produce(args))
}

/// Builds the Kinesis client the way the command line says.
pub async fn client(args: &Args) -> Result<(aws_sdk_kinesis::Client, String), ProducerError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk_config = loader.load().await;
    let region = sdk_config
        .region()
        .ok_or(ProducerError::NoRegion)?
        .to_string();
    let config = aws_sdk_kinesis::config::Builder::from(&sdk_config)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        // PutRecords failures are retried by the pipeline, entry by entry, with its own
        // backoff and counters; SDK retries would hide them and double the waits.
        .retry_config(RetryConfig::disabled())
        .build();
    Ok((aws_sdk_kinesis::Client::from_conf(config), region))
}

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    /// How the process should exit.
    pub exit_code: ExitCode,
    /// The final figures (None when the run stopped before sending anything).
    pub summary: Option<summary::Summary>,
}

/// Runs the producer with parsed arguments, with a client built from them.
pub async fn produce(args: Args) -> anyhow::Result<ExitCode> {
    let (client, region) = match client(&args).await {
        Ok(pair) => pair,
        Err(err) => return Ok(fatal(&err)),
    };
    Ok(produce_with(args, client, region).await?.exit_code)
}

/// Runs the producer with a ready client (tests and benchmarks bring their own).
pub async fn produce_with(
    args: Args,
    client: aws_sdk_kinesis::Client,
    region: String,
) -> anyhow::Result<Report> {
    let start = Instant::now();
    let stop_early = |exit_code| {
        Ok(Report {
            exit_code,
            summary: None,
        })
    };
    let template = match &args.partition_key {
        Some(text) => match KeyTemplate::parse(text) {
            Ok(template) => template,
            Err(err) => {
                eprintln!("kinesis-producer: error: --partition-key: {err}");
                return stop_early(ExitCode::Usage);
            }
        },
        None => KeyTemplate::random(),
    };
    let map = match list_shards_with_retry(&client, &args.stream, &region).await {
        Ok(map) => map,
        Err(ProducerError::AccessDenied(message)) => {
            tracing::warn!(%message, "ListShards denied: sending without per-shard rate limits");
            ShardMap::default()
        }
        Err(err) => return stop_early(fatal(&err)),
    };
    let failed = FailedOutput::open(args.failed_output.as_deref())?;
    let stats = Arc::new(Stats::default());
    let config = Config {
        stream: args.stream.clone(),
        region,
        linger: args.linger,
        concurrency: args.concurrency as usize,
        max_attempts: args.max_attempts,
        record_ttl: args.record_ttl,
        aggregate_max_bytes: args.aggregate.then_some(args.aggregate_max_bytes as usize),
        ordered: args.ordered,
        shard_records_per_sec: args.shard_records_per_sec,
        shard_bytes_per_sec: args.shard_bytes_per_sec,
        shard_refresh: args.shard_refresh,
        max_buffered_records: args.max_buffered_records,
    };
    let source = if args.generate {
        Source::Generate {
            rate: args.rate,
            count: args.count,
            duration: args.duration,
            size: args.size,
        }
    } else {
        Source::Read {
            path: args.input.clone(),
            format: args.format,
            key_field: args.key_field.clone(),
        }
    };
    let maker = RecordMaker {
        template,
        explicit_hash_key: args.explicit_hash_key,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupted = Arc::new(AtomicBool::new(false));
    let ctrl_c = tokio::spawn(watch_ctrl_c(stop_tx.clone(), interrupted.clone()));
    let (items_tx, items_rx) = mpsc::channel(INPUT_QUEUE);
    let reader = tokio::spawn(input::read(source, maker, items_tx, stop_rx.clone()));
    let (progress_stop, progress_rx) = watch::channel(false);
    let show_progress = !args.no_progress && (args.progress || std::io::stderr().is_terminal());
    let progress =
        show_progress.then(|| tokio::spawn(summary::progress(stats.clone(), start, progress_rx)));

    let finished = Pipeline::new(client, config, map, stats.clone(), failed)
        .run(items_rx)
        .await?;
    let _ = progress_stop.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    // Aborted, then awaited: no task of the run outlives it.
    ctrl_c.abort();
    let _ = ctrl_c.await;
    let read_result = if finished.fatal.is_some() {
        // The reader may be blocked on a full queue that nobody drains any more.
        reader.abort();
        let _ = reader.await;
        Ok(0)
    } else {
        reader.await.context("input task")?
    };

    let interrupted = interrupted.load(Ordering::SeqCst);
    let summary = stats.summary(start.elapsed(), finished.shards, interrupted);
    if !args.quiet {
        eprint!("{}", summary.render());
    }
    if args.summary_json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    let exit_code = if let Some(err) = &finished.fatal {
        fatal(err)
    } else if let Err(err) = read_result {
        eprintln!("kinesis-producer: error: {err:#}");
        ExitCode::Failure
    } else if summary.records_failed > 0 {
        if args.failed_output.is_none() {
            eprintln!(
                "kinesis-producer: {} records failed; pass --failed-output FILE to keep them",
                summary.records_failed
            );
        }
        ExitCode::RecordsFailed
    } else if interrupted {
        ExitCode::Interrupted
    } else if summary.records_rejected > 0 {
        ExitCode::RecordsRejected
    } else {
        ExitCode::Success
    };
    Ok(Report {
        exit_code,
        summary: Some(summary),
    })
}

/// ListShards, with a few quick retries for throttling (ListShards allows 1000 calls/s per
/// account, shared with every other producer and consumer).
async fn list_shards_with_retry(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    region: &str,
) -> Result<ShardMap, ProducerError> {
    let mut attempt = 1;
    loop {
        match ShardMap::list(client, stream, region).await {
            Err(ProducerError::Aws { .. } | ProducerError::EndpointUnreachable(_))
                if attempt < 3 =>
            {
                tokio::time::sleep(pipeline::backoff(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Prints the one line for a fatal error and returns its exit code.
fn fatal(err: &ProducerError) -> ExitCode {
    eprintln!("kinesis-producer: error: {err}");
    err.exit_code()
}

/// First Ctrl-C: stop reading and flush. Second: leave at once.
async fn watch_ctrl_c(stop: watch::Sender<bool>, interrupted: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    interrupted.store(true, Ordering::SeqCst);
    let _ = stop.send(true);
    eprintln!(
        "\nkinesis-producer: interrupted: flushing buffered records (Ctrl-C again to quit now)"
    );
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("kinesis-producer: interrupted again: buffered records abandoned");
        std::process::exit(ExitCode::Interrupted.code().into());
    }
}
