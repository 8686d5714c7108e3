//! The command line: every flag, its help text and its environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kinesis_relay_api::units::parse_duration;

use crate::exit_code;

/// Writes records to an Amazon Kinesis data stream with PutRecords: batched, kept under each
/// shard's write limits, failed entries retried, nothing lost silently.
///
/// Records come from standard input, from --input FILE, or from --generate. Records that
/// still fail after all retries go to --failed-output (JSON lines), and the exit code says so.
///
/// Credentials and region come from the usual AWS chain (environment, profile, SSO, instance
/// role). AWS_ENDPOINT_URL_KINESIS or AWS_ENDPOINT_URL set the endpoint, as --endpoint-url.
#[derive(Debug, Clone, Parser)]
#[command(name = "kinesis-producer", version, after_help = exit_code::HELP)]
pub struct Args {
    /// Name of the Kinesis data stream to write to.
    #[arg(long, env = "KINESIS_STREAM")]
    pub stream: String,

    /// Kinesis endpoint URL, e.g. http://127.0.0.1:4567 for an emulator [default: the
    /// region's endpoint; AWS_ENDPOINT_URL_KINESIS is honoured too].
    #[arg(long, env = "KINESIS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region [default: AWS_REGION, AWS_DEFAULT_REGION or the profile's region].
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile to take credentials and region from [default: AWS_PROFILE or "default"].
    #[arg(long)]
    pub profile: Option<String>,

    /// Read records from this file instead of standard input ("-" is standard input).
    #[arg(long, short = 'i', conflicts_with = "generate")]
    pub input: Option<PathBuf>,

    /// How the input is cut into records.
    #[arg(long, value_enum, default_value_t = Format::Lines, env = "KINESIS_PRODUCER_FORMAT")]
    pub format: Format,

    /// JSON pointer (RFC 6901, e.g. /user/id) of the partition key inside each record
    /// (--format json). A record without it is rejected.
    #[arg(long)]
    pub key_field: Option<String>,

    /// Partition key template: a literal, or with {uuid} (random per record), {seq} (record
    /// number from 0), {seq%N} (record number modulo N) and {line_hash} (hex MD5 of the
    /// record). Default: a random key per record, which spreads records over all shards.
    #[arg(long, short = 'k', env = "KINESIS_PRODUCER_PARTITION_KEY")]
    pub partition_key: Option<String>,

    /// Explicit hash key (decimal 0..2^128-1) sent with every record: overrides the hash of
    /// the partition key to pick the shard.
    #[arg(long, value_parser = parse_hash_key)]
    pub explicit_hash_key: Option<u128>,

    /// Generate records instead of reading input: JSON objects
    /// {"seq":N,"ts_us":MICROS_SINCE_EPOCH,"pad":"..."} padded to --size bytes, so consumers
    /// can check order and measure latency.
    #[arg(long)]
    pub generate: bool,

    /// With --generate: records per second over all shards, as N or N/s [default: as fast as
    /// the stream takes them].
    #[arg(long, value_parser = parse_rate, requires = "generate")]
    pub rate: Option<f64>,

    /// With --generate: stop after this many records.
    #[arg(long, requires = "generate")]
    pub count: Option<u64>,

    /// With --generate: stop after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_duration, requires = "generate")]
    pub duration: Option<Duration>,

    /// With --generate: size of each record in bytes (at least the JSON skeleton, ~40).
    #[arg(long, default_value_t = 100, requires = "generate")]
    pub size: usize,

    /// How long a record may wait for more to fill its batch (or aggregate) before it is
    /// sent. 0 sends as soon as a request slot is free.
    #[arg(long, value_parser = parse_duration, default_value = "100ms", env = "KINESIS_PRODUCER_LINGER")]
    pub linger: Duration,

    /// PutRecords requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024), env = "KINESIS_PRODUCER_CONCURRENCY")]
    pub concurrency: u32,

    /// Attempts per record (the first send included) before it counts as failed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), env = "KINESIS_PRODUCER_MAX_ATTEMPTS")]
    pub max_attempts: u32,

    /// Give up retrying a record this long after its first attempt.
    #[arg(long, value_parser = parse_duration, default_value = "60s", env = "KINESIS_PRODUCER_RECORD_TTL")]
    pub record_ttl: Duration,

