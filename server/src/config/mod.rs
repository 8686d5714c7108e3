//! Command-line flags (each also readable from an environment variable).
//!
//! # Layout
//! - `mod.rs`: the flags ([`Cli`]) and their value parsers.
//! - `settings.rs`: the settings of each part of the relay that the flags describe.
//! - `load.rs`: parsing, the `--config` file, checks clap cannot make, the logged summary.

mod load;
mod settings;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use kinesis_relay_api::units::{parse_duration, parse_size};

use crate::ingest::{InitialPosition, default_consumer_name};

/// Relays an Amazon Kinesis data stream to any number of gRPC subscribers through one
/// enhanced fan-out consumer. Subscribers need no AWS credentials.
///
/// First run: `kinesis-relay --embedded --demo-producer 10` starts an in-process emulator
/// with a stream `demo` and writes sample records to it.
#[derive(Debug, Clone, Parser)]
#[command(name = "kinesis-relay", version)]
pub struct Cli {
    /// TOML file holding any of these flags by their long name (`stream = ["orders"]`,
    /// `listen = "0.0.0.0:50051"`); flags and environment variables override it.
    #[arg(long, env = "KINESIS_RELAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Stream to relay (repeat for several; comma-separated in the environment variable).
    #[arg(long = "stream", env = "KINESIS_RELAY_STREAMS", value_delimiter = ',')]
    pub streams: Vec<String>,

    /// Enhanced fan-out consumer name. The default is stable per host, so a restarted relay
    /// reuses its consumer; give every relay replica its own name. `{hostname}` and `{pod}`
    /// (the POD_NAME variable, else the host name) are replaced.
    #[arg(long, env = "KINESIS_RELAY_CONSUMER_NAME", default_value_t = default_consumer_name())]
    pub consumer_name: String,

    /// Address of the gRPC listener.
    #[arg(long, env = "KINESIS_RELAY_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Kinesis endpoint, for emulators (AWS_ENDPOINT_URL_KINESIS and the rest of the
    /// standard AWS configuration chain also work).
    #[arg(long, env = "KINESIS_RELAY_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region (default: from the AWS configuration chain).
    #[arg(long, env = "KINESIS_RELAY_REGION")]
    pub region: Option<String>,

    /// Where shards with no checkpoint start: latest, trim-horizon or at-timestamp:RFC3339.
    #[arg(long, env = "KINESIS_RELAY_STARTING_POSITION", default_value = "latest", value_parser = parse_starting_position)]
    pub starting_position: InitialPosition,

    /// Directory for checkpoints; a restarted relay resumes after them.
    #[arg(long, env = "KINESIS_RELAY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Deregister the consumer on exit (it is kept by default, to be reused).
    #[arg(long, env = "KINESIS_RELAY_DEREGISTER_ON_EXIT")]
    pub deregister_on_exit: bool,

    /// Start the project's emulator in-process, create the streams (default: `demo`) and
    /// relay from it. For a first run and demos; nothing leaves the machine.
    #[arg(long, env = "KINESIS_RELAY_EMBEDDED")]
    pub embedded: bool,

    /// Shards of each stream the embedded emulator creates.
    #[arg(long, env = "KINESIS_RELAY_EMBEDDED_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub embedded_shards: u32,

    /// With --embedded: how long the emulator keeps records (default: --ring-max-age, what
    /// the relay can replay anyway), so a demo left running does not grow without end.
    #[arg(long, env = "KINESIS_RELAY_EMBEDDED_RETENTION", value_parser = parse_duration)]
    pub embedded_retention: Option<Duration>,

    /// With --embedded: write this many sample JSON records per second to each stream.
    #[arg(long, env = "KINESIS_RELAY_DEMO_PRODUCER", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub demo_producer: Option<u32>,

    /// Bytes the relay holds per stream for replay and slow subscribers (B, KiB, MiB, GiB).
    #[arg(long, env = "KINESIS_RELAY_RING_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub ring_max_bytes: usize,

    /// Age after which held records are dropped (ms, s, m, h).
    #[arg(long, env = "KINESIS_RELAY_RING_MAX_AGE", default_value = "15m", value_parser = parse_duration)]
    pub ring_max_age: Duration,

