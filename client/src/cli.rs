//! Command-line flags. The doc comments are the `--help` text.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use kinesis_relay_api::units::{parse_duration, parse_size};

use crate::exit_code;

/// Subscribes to a kinesis-relay and prints, archives or describes what it serves.
#[derive(Debug, Parser)]
#[command(name = "kinesis-relay-client", version, after_help = exit_code::HELP)]
pub struct Cli {
    /// How to reach the relay.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// More diagnostics on stderr (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print records as they arrive, resuming after reconnects.
    Subscribe(SubscribeArgs),
    /// List the streams the relay serves.
    Streams(ListArgs),
    /// Show shards, lag, subscribers and the replayable window of streams.
    Describe(DescribeArgs),
    /// Write records to rotated newline-delimited JSON files, exactly once, in a directory or
    /// an object store (S3, GCS, Azure).
    Archive(ArchiveArgs),
}

/// Flags shared by every command.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// Relay URL: http:// for plain text, https:// for TLS.
    #[arg(
        long,
        global = true,
        env = "KINESIS_RELAY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub relay: String,
    /// PEM file of the CA that signed the relay's certificate (default: the system roots).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for relays that require mutual TLS (with --client-key).
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Bearer token sent in the `authorization` header, when given.
    #[arg(
        long,
        global = true,
        env = "KINESIS_RELAY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// How long to wait for a connection or a unary answer.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

/// Which records of which stream, from where.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Selection")]
pub struct SelectionArgs {
    /// Stream to read (may be left out when the relay serves exactly one).
    #[arg(long, env = "KINESIS_RELAY_STREAM")]
    pub stream: Option<String>,
    /// Read only this shard (repeatable; default every shard, children included).
    #[arg(long = "shard", value_name = "ID")]
    pub shards: Vec<String>,
    /// Only records with this partition key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Only records whose partition key starts with this (repeatable).
    #[arg(long = "key-prefix", value_name = "PREFIX")]
    pub key_prefixes: Vec<String>,
    /// What the relay does when this client reads too slowly: disconnect (the client then
    /// resumes from its cursor while the relay still holds it) or skip (a gap is reported
    /// on stderr). Default: the relay's policy.
    #[arg(long, value_enum)]
    pub on_lag: Option<OnLag>,
    /// How long to keep reconnecting while the relay is unreachable before giving up
    /// (exit code 3). 0 gives up at the first failure.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub retry_timeout: Duration,
    /// A subscription silent for this long (the relay sends heartbeats every few seconds)
    /// is considered dead and reopened.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Warn on stderr when the relay is further than this behind the tip of a shard.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub lag_warning: Duration,
}

/// `subscribe`.
#[derive(Debug, Clone, Args)]
pub struct SubscribeArgs {
    /// Where to start: latest, earliest, cursor:CURSOR or timestamp:RFC3339. A --checkpoint
    /// file that exists takes precedence.
    #[arg(long, value_name = "POSITION", default_value = "latest", value_parser = StartFrom::parse)]
    pub from: StartFrom,
    /// How records are printed.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Stop after this many records (exit code 0).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this long (exit code 0), e.g. 30s or 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Store the cursor in FILE (atomically, every --checkpoint-interval and on exit) and
    /// resume from it when FILE exists.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Least time between two checkpoint writes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Which records.
    #[command(flatten)]
    pub selection: SelectionArgs,
}

