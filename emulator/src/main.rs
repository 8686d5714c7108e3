//! `kinesis-emulator`: a Kinesis-compatible endpoint with faithful enhanced fan-out.

use anyhow::Context as _;
use clap::Parser;
use kinesis_relay_api::units::parse_duration;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// A Kinesis-compatible endpoint with faithful enhanced fan-out (SubscribeToShard) semantics.
///
/// Speaks the AWS JSON 1.1 protocol over HTTP/1.1 and HTTP/2 (h2c, or TLS with ALPN h2 with
/// --tls). Any credentials and signature are accepted. Fault injection: POST JSON to
/// /_emulator/faults on the same port.
#[derive(Debug, Parser)]
#[command(name = "kinesis-emulator", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the chosen URL is printed).
    #[arg(
        long,
        env = "KINESIS_EMULATOR_LISTEN",
        default_value = "127.0.0.1:4567"
    )]
    listen: SocketAddr,

    /// Stream to create at start, as NAME:SHARDS; repeat the flag, or separate with commas.
    #[arg(
        long = "create-stream",
        env = "KINESIS_EMULATOR_CREATE_STREAMS",
        value_delimiter = ',',
        value_parser = parse_stream
    )]
    create_streams: Vec<(String, u32)>,

    /// How long a new consumer stays CREATING before it is ACTIVE (AWS: tens of seconds).
    #[arg(long, env = "KINESIS_EMULATOR_CONSUMER_ACTIVATION_DELAY", default_value = "1s", value_parser = parse_duration)]
    consumer_activation_delay: Duration,

    /// How often an idle subscription receives an empty event (AWS: 5s).
    #[arg(long, env = "KINESIS_EMULATOR_IDLE_EVENT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    idle_event_interval: Duration,

    /// How long a subscription lives before its event stream ends (AWS: 5m).
    #[arg(long, env = "KINESIS_EMULATOR_SUBSCRIPTION_LIFETIME", default_value = "5m", value_parser = parse_duration)]
    subscription_lifetime: Duration,

    /// Window after a SubscribeToShard in which another one for the same consumer and shard
    /// is refused (ResourceInUseException); after it, the new one takes over (AWS: 5s).
    #[arg(long, env = "KINESIS_EMULATOR_TAKEOVER_WINDOW", default_value = "5s", value_parser = parse_duration)]
    takeover_window: Duration,

    /// Delay between a write and its push to subscriptions (AWS: none).
    #[arg(long, env = "KINESIS_EMULATOR_PUSH_DELAY", default_value = "0s", value_parser = parse_duration)]
    push_delay: Duration,

    /// How long records are kept.
    #[arg(long, env = "KINESIS_EMULATOR_RETENTION", default_value = "24h", value_parser = parse_duration)]
    retention: Duration,

    /// How long a shard iterator stays valid; GetRecords with an older one answers
    /// ExpiredIteratorException (AWS: 5m).
    #[arg(long, env = "KINESIS_EMULATOR_ITERATOR_LIFETIME", default_value = "5m", value_parser = parse_duration)]
    iterator_lifetime: Duration,

    /// Turn off the per-shard throughput limits (1 MiB/s and 1000 records/s writes;
    /// GetRecords 5 calls/s and 2 MiB/s; 2 MiB/s enhanced fan-out reads).
    #[arg(long, env = "KINESIS_EMULATOR_NO_LIMITS")]
    no_limits: bool,

    /// Serve HTTPS with a self-signed certificate for localhost/127.0.0.1 (ALPN h2, http/1.1).
    #[arg(long, env = "KINESIS_EMULATOR_TLS")]
    tls: bool,

    /// With --tls, write the certificate (PEM) to this file, for clients to trust.
    #[arg(long, env = "KINESIS_EMULATOR_TLS_CERT_OUT", requires = "tls")]
    tls_cert_out: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "kinesis_emulator=debug".
    #[arg(long, env = "KINESIS_EMULATOR_LOG", default_value = "info")]
    log: String,
}

fn parse_stream(text: &str) -> Result<(String, u32), String> {
    let (name, shards) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected NAME:SHARDS, got {text:?}"))?;
    let shards = shards
        .parse()
        .map_err(|_| format!("invalid shard count in {text:?}"))?;
    Ok((name.to_owned(), shards))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut builder = kinesis_emulator::Emulator::builder()
        .listen(args.listen)
        .consumer_activation_delay(args.consumer_activation_delay)
        .idle_event_interval(args.idle_event_interval)
        .subscription_lifetime(args.subscription_lifetime)
        .takeover_window(args.takeover_window)
        .push_delay(args.push_delay)
        .retention(args.retention)
        .iterator_lifetime(args.iterator_lifetime)
        .limits(!args.no_limits)
        .tls(args.tls);
    for (name, shards) in &args.create_streams {
        builder = builder.stream(name.clone(), *shards);
    }
    let emulator = builder.start().await.context("cannot start the emulator")?;
    if let (Some(path), Some(pem)) = (&args.tls_cert_out, emulator.certificate_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the certificate to {}", path.display()))?;
    }
    println!("kinesis-emulator listening on {}", emulator.endpoint_url());
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    emulator.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_parse_as_name_and_shards() {
        assert_eq!(parse_stream("demo:4"), Ok(("demo".into(), 4)));
        assert!(parse_stream("demo").is_err());
    }

    #[test]
    fn help_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
