//! From parsed flags to a running relay: stream discovery on an upstream relay, the
//! `--embedded` emulator, the relay itself, and its shutdown. `main.rs` only parses flags,
//! sets up logging and waits for a signal; tests and embedders call [`run`] directly.

use std::{future::Future, time::Duration};

use crate::{RelayConfig, config::Cli, embedded};

/// Runs the relay the flags describe until `shutdown` resolves (or a task fails).
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    cli.validate()?;
    let mut streams = cli.streams.clone();
    if let (Some(upstream), true) = (cli.ingest().upstream, streams.is_empty()) {
        streams = crate::ingest::upstream_relay::list_streams(&upstream).await?;
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
            crate::aws_client(cli.endpoint_url.as_deref(), cli.region.as_deref()).await,
            None,
        )
    };
    let config = RelayConfig {
        streams,
        listen: cli.listen,
        ingest: cli.ingest(),
        rings: cli.rings(),
        catch_up: cli.catch_up(),
        serve: cli.serve(),
        transport: cli.transport(),
        security: cli.security(),
        admin: cli.admin(),
    };
    tracing::info!(config = %cli.describe(), "resolved configuration");
    // A relay that fails to start still stops the embedded emulator and its producers.
    let result = match crate::start(config, client).await {
        Ok(relay) => relay.run_until(shutdown).await,
        Err(err) => Err(err),
    };
    if let Some(embedded) = embedded {
        // Bounded like the relay's own shutdown: the process exits promptly whatever the
        // emulator's connections do.
        let _ = tokio::time::timeout(Duration::from_secs(1), embedded.stop()).await;
    }
    result
}
