//! The `kinesis-relay` binary: flags, logging, signals. Everything else is in the library.

use std::process::ExitCode;

use kinesis_relay::{
    RelayConfig,
    config::{Cli, LogFormat},
    embedded,
};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::load() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("kinesis-relay: {err:#}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kinesis-relay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cli.validate()?;
    let mut streams = cli.streams.clone();
    if let (Some(upstream), true) = (cli.ingest().upstream, streams.is_empty()) {
        streams = kinesis_relay::ingest::upstream_relay::list_streams(&upstream).await?;
        if streams.is_empty() {
            anyhow::bail!(
                "the upstream relay {} serves no stream you may read",
                upstream.url
            );
        }
    }
    let (client, embedded) = if cli.embedded {
        if streams.is_empty() {
            streams.push("demo".to_owned());
        }
        let running = embedded::start(
            &streams,
            cli.embedded_shards,
            cli.embedded_retention(),
            cli.demo_producer,
        )
        .await?;
        (running.client.clone(), Some(running))
    } else {
        (
            kinesis_relay::aws_client(cli.endpoint_url.as_deref(), cli.region.as_deref()).await,
            None,
        )
    };
    let config = RelayConfig {
        streams,
        listen: cli.listen,
        ingest: cli.ingest(),
        rings: cli.rings(),
        serve: cli.serve(),
        transport: cli.transport(),
        security: cli.security(),
        admin: cli.admin(),
    };
    tracing::info!(config = %cli.describe(), "resolved configuration");
    let relay = kinesis_relay::start(config, client).await?;
    let result = relay.run_until(shutdown_signal()).await;
    if let Some(embedded) = embedded {
        // Bounded like the relay's own shutdown: the process exits promptly whatever the
        // emulator's connections do.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), embedded.stop()).await;
    }
    result
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
