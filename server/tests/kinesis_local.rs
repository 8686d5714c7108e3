//! Conformance: the basic scenario (register, subscribe, produce, receive) and a resume past
//! the relay's ring (catch-up with GetShardIterator and GetRecords) against kinesis-local, an
//! independent Kinesis mock (npm). `scripts/test` starts it and sets KINESIS_LOCAL_URL; under
//! CI a missing variable fails the test.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::*;
use kinesis_relay::{RelayConfig, embedded::client_for, hub::RingLimits};
use kinesis_relay_api::v1::{
    self, SubscribeRequest, subscribe_request::StartingPosition, subscribe_response::Event,
};

fn kinesis_local_url() -> Option<String> {
    peer_url("KINESIS_LOCAL_URL")
}

/// Relay settings for `stream` on kinesis-local, with a consumer of the test's own.
fn relay_config(stream: &str) -> RelayConfig {
    let mut config = fast_config(&[stream]);
    config.ingest.consumer_name = stream.to_owned();
    // kinesis-local never sends idle events more often than its push interval (1 s).
    config.ingest.watchdog = Duration::from_secs(10);
    config
}

async fn delete_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    let _ = kinesis
        .delete_stream()
        .stream_name(stream)
        .enforce_consumer_deletion(true)
        .send()
        .await;
}

#[tokio::test]
async fn relays_records_from_kinesis_local() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let kinesis = client_for(&url);
    let stream = format!("relay-conformance-{}", std::process::id());
    create_stream(&kinesis, &stream, 2).await;
    let relay = kinesis_relay::start(relay_config(&stream), client_for(&url))
        .await
        .unwrap();
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(
        &mut grpc,
        SubscribeRequest {
            stream: stream.clone(),
            starting_position: Some(StartingPosition::Earliest(v1::Earliest {})),
            ..Default::default()
        },
    )
    .await;
    let sent = numbered("conformance", 40, 8);
    put(&kinesis, &stream, &sent).await;
    let delivery = receive(&mut subscription, sent.len()).await;
    let mut got = check_order(&delivery.records);
    got.sort();
    let mut expected: Vec<_> = sent
        .into_iter()
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    relay.shutdown().await.unwrap();
    delete_stream(&kinesis, &stream).await;
}

#[tokio::test]
async fn a_cursor_older_than_the_ring_resumes_from_kinesis_local_exactly_once() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let kinesis = client_for(&url);
    let stream = format!("relay-catch-up-{}", std::process::id());
    // One shard: the records come in the order they were written.
    create_stream(&kinesis, &stream, 1).await;
    let mut config = relay_config(&stream);
    // Some 140 records (an entry costs about 450 bytes): the first write fits, the second
    // overruns it.
    config.rings = RingLimits {
        max_bytes: 64 << 10,
        max_age: Duration::from_secs(600),
    };
    let relay = kinesis_relay::start(config, client_for(&url))
        .await
        .unwrap();
    wait_active(&relay).await;
    let first = numbered("first", 40, 4);
    put(&kinesis, &stream, &first).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(
        &mut grpc,
        SubscribeRequest {
            stream: stream.clone(),
            starting_position: Some(StartingPosition::Earliest(v1::Earliest {})),
            max_records_per_batch: 10,
            ..Default::default()
        },
    )
    .await;
    let seen = receive(&mut subscription, first.len() / 2).await;
    drop(subscription);

    let second = numbered("second", 1500, 4);
    put(&kinesis, &stream, &second).await;
    eventually(
        "the ring to drop every record of the first write",
        || async {
            relay.hubs[0]
                .view()
                .shards()
                .all(|shard| shard.oldest_index() > first.len() as u64)
        },
    )
    .await;

    let mut resumed = subscribe(
        &mut grpc,
        SubscribeRequest {
            stream: stream.clone(),
            starting_position: Some(StartingPosition::AfterCursor(seen.last_cursor.clone())),
            ..Default::default()
        },
    )
    .await;
    let rest = first.len() + second.len() - seen.records.len();
    let delivery = receive(&mut resumed, rest).await;
    let mut records = seen.records.clone();
    records.extend(delivery.records);
    let got = check_order(&records);
    let want: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect();
    assert!(got == want, "not every record once, in order: {got:?}");
    assert!(
        !delivery
            .events
            .iter()
            .any(|event| matches!(event, Event::Gap(_))),
        "no gap"
    );
    // Nothing more (a record sent twice) before the next heartbeat.
    loop {
        let message = tokio::time::timeout(DEADLINE, resumed.message())
            .await
            .expect("a heartbeat")
            .expect("stream stays healthy")
            .expect("stream stays open");
        match message.event {
            Some(Event::Heartbeat(_)) => break,
            Some(Event::Records(batch)) => panic!("records sent again: {batch:?}"),
            _ => {}
        }
    }
    assert!(
        relay.catch_ups[0].counters.calls.load(Ordering::Relaxed) >= 1,
        "read from kinesis-local with GetRecords"
    );
    relay.shutdown().await.unwrap();
    delete_stream(&kinesis, &stream).await;
}
