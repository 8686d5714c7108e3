//! The enhanced fan-out lifecycle with shortened durations: a consumer goes CREATING ->
//! ACTIVE, a reader follows the shard lineage through lifetime renewals, a split, a merge
//! and an injected error, and receives every record exactly once and in order per key.
//! Run over HTTP/1.1 and over HTTP/2 (TLS + ALPN h2).

mod common;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ChildShard, PutRecordsRequestEntry, ShardIteratorType, SubscribeToShardEventStream,
};
use common::*;
use kinesis_emulator::{Emulator, EmulatorHandle, EndMode};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

const KEYS: usize = 8;
const BATCHES: usize = 200;

type Sink = Arc<Mutex<Vec<(String, u64)>>>;

/// Reads one shard to its end through as many subscriptions as it takes; returns its
/// children.
async fn read_shard(
    client: Client,
    consumer: String,
    shard: String,
    sink: Sink,
) -> (String, Vec<ChildShard>) {
    let mut continuation: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "shard {shard} never ended");
        let start = match &continuation {
            Some(seq) => position(ShardIteratorType::AfterSequenceNumber, Some(seq)),
            None => position(ShardIteratorType::TrimHorizon, None),
        };
        let subscribed = client
            .subscribe_to_shard()
            .consumer_arn(&consumer)
            .shard_id(&shard)
            .starting_position(start)
            .send()
            .await;
        let mut events = match subscribed {
            Ok(output) => output.event_stream,
            Err(err) => {
                let err = err.into_service_error();
                assert!(
                    err.is_resource_in_use_exception(),
                    "subscribe failed: {err:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        loop {
            let event = tokio::time::timeout(DEADLINE, events.recv())
                .await
                .expect("an event in time");
            match event {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => {
                    let mut sink = sink.lock().unwrap();
                    for record in event.records() {
                        let value = std::str::from_utf8(record.data().as_ref())
                            .unwrap()
                            .parse()
                            .unwrap();
                        sink.push((record.partition_key().to_owned(), value));
                    }
                    drop(sink);
                    if !event.child_shards().is_empty() {
                        return (shard, event.child_shards().to_vec());
                    }
                    continuation = Some(event.continuation_sequence_number().to_owned());
                }
                Ok(Some(_)) => {}
                // Lifetime over, or an error event: resubscribe after the continuation.
                Ok(None) | Err(_) => break,
            }
        }
    }
}

async fn write_and_reshard(client: Client, handle: EmulatorHandle, stream: &'static str) {
    let mut next = [0u64; KEYS];
    for batch in 0..BATCHES {
        let entries = (0..KEYS)
            .map(|k| {
                let value = next[k];
                next[k] += 1;
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{k}"))
                    .data(Blob::new(value.to_string().into_bytes()))
                    .build()
                    .unwrap()
            })
            .collect();
        kinesis_relay_test_support::put_entries(&client, stream, entries).await;
        match batch {
            50 => {
                client
                    .split_shard()
                    .stream_name(stream)
                    .shard_to_split("shardId-000000000000")
                    .new_starting_hash_key((u128::MAX / 4).to_string())
                    .send()
                    .await
                    .unwrap();
            }
            100 => {
                client
                    .merge_shards()
                    .stream_name(stream)
                    .shard_to_merge("shardId-000000000002")
                    .adjacent_shard_to_merge("shardId-000000000003")
                    .send()
                    .await
                    .unwrap();
            }
            150 => handle.end_all_subscriptions(EndMode::ErrorEvent),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn lifecycle(emu: Emulator, client: Client, stream: &'static str) {
    let handle = emu.handle();
    let registered = client
        .register_stream_consumer()
        .stream_arn(stream_arn(stream))
        .consumer_name("lifecycle")
        .send()
        .await
        .unwrap();
    assert_eq!(
        registered.consumer().unwrap().consumer_status().as_str(),
        "CREATING"
    );
    let consumer =
        active_consumer_arn_when_active(&client, registered.consumer().unwrap().consumer_arn())
            .await;

    let sink: Sink = Arc::default();
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let mut readers = JoinSet::new();
    let mut started = HashSet::new();
    for shard in shards.shards() {
        started.insert(shard.shard_id().to_owned());
        readers.spawn(read_shard(
            client.clone(),
            consumer.clone(),
            shard.shard_id().to_owned(),
            sink.clone(),
        ));
    }
    let writer = tokio::spawn(write_and_reshard(client.clone(), handle.clone(), stream));
    let total = KEYS * BATCHES;
    let mut finished = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.lock().unwrap().len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} records arrived",
            sink.lock().unwrap().len()
        );
        let joined = tokio::time::timeout(Duration::from_millis(100), readers.join_next()).await;
        if let Ok(Some(result)) = joined {
            let (shard, children) = result.unwrap();
            finished.insert(shard);
            for child in children {
                let ready = child.parent_shards().iter().all(|p| finished.contains(p));
                if ready && started.insert(child.shard_id().to_owned()) {
                    readers.spawn(read_shard(
                        client.clone(),
                        consumer.clone(),
                        child.shard_id().to_owned(),
                        sink.clone(),
                    ));
                }
            }
        }
    }
    writer.await.unwrap();
    readers.abort_all();

    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, value) in sink.lock().unwrap().iter() {
        per_key.entry(key.clone()).or_default().push(*value);
    }
    assert_eq!(per_key.len(), KEYS);
    for (key, values) in per_key {
        let expected: Vec<u64> = (0..BATCHES as u64).collect();
        assert_eq!(
            values, expected,
            "records of {key} lost, repeated or out of order"
        );
    }
    assert!(finished.contains("shardId-000000000000"));
    assert!(finished.contains("shardId-000000000002") && finished.contains("shardId-000000000003"));
    let subscribes = handle.request_count("SubscribeToShard");
    assert!(
        subscribes >= 10,
        "only {subscribes} SubscribeToShard calls: renewals missing"
    );
    emu.shutdown().await;
}

async fn active_consumer_arn_when_active(client: &Client, arn: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = client
            .describe_stream_consumer()
            .consumer_arn(arn)
            .send()
            .await
            .unwrap();
        if described
            .consumer_description()
            .unwrap()
            .consumer_status()
            .as_str()
            == "ACTIVE"
        {
            return arn.to_owned();
        }
        assert!(Instant::now() < deadline, "consumer never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn builder(stream: &str) -> kinesis_emulator::EmulatorBuilder {
    Emulator::builder()
        .stream(stream, 2)
        .consumer_activation_delay(Duration::from_millis(300))
        .idle_event_interval(Duration::from_millis(200))
        .subscription_lifetime(Duration::from_millis(800))
        .takeover_window(Duration::from_millis(250))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_over_http1() {
    let emu = builder("life-h1").start().await.unwrap();
    let client = client(&emu);
    lifecycle(emu, client, "life-h1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_over_http2_tls() {
    let emu = builder("life-h2").tls(true).start().await.unwrap();
    assert!(emu.endpoint_url().starts_with("https://"));
    let handle = emu.handle();
    let client = tls_client(&emu);
    lifecycle(emu, client, "life-h2").await;
    assert!(handle.http2_requests() > 0, "the SDK did not negotiate h2");
}
