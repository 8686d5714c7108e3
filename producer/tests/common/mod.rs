//! Scaffolding of the producer's tests: the shared pieces from `kinesis-relay-test-support`
//! (Kinesis clients, stream creation, waits), reading a whole stream back, and running the
//! real binary.

// Each test binary uses part of this module, and of what it re-exports.
#![allow(dead_code, unused_imports)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;

pub use kinesis_relay_test_support::{client, create_stream};

/// The kinesis-local URL from KINESIS_LOCAL_URL (`scripts/test` starts it); `None` when a
/// test must skip (locally; under CI a missing variable fails the test).
pub fn kinesis_local_url() -> Option<String> {
    kinesis_relay_test_support::peer_url("KINESIS_LOCAL_URL")
}

/// A stream name unique to this test process and `tag`.
pub fn stream_name(tag: &str) -> String {
    kinesis_relay_test_support::unique_name(&format!("producer-{tag}"))
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// The shard it was read from.
    pub shard: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its data.
    pub data: Vec<u8>,
}

/// Reads every shard from TRIM_HORIZON until `expected` records were read (or the deadline
/// passes), in shard order then sequence order.
pub async fn read_all(client: &Client, stream: &str, expected: usize) -> Vec<ReadRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .to_vec();
    let mut iterators = Vec::new();
    for shard in &shards {
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator()
            .map(str::to_owned);
        iterators.push((shard.shard_id().to_owned(), iterator, Vec::new()));
    }
    loop {
        let mut all_caught_up = true;
        for (shard, iterator, records) in &mut iterators {
            let Some(current) = iterator.clone() else {
                continue;
            };
            let output = client
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            for record in output.records() {
                records.push(ReadRecord {
                    shard: shard.clone(),
                    partition_key: record.partition_key().to_owned(),
                    data: record.data().as_ref().to_vec(),
                });
            }
            if !output.records().is_empty() {
                all_caught_up = false;
            }
            *iterator = output.next_shard_iterator().map(str::to_owned);
        }
        // Closed shards (no iterator any more) still count.
        let total: usize = iterators.iter().map(|(_, _, records)| records.len()).sum();
        if (total >= expected && all_caught_up) || Instant::now() > deadline {
            return iterators
                .into_iter()
                .flat_map(|(_, _, records)| records)
                .collect();
        }
        if all_caught_up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs the producer binary against `endpoint` with `args`, feeding `stdin`.
pub fn run_producer(endpoint: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = producer_command(endpoint);
    command.args(args);
    kinesis_relay_test_support::run_with_input(command, stdin)
}

/// The producer command with a clean AWS environment pointing at `endpoint`.
pub fn producer_command(endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinesis-producer"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .arg("--endpoint-url")
        .arg(endpoint);
    command
}

/// Standard error as text, for assertion messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
