//! Redis pub/sub with the `redis` crate (tokio): one PubSub connection per subscriber.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;

use super::Server;
use crate::payload::SubStats;

/// The channel every cell uses.
const CHANNEL: &str = "bench";

fn client(server: &Server) -> anyhow::Result<redis::Client> {
    redis::Client::open(format!("redis://{}/", server.addr)).context("redis client")
}

pub async fn publisher(server: &Server) -> anyhow::Result<super::Publisher> {
    let conn = client(server)?
        .get_multiplexed_async_connection()
        .await
        .context("connecting the redis publisher")?;
    Ok(super::Publisher::Redis(conn))
}

pub async fn send(conn: &mut MultiplexedConnection, batch: Vec<Bytes>) -> anyhow::Result<()> {
    let mut pipe = redis::pipe();
    for payload in &batch {
        pipe.cmd("PUBLISH").arg(CHANNEL).arg(&payload[..]).ignore();
    }
    pipe.query_async::<()>(conn).await.context("PUBLISH")
}

pub async fn subscribe(
    server: &Server,
    stats: Arc<SubStats>,
    latency: Arc<Mutex<Histogram<u64>>>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut pubsub = client(server)?
        .get_async_pubsub()
        .await
        .context("connecting a redis subscriber")?;
    // Returns once the server has confirmed the subscription.
    pubsub.subscribe(CHANNEL).await.context("SUBSCRIBE")?;
    Ok(tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            stats.observe(message.get_payload_bytes(), &latency);
        }
    }))
}