    /// What happens to a subscriber that falls behind, when its request does not say.
    #[arg(long, env = "KINESIS_RELAY_ON_LAG", default_value = "catch-up")]
    pub on_lag: OnLag,

    /// Catch-up readers (GetRecords, for positions older than the ring) running at once
    /// per stream; a subscriber finding none free gets UNAVAILABLE and retries. Each holds
    /// up to --catch-up-buffer plus one GetRecords response (at most 10 MiB). 0 turns
    /// catch-up off: positions older than the ring get OUT_OF_RANGE.
    #[arg(long, env = "KINESIS_RELAY_CATCH_UP_READERS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub catch_up_readers: u32,

    /// GetRecords calls per second per shard that catch-up may make (Kinesis allows 5 per
    /// shard for every polling reader of the stream together: lower it when others poll).
    #[arg(long, env = "KINESIS_RELAY_CATCH_UP_CALLS_PER_SHARD", default_value_t = 5.0, value_parser = parse_rate)]
    pub catch_up_calls_per_shard: f64,

    /// Bytes per second per shard that catch-up may read (Kinesis allows 2 MiB per shard
    /// for every polling reader together).
    #[arg(long, env = "KINESIS_RELAY_CATCH_UP_BYTES_PER_SHARD", default_value = "2MiB", value_parser = parse_bytes)]
    pub catch_up_bytes_per_shard: usize,

    /// Bytes a catch-up reader fetches ahead of its subscribers.
    #[arg(long, env = "KINESIS_RELAY_CATCH_UP_BUFFER", default_value = "4MiB", value_parser = parse_bytes)]
    pub catch_up_buffer: usize,

    /// How long a Subscribe on a stream that is still STARTING waits (with heartbeats)
    /// before it gets UNAVAILABLE.
    #[arg(long, env = "KINESIS_RELAY_STARTING_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub starting_wait: Duration,

    /// Idle time after which a subscriber gets a heartbeat.
    #[arg(long, env = "KINESIS_RELAY_HEARTBEAT_INTERVAL", default_value = "3s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// A subscription silent for longer than this is renewed (Kinesis sends an event at
    /// least every 5 s).
    #[arg(long, env = "KINESIS_RELAY_WATCHDOG_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub watchdog_timeout: Duration,

    /// How often shards are listed to find children of resharding.
    #[arg(long, env = "KINESIS_RELAY_LIST_SHARDS_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub list_shards_interval: Duration,

    /// How often checkpoints are written.
    #[arg(long, env = "KINESIS_RELAY_CHECKPOINT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,

    /// How long the consumer may take to become ACTIVE before the relay gives up.
    #[arg(long, env = "KINESIS_RELAY_CONSUMER_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub consumer_timeout: Duration,

    /// Interval of HTTP/2 keepalive pings to subscribers.
    #[arg(long, env = "KINESIS_RELAY_KEEPALIVE_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,

    /// How long a keepalive ping may go unanswered before the connection is closed.
    #[arg(long, env = "KINESIS_RELAY_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// Log format.
    #[arg(long, env = "KINESIS_RELAY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Admin listener for Prometheus `/metrics` and HTTP `/live` and `/ready` (off unless
    /// set; e.g. 127.0.0.1:9090).
    #[arg(long, env = "KINESIS_RELAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Read from another kinesis-relay (http:// or https://) instead of Kinesis, so relays
    /// form a tree. Without --stream, every stream it serves is relayed.
    #[arg(long, env = "KINESIS_RELAY_UPSTREAM_RELAY")]
    pub upstream_relay: Option<String>,

    /// Bearer token for the upstream relay.
    #[arg(long, env = "KINESIS_RELAY_UPSTREAM_TOKEN", hide_env_values = true)]
    pub upstream_token: Option<String>,

    /// PEM CA to trust for an https:// upstream relay.
    #[arg(long, env = "KINESIS_RELAY_UPSTREAM_CA_CERT")]
    pub upstream_ca_cert: Option<PathBuf>,

