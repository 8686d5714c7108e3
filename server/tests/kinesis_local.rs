//! Conformance: the basic scenario (register, subscribe, produce, receive) against
//! kinesis-local, an independent Kinesis mock (npm). `scripts/test` starts it and sets
//! KINESIS_LOCAL_URL; under CI a missing variable fails the test.

mod common;

use std::time::Duration;

use aws_sdk_kinesis::types::StreamStatus;
use common::*;
use kinesis_relay::embedded::client_for;
use kinesis_relay_api::v1::{self, SubscribeRequest, subscribe_request::StartingPosition};

fn kinesis_local_url() -> Option<String> {
    let url = std::env::var("KINESIS_LOCAL_URL").ok();
    require_tool("kinesis-local (KINESIS_LOCAL_URL)", url.is_some()).then(|| url.unwrap())
}

#[tokio::test]
async fn relays_records_from_kinesis_local() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let kinesis = client_for(&url);
    let stream = format!("relay-conformance-{}", std::process::id());
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(2)
        .send()
        .await
        .expect("CreateStream on kinesis-local");
    eventually("the stream to become ACTIVE", || {
        let kinesis = kinesis.clone();
        let stream = stream.clone();
        async move {
            kinesis
                .describe_stream_summary()
                .stream_name(&stream)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.stream_description_summary()
                        .map(|s| s.stream_status().clone())
                })
                == Some(StreamStatus::Active)
        }
    })
    .await;

    let mut config = fast_config(&[&stream]);
    config.ingest.consumer_name = format!("relay-conformance-{}", std::process::id());
    // kinesis-local never sends idle events more often than its push interval (1 s).
    config.ingest.watchdog = Duration::from_secs(10);
    let relay = kinesis_relay::start(config, client_for(&url))
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
    let _ = kinesis
        .delete_stream()
        .stream_name(&stream)
        .enforce_consumer_deletion(true)
        .send()
        .await;
}
