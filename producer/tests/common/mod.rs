//! Helpers shared by the integration tests: a Kinesis client for the upstream under test,
//! stream creation, reading a whole stream back, running the real binary.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};

/// The kinesis-local URL from KINESIS_LOCAL_URL. Under CI the variable must be set (the
/// suite fails rather than silently skipping); locally a missing variable skips the test.
pub fn kinesis_local_url() -> Option<String> {
    match std::env::var("KINESIS_LOCAL_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but KINESIS_LOCAL_URL is not set: .ci/run must start kinesis-local"
                );
            }
            eprintln!(
                "skipping: KINESIS_LOCAL_URL not set (producer/tests/start-kinesis-local.sh PORT)"
            );
            None
        }
    }
}

/// A client for `endpoint` with dummy credentials.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Client::from_conf(config)
}

/// A stream name unique to this test process and `tag`.
pub fn stream_name(tag: &str) -> String {
    format!(
        "producer-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Creates `name` with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = summary
            .stream_description_summary()
            .map(|d| d.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} not ACTIVE within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let mut child = producer_command(endpoint)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kinesis-producer");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("wait for kinesis-producer");
    writer.join().expect("stdin writer");
    output
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
