//! AWS SDK Kinesis clients for a local endpoint (the emulator, kinesis-local), and writing
//! records through them.

use std::time::Instant;

use aws_sdk_kinesis::{
    Client,
    config::{BehaviorVersion, Builder, Credentials, Region},
    primitives::Blob,
    types::{PutRecordsRequestEntry, StreamStatus},
};

use crate::DEADLINE;

/// SDK configuration for `endpoint` with dummy credentials (local endpoints accept any), to
/// adjust before building (retries, HTTP client).
pub fn config(endpoint: &str) -> Builder {
    aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
}

/// A client for `endpoint` with dummy credentials and the SDK's default retries.
pub fn client(endpoint: &str) -> Client {
    Client::from_conf(config(endpoint).build())
}

/// Writes records `(partition key, data)` with PutRecords, 500 a call, asserts that none
/// failed, and returns their sequence numbers in order.
pub async fn put(client: &Client, stream: &str, records: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut sequences = Vec::with_capacity(records.len());
    for chunk in records.chunks(500) {
        let entries = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("partition key and data are set")
            })
            .collect();
        sequences.extend(put_entries(client, stream, entries).await);
    }
    sequences
}

/// Writes `entries` (at most 500) with one PutRecords call, asserts that none failed, and
/// returns their sequence numbers in order.
pub async fn put_entries(
    client: &Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) -> Vec<String> {
    let output = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(output.failed_record_count(), Some(0), "no record may fail");
    output
        .records()
        .iter()
        .map(|r| r.sequence_number().unwrap_or_default().to_owned())
        .collect()
}

/// `n` records with data `prefix-i` and partition keys `key-(i % keys)`.
pub fn numbered(prefix: &str, n: usize, keys: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{}", i % keys),
                format!("{prefix}-{i}").into_bytes(),
            )
        })
        .collect()
}

/// `prefix` made unique to this test process and call, for names on a server that outlives
/// the test (kinesis-local, S3).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

/// Creates `stream` with `shards` shards and waits (within [`DEADLINE`]) until it is ACTIVE.
pub async fn create_stream(client: &Client, stream: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    let start = Instant::now();
    loop {
        let status = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.stream_description_summary()
                    .map(|s| s.stream_status().clone())
            });
        if status == Some(StreamStatus::Active) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "stream {stream} not ACTIVE within {DEADLINE:?} (last {status:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