    /// A stream with no live subscription for longer than this is NOT_SERVING in gRPC health.
    #[arg(long, env = "KINESIS_RELAY_HEALTH_THRESHOLD", default_value = "60s", value_parser = parse_duration)]
    pub health_threshold: Duration,

    /// PEM certificate chain: serve gRPC over TLS (with --tls-key). Reloaded on change or
    /// SIGHUP.
    #[arg(long, env = "KINESIS_RELAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "KINESIS_RELAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: only clients with a certificate it signed may connect (mutual TLS).
    #[arg(long, env = "KINESIS_RELAY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Tokens file (TOML, or YAML by its .yaml/.yml extension): who may read which streams.
    /// Without it every client reads every stream. Reloaded on change or SIGHUP.
    #[arg(long, env = "KINESIS_RELAY_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,

    /// Live subscriptions in total; beyond, Subscribe gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "KINESIS_RELAY_MAX_SUBSCRIBERS", default_value_t = 10_000)]
    pub max_subscribers: usize,

    /// Live subscriptions per token (or per certificate subject; without a tokens file, per
    /// client IP address).
    #[arg(
        long,
        env = "KINESIS_RELAY_MAX_SUBSCRIBERS_PER_TOKEN",
        default_value_t = 2_000
    )]
    pub max_subscribers_per_token: usize,

    /// Subscribe calls per token per second (without a tokens file, per client IP address),
    /// in bursts of twice as many: 1,000 subscribers reconnecting after a restart are back
    /// within seconds at the default.
    #[arg(long, env = "KINESIS_RELAY_SUBSCRIBE_RATE", default_value_t = 200.0)]
    pub subscribe_rate: f64,

    /// Open gRPC connections in total; more are closed at once and counted
    /// (kinesis_relay_connections_closed). Lowered at start to fit the file-descriptor limit.
    #[arg(long, env = "KINESIS_RELAY_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Open gRPC connections from one client IP address.
    #[arg(
        long,
        env = "KINESIS_RELAY_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 4_096
    )]
    pub max_connections_per_address: usize,

    /// Time a new connection has to finish its TLS handshake, send the HTTP/2 preface and
    /// start its first call; silent connections are closed after it.
    #[arg(long, env = "KINESIS_RELAY_CONNECTION_SETUP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connection_setup_timeout: Duration,

    /// Largest metadata (header list) a call may send (B, KiB, MiB); larger gets
    /// RESOURCE_EXHAUSTED for that call alone. At most 64MiB.
    #[arg(long, env = "KINESIS_RELAY_MAX_HEADER_LIST_BYTES", default_value = "16KiB", value_parser = parse_bytes)]
    pub max_header_list_bytes: usize,

    /// Compress responses with zstd or gzip when the client accepts it (`on` or `off`;
    /// zstd when it accepts both): Subscribe's record batches, each block of records
    /// compressed once for every subscriber, and the unary responses. gRPC-Web and
    /// Server-Sent Events are never compressed. Compressed requests are always accepted.
    #[arg(long, env = "KINESIS_RELAY_RESPONSE_COMPRESSION", default_value = "on")]
    pub response_compression: Switch,

    /// Compression level of Subscribe responses, for zstd and gzip alike: 1 is fastest,
    /// 9 smallest.
    #[arg(long, env = "KINESIS_RELAY_RESPONSE_COMPRESSION_LEVEL", default_value = "3", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub response_compression_level: u32,

    /// Gather the HTTP/2 frames written in one poll of a connection into one system call
    /// (`on` or `off`): clients with HTTP/2's default 16 KiB frames cost one write per
    /// response instead of one per frame.
    #[arg(long, env = "KINESIS_RELAY_COALESCE_WRITES", default_value = "on")]
    pub coalesce_writes: Switch,

    /// Serve the web console at /console/ on the gRPC listener (`on` or `off`): the
    /// streams, their shards and a live tail, in a browser, through the HTTP endpoints
    /// under /v1/streams (same tokens). Its files are built into the binary.
    #[arg(long, env = "KINESIS_RELAY_CONSOLE", default_value = "on")]
    pub console: Switch,

    /// Origin whose browser pages may call the relay: gRPC-Web and the HTTP endpoints
    /// (scheme://host[:port], e.g. https://console.example.com; repeat for several; `*`
    /// for every origin). None by default: pages of other origins get no answer they can
    /// read.
    #[arg(long = "cors-allowed-origin", env = "KINESIS_RELAY_CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = crate::web::cors::parse_origin)]
    pub cors_allowed_origins: Vec<String>,

    /// At shutdown, time the calls get to end (subscribers get UNAVAILABLE and their
    /// cursor at once) before the connections still open are closed.
    #[arg(long, env = "KINESIS_RELAY_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Concurrent calls per HTTP/2 connection.
    #[arg(
        long,
        env = "KINESIS_RELAY_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_streams_per_connection: u32,

    /// Largest request message accepted (B, KiB, MiB).
    #[arg(long, env = "KINESIS_RELAY_MAX_REQUEST_BYTES", default_value = "1MiB", value_parser = parse_bytes)]
    pub max_request_bytes: usize,

    /// HTTP/2 streams a client may reset before they are accepted (rapid-reset protection).
    #[arg(
        long,
        env = "KINESIS_RELAY_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS",
        default_value_t = 20
    )]
    pub http2_max_pending_accept_reset_streams: usize,

    /// HTTP/2 streams the relay may reset for a client's protocol errors before it closes
    /// the connection (flood protection; tonic leaves it unset).
    #[arg(
        long,
        env = "KINESIS_RELAY_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS",
        default_value_t = 1024
    )]
    pub http2_max_local_error_reset_streams: usize,
}

