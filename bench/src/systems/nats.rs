//! NATS core with `async-nats`: one connection per subscriber.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;

use super::Server;
use crate::payload::SubStats;

/// The subject every cell uses.
const SUBJECT: &str = "bench";

async fn connect(server: &Server) -> anyhow::Result<async_nats::Client> {
    async_nats::connect(server.addr.as_str())
        .await
        .context("connecting to nats")
}

pub async fn publisher(server: &Server) -> anyhow::Result<super::Publisher> {
    Ok(super::Publisher::Nats(connect(server).await?))
}

pub async fn send(client: &async_nats::Client, batch: Vec<Bytes>) -> anyhow::Result<()> {
    for payload in batch {
        client.publish(SUBJECT, payload).await.context("publish")?;
    }
    client.flush().await.context("flush")
}

pub async fn subscribe(
    server: &Server,
    stats: Arc<SubStats>,
    latency: Arc<Mutex<Histogram<u64>>>,
) -> anyhow::Result<JoinHandle<()>> {
    let client = connect(server).await?;
    let mut subscriber = client.subscribe(SUBJECT).await.context("subscribe")?;
    // The SUB is on the server once a flush (PING/PONG) comes back.
    client.flush().await.context("flush")?;
    Ok(tokio::spawn(async move {
        let _client = client;
        while let Some(message) = subscriber.next().await {
            stats.observe(&message.payload, &latency);
        }
    }))
}