    /// Write records that finally failed (or were rejected) to this file, one JSON object a
    /// line: {"partition_key","explicit_hash_key","data" (base64),"error","message"}. The
    /// file can be fed back with --format json after extracting "data".
    #[arg(long, env = "KINESIS_PRODUCER_FAILED_OUTPUT")]
    pub failed_output: Option<PathBuf>,

    /// Pack many records into each Kinesis record (KPL aggregation format, readable by the
    /// KCL and the relay): much higher record rates per shard.
    #[arg(long, env = "KINESIS_PRODUCER_AGGREGATE")]
    pub aggregate: bool,

    /// Maximum size of one aggregate in bytes.
    #[arg(long, default_value_t = 51_200, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub aggregate_max_bytes: u32,

    /// Keep input order per partition key: one request in flight per shard, a key at most
    /// once per request (with --aggregate: one aggregate per shard per request), retries go
    /// first. Slower when many records share a key; combine with --aggregate then.
    #[arg(long, env = "KINESIS_PRODUCER_ORDERED")]
    pub ordered: bool,

    /// Records per second sent to one shard (Kinesis allows 1000); 0 disables.
    #[arg(long, default_value_t = 1000.0)]
    pub shard_records_per_sec: f64,

    /// Bytes (data and partition key) per second sent to one shard (Kinesis allows
    /// 1 MiB/s); 0 disables.
    #[arg(long, default_value_t = 1_048_576.0)]
    pub shard_bytes_per_sec: f64,

    /// Re-read the shard map this often (it is also re-read when Kinesis puts a record on a
    /// shard we did not predict, i.e. after resharding).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub shard_refresh: Duration,

    /// Records held in memory at most (read ahead, queued, in flight).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_buffered_records: u64,

    /// Show the progress line even when standard error is not a terminal.
    #[arg(long, conflicts_with = "no_progress")]
    pub progress: bool,

    /// Never show the progress line.
    #[arg(long)]
    pub no_progress: bool,

    /// Also print the final summary as one JSON object on standard output.
    #[arg(long)]
    pub summary_json: bool,

    /// Print no summary on standard error (errors are still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl Args {
    /// Checks what clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_field.is_some() && self.format != Format::Json {
            return Err("--key-field needs --format json".into());
        }
        if self.key_field.is_some() && self.partition_key.is_some() {
            return Err("--key-field and --partition-key exclude each other".into());
        }
        if let Some(pointer) = &self.key_field
            && !pointer.is_empty()
            && !pointer.starts_with('/')
        {
            return Err(format!(
                "--key-field '{pointer}' is not a JSON pointer (starts with /)"
            ));
        }
        if self.generate && self.count.is_none() && self.duration.is_none() {
            return Err("--generate needs --count or --duration".into());
        }
        if self.shard_records_per_sec < 0.0 || self.shard_bytes_per_sec < 0.0 {
            return Err("shard rates cannot be negative".into());
        }
        Ok(())
    }
}

/// How input bytes become records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One record per line (the newline is not sent; empty lines are skipped).
    Lines,
    /// One JSON value per line, sent as compact JSON; see --key-field.
    Json,
    /// The whole input is one record.
    Raw,
}

/// Parses `1000` or `1000/s`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("'{text}' is not a positive rate (e.g. 500/s)")),
    }
}

/// Parses a decimal explicit hash key in the 128-bit range.
pub fn parse_hash_key(text: &str) -> Result<u128, String> {
    text.trim()
        .parse::<u128>()
        .map_err(|_| format!("'{text}' is not a decimal number between 0 and 2^128-1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500/s").unwrap(), 500.0);
        assert_eq!(parse_rate("20").unwrap(), 20.0);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1/s").is_err());
    }

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("0").unwrap(), 0);
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455").unwrap(),
            u128::MAX
        );
        assert!(parse_hash_key("340282366920938463463374607431768211456").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn validation() {
        let args = Args::try_parse_from(["p", "--stream", "s", "--key-field", "/id"]).unwrap();
        assert!(args.validate().is_err());
        let args = Args::try_parse_from([
            "p",
            "--stream",
            "s",
            "--format",
            "json",
            "--key-field",
            "/id",
        ])
        .unwrap();
        assert!(args.validate().is_ok());
        let args = Args::try_parse_from(["p", "--stream", "s", "--generate"]).unwrap();
        assert!(args.validate().is_err());
    }
}
