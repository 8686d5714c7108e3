//! `--embedded`: the project's emulator in-process, and a demo producer, so a first run
//! needs no AWS account and nothing else installed.

use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::{
    Client,
    config::{Credentials, Region},
    primitives::Blob,
    types::PutRecordsRequestEntry,
};
use kinesis_emulator::Emulator;
use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tracing::{info, warn};

/// A running embedded emulator.
#[derive(Debug)]
pub struct Embedded {
    /// The emulator.
    pub emulator: Emulator,
    /// A client pointed at it.
    pub client: Client,
    /// Demo producer tasks.
    producers: Vec<JoinHandle<()>>,
}

/// Starts the emulator with `streams` of `shards` shards keeping records for `retention`,
/// and a demo producer per stream writing `rate` records per second when given.
pub async fn start(
    streams: &[String],
    shards: u32,
    retention: Duration,
    rate: Option<u32>,
) -> anyhow::Result<Embedded> {
    let mut builder = Emulator::builder()
        .consumer_activation_delay(Duration::from_millis(200))
        .retention(retention);
    for stream in streams {
        builder = builder.stream(stream, shards);
    }
    let emulator = builder.start().await?;
    info!(endpoint = %emulator.endpoint_url(), ?streams, shards, retention_s = retention.as_secs(), "embedded emulator started");
    let client = client_for(&emulator.endpoint_url());
    let producers = match rate {
        Some(rate) => streams
            .iter()
            .map(|stream| tokio::spawn(demo_producer(client.clone(), stream.clone(), rate)))
            .collect(),
        None => Vec::new(),
    };
    Ok(Embedded {
        emulator,
        client,
        producers,
    })
}

impl Embedded {
    /// Stops the demo producers (waiting until they have ended, so that none writes to
    /// the emulator while it shuts down) and the emulator.
    pub async fn stop(self) {
        for producer in &self.producers {
            producer.abort();
        }
        for producer in self.producers {
            // Cancelled, the expected end; a panic was already reported by the runtime.
            let _ = producer.await;
        }
        self.emulator.shutdown().await;
    }
}

/// A Kinesis client for an emulator endpoint (any credentials are accepted there).
pub fn client_for(endpoint_url: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "embedded", "embedded", None, None, "embedded",
        ))
        .build();
    Client::from_conf(config)
}

/// Writes `rate` sample JSON records per second, in batches every 100 ms.
async fn demo_producer(client: Client, stream: String, rate: u32) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut due = 0.0f64;
    let mut sent: u64 = 0;
    loop {
        tick.tick().await;
        due += f64::from(rate) / 10.0;
        let count = (due.floor() as usize).min(500);
        if count == 0 {
            continue;
        }
        due -= count as f64;
        let entries: Vec<_> = (0..count)
            .map(|_| {
                sent += 1;
                let sensor = sent % 8;
                let at = time::OffsetDateTime::from(SystemTime::now())
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let body = format!(
                    r#"{{"n":{sent},"sensor":"sensor-{sensor}","temperature":{:.1},"at":"{at}"}}"#,
                    18.0 + (sent % 50) as f64 / 10.0
                );
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("sensor-{sensor}"))
                    .data(Blob::new(body))
                    .build()
                    .expect("partition key and data are set")
            })
            .collect();
        if let Err(err) = client
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await
        {
            warn!(stream, cause = %aws_sdk_kinesis::error::DisplayErrorContext(&err), "demo producer: PutRecords failed");
        }
    }
}