/// `streams`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print JSON (one object per line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `describe`.
#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// Stream to describe (default: every stream the relay serves).
    #[arg(long, env = "KINESIS_RELAY_STREAM")]
    pub stream: Option<String>,
    /// Print JSON (one object per stream, one per line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `archive`.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// Where to write: a directory (created if missing; files NNNNNNNNNN-<stream>-<UTC
    /// time>.ndjson[.gz|.zst], each beside a .cursor file), or an object store URL:
    /// s3://BUCKET/PREFIX (S3 or an S3-compatible endpoint from AWS_ENDPOINT_URL_S3 or
    /// AWS_ENDPOINT_URL), gs://BUCKET/PREFIX, az://CONTAINER/PREFIX.
    #[arg(long = "to", visible_alias = "dir", value_name = "DIR|URL")]
    pub to: String,
    /// Where to start when the archive is empty: latest, earliest, cursor:CURSOR or
    /// timestamp:RFC3339. Otherwise it resumes after its last complete file.
    #[arg(long, value_name = "POSITION", default_value = "earliest", value_parser = StartFrom::parse)]
    pub from: StartFrom,
    /// Complete a file once it holds this much JSON (before compression).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub rotate_size: u64,
    /// Complete a file once it is this old.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub rotate_interval: Duration,
    /// Format of the files.
    #[arg(long, value_enum, default_value_t = ArchiveFormat::Ndjson)]
    pub format: ArchiveFormat,
    /// Compression of the files (of the pages of Parquet files: none or zstd).
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Same as --compression gzip.
    #[arg(long, conflicts_with = "compression")]
    pub gzip: bool,
    /// Object stores only: the key prefix of each file under the URL's prefix, from
    /// {stream}, {yyyy}, {MM}, {dd}, {HH} (UTC arrival time of the file's first record),
    /// {partition_key} and {json:field.path} (a field of the record's JSON data). Records
    /// with different partition values go to different files. Default:
    /// {yyyy}/{MM}/{dd}/{HH}/ (Firehose's layout).
    #[arg(long, value_name = "TEMPLATE")]
    pub prefix_template: Option<String>,
    /// Parquet only: the type of the data column: bytes (binary), or utf8 (text; records
    /// whose data is not UTF-8 go under errors/not-utf8/).
    #[arg(long, value_enum, default_value_t = ParquetData::Bytes)]
    pub parquet_data: ParquetData,
    /// Parquet only: a JSON file naming fields of the records' JSON data, which replace the
    /// data column: [{"name": "id", "type": "int64"}, ...] with types string, int64,
    /// float64, boolean, timestamp ("nullable": false to require one). Records that are not
    /// JSON or do not fit go under errors/.
    #[arg(long, value_name = "FILE")]
    pub parquet_schema: Option<PathBuf>,
    /// Parquet only: rows per row group; the writer holds one row group in memory per open
    /// file.
    #[arg(long, value_name = "N", default_value = "8192", value_parser = clap::value_parser!(u32).range(1..))]
    pub row_group_rows: u32,
    /// Object stores only: most files open at once (one per partition); a record for one
    /// more completes them all first. Each open file buffers up to 15 MiB.
    #[arg(long, value_name = "N", default_value = "16", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_open_files: u16,
    /// Object stores only: how long the archive's lock holds without renewal (renewed
    /// every third of it); another archiver may take it over once it has expired.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub lock_lease: Duration,
    /// Which records.
    #[command(flatten)]
    pub selection: SelectionArgs,
}

impl ArchiveArgs {
    /// `--compression`, or gzip for `--gzip`.
    pub fn compression(&self) -> Compression {
        if self.gzip {
            Compression::Gzip
        } else {
            self.compression
        }
    }
}

/// `archive --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// Newline-delimited JSON, one record per line (the `json` format of `subscribe`).
    Ndjson,
    /// Parquet (object stores only): stream, shard_id, sequence_number,
    /// sub_sequence_number, partition_key, explicit_hash_key, arrival_time, data (bytes).
    Parquet,
}

/// `--parquet-data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParquetData {
    /// A binary column: the bytes as written.
    Bytes,
    /// A UTF-8 string column.
    Utf8,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// Plain newline-delimited JSON (.ndjson).
    None,
    /// gzip (.ndjson.gz).
    Gzip,
    /// zstd (.ndjson.zst).
    Zstd,
}

/// `--on-lag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLag {
    /// End the subscription; the client resumes from its cursor.
    Disconnect,
    /// Skip what was missed and report the gap on stderr.
    Skip,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The data of each record as a line; invalid UTF-8 and control characters escaped as \xNN.
    Text,
    /// One JSON object per line: stream, shard, sequence numbers, partition key, arrival
    /// time, data (text when UTF-8, else base64, as data_encoding says).
    Json,
    /// The bytes of each record as they are, nothing added.
    Raw,
    /// The data of each record in base64, one per line.
    Base64,
}

/// `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The next record to arrive.
    Latest,
    /// The oldest record the relay holds.
    Earliest,
    /// Right after a cursor.
    Cursor(String),
    /// The first record that arrived at or after this instant.
    Timestamp(time::OffsetDateTime),
}

impl StartFrom {
    /// Parses `latest`, `earliest`, `cursor:C` or `timestamp:RFC3339`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "latest" => return Ok(Self::Latest),
            "earliest" => return Ok(Self::Earliest),
            _ => {}
        }
        if let Some(cursor) = text.strip_prefix("cursor:") {
            if cursor.trim().is_empty() {
                return Err("cursor: needs a cursor after the colon".to_owned());
            }
            return Ok(Self::Cursor(cursor.trim().to_owned()));
        }
        if let Some(at) = text.strip_prefix("timestamp:") {
            return time::OffsetDateTime::parse(
                at.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map(Self::Timestamp)
            .map_err(|err| {
                format!("{at:?} is not an RFC 3339 time like 2024-05-01T12:00:00Z ({err})")
            });
        }
        Err(format!(
            "{text:?}: use latest, earliest, cursor:CURSOR or timestamp:RFC3339"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_positions_parse() {
        assert_eq!(StartFrom::parse("latest"), Ok(StartFrom::Latest));
        assert_eq!(StartFrom::parse("earliest"), Ok(StartFrom::Earliest));
        assert_eq!(
            StartFrom::parse("cursor:abc"),
            Ok(StartFrom::Cursor("abc".into()))
        );
        assert!(matches!(
            StartFrom::parse("timestamp:2024-05-01T12:00:00Z"),
            Ok(StartFrom::Timestamp(_))
        ));
        assert!(StartFrom::parse("timestamp:yesterday").is_err());
        assert!(StartFrom::parse("cursor:").is_err());
        assert!(StartFrom::parse("oldest").is_err());
    }
}