/// Lag policy flag values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnLag {
    /// End the slow subscriber's stream with RESOURCE_EXHAUSTED and its cursor.
    Disconnect,
    /// Report a gap and go on from the oldest record held.
    Skip,
    /// Read the records it missed from Kinesis, then rejoin the live records.
    CatchUp,
}

/// A feature that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A size in bytes that fits this machine's `usize`.
fn parse_bytes(text: &str) -> Result<usize, String> {
    parse_size(text)
        .and_then(|bytes| usize::try_from(bytes).map_err(|_| format!("{text:?} is too large")))
}

/// A positive rate per second, at most 1,000.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 1000.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate per second: give a number above 0 and at most 1000, like 5 or 2.5"
        )),
    }
}

/// Replaces `{hostname}` and `{pod}` in a consumer name template.
pub fn expand_consumer_name(template: &str) -> String {
    let host = default_consumer_name()
        .trim_start_matches("kinesis-relay-")
        .to_owned();
    let pod = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| host.clone());
    template.replace("{hostname}", &host).replace("{pod}", &pod)
}

fn parse_starting_position(text: &str) -> Result<InitialPosition, String> {
    match text {
        "latest" => Ok(InitialPosition::Latest),
        "trim-horizon" => Ok(InitialPosition::TrimHorizon),
        _ => match text.strip_prefix("at-timestamp:") {
            Some(at) => {
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .map(|at| InitialPosition::AtTimestamp(at.into()))
                    .map_err(|err| {
                        format!("{at:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z: {err}")
                    })
            }
            None => Err(format!(
                "{text:?} is not a starting position; use latest, trim-horizon or at-timestamp:2026-01-31T12:00:00Z"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_starting_positions() {
        assert_eq!(
            parse_starting_position("latest").unwrap(),
            InitialPosition::Latest
        );
        assert_eq!(
            parse_starting_position("trim-horizon").unwrap(),
            InitialPosition::TrimHorizon
        );
        assert!(matches!(
            parse_starting_position("at-timestamp:2026-01-31T12:00:00Z").unwrap(),
            InitialPosition::AtTimestamp(_)
        ));
        assert!(
            parse_starting_position("at-timestamp:yesterday")
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse_starting_position("oldest").is_err());
    }

    #[test]
    fn consumer_names_expand_templates() {
        let name = expand_consumer_name("relay-{hostname}");
        assert!(name.starts_with("relay-") && !name.contains('{'));
        assert_eq!(expand_consumer_name("fixed"), "fixed");
    }
}
