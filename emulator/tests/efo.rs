//! Enhanced fan-out rules, through the real aws-sdk-kinesis client over HTTP/1.1.

mod common;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, SubscribeToShardEventStream};
use common::*;
use kinesis_emulator::{Emulator, EndMode};
use std::time::Duration;
use tokio::time::{Instant, timeout};

async fn put(client: &aws_sdk_kinesis::Client, stream: &str, key: &str, data: &str) -> String {
    client
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data.as_bytes().to_vec()))
        .send()
        .await
        .expect("put record")
        .sequence_number()
        .to_owned()
}

#[tokio::test]
async fn initial_response_then_records_pushed_without_delay() {
    let emu = Emulator::builder()
        .stream("push", 1)
        .consumer_activation_delay(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "push", "c").await;
    // send() returns only after the SDK has read the initial-response frame.
    let mut events = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let first = next_event(&mut events).await;
    assert!(first.records().is_empty());
    assert_eq!(first.continuation_sequence_number().len(), 56);
    let mut latencies = Vec::new();
    for i in 0..5 {
        let written = Instant::now();
        let seq = put(&client, "push", "k", &format!("r{i}")).await;
        let event = next_event(&mut events).await;
        latencies.push(written.elapsed());
        assert_eq!(event.records().len(), 1);
        assert_eq!(event.records()[0].sequence_number(), seq);
        assert_eq!(event.continuation_sequence_number(), seq);
        assert_eq!(
            event.records()[0].data().as_ref(),
            format!("r{i}").as_bytes()
        );
    }
    // A poller (kinesis-mock pushes once a second) would show a median near 500 ms.
    latencies.sort();
    assert!(
        latencies[2] < Duration::from_millis(250),
        "push latencies {latencies:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn idle_shards_get_empty_events() {
    let emu = Emulator::builder()
        .stream("idle", 1)
        .consumer_activation_delay(Duration::ZERO)
        .idle_event_interval(Duration::from_millis(150))
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "idle", "c").await;
    let mut events = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    let started = Instant::now();
    let first = next_event(&mut events).await;
    for _ in 0..3 {
        let event = next_event(&mut events).await;
        assert!(event.records().is_empty());
        assert_eq!(event.millis_behind_latest(), 0);
        assert_eq!(
            event.continuation_sequence_number(),
            first.continuation_sequence_number()
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    emu.shutdown().await;
}

#[tokio::test]
async fn subscription_ends_at_lifetime_and_renewal_loses_nothing() {
    let emu = Emulator::builder()
        .stream("renew", 1)
        .consumer_activation_delay(Duration::ZERO)
        .subscription_lifetime(Duration::from_millis(700))
        .takeover_window(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "renew", "c").await;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                put(&client, "renew", &format!("k{}", i % 3), &i.to_string()).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut received = Vec::new();
    let mut continuation: Option<String> = None;
    let mut subscriptions = 0;
    let deadline = Instant::now() + DEADLINE;
    while received.len() < 200 {
        assert!(
            Instant::now() < deadline,
            "only {} records arrived",
            received.len()
        );
        let start = match &continuation {
            Some(seq) => position(ShardIteratorType::AfterSequenceNumber, Some(seq)),
            None => position(ShardIteratorType::TrimHorizon, None),
        };
        let mut events = subscribe(&client, &consumer, "shardId-000000000000", start).await;
        subscriptions += 1;
        let opened = Instant::now();
        loop {
            match timeout(DEADLINE, events.recv())
                .await
                .expect("event in time")
            {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => {
                    received.extend(
                        event
                            .records()
                            .iter()
                            .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap()),
                    );
                    continuation = Some(event.continuation_sequence_number().to_owned());
                }
                Ok(None) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let lived = opened.elapsed();
        assert!(
            lived < Duration::from_secs(3),
            "subscription lived {lived:?}"
        );
    }
    writer.await.unwrap();
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(received, expected);
    assert!(subscriptions >= 2, "only {subscriptions} subscriptions");
    emu.shutdown().await;
}

#[tokio::test]
async fn second_subscription_within_window_is_refused_then_takes_over() {
    let window = Duration::from_millis(400);
    let emu = Emulator::builder()
        .stream("takeover", 2)
        .consumer_activation_delay(Duration::ZERO)
        .takeover_window(window)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "takeover", "c").await;
    let started = Instant::now();
    let mut first = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::Latest, None),
    )
    .await;
    next_event(&mut first).await;
    let refused = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .expect_err("second subscription within the window");
    assert!(refused.into_service_error().is_resource_in_use_exception());
    // Another shard of the same consumer is independent.
    subscribe(
        &client,
        &consumer,
        "shardId-000000000001",
        position(ShardIteratorType::Latest, None),
    )
    .await;
    // Retry until the window has passed: the new subscription takes over.
    let deadline = Instant::now() + DEADLINE;
    let mut second = loop {
        let attempt = client
            .subscribe_to_shard()
            .consumer_arn(&consumer)
            .shard_id("shardId-000000000000")
            .starting_position(position(ShardIteratorType::Latest, None))
            .send()
            .await;
        match attempt {
            Ok(output) => break output.event_stream,
            Err(err) => {
                assert!(err.into_service_error().is_resource_in_use_exception());
                assert!(Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };
    assert!(started.elapsed() >= window);
    // The old subscription ends with ResourceInUseException.
    let ended = loop {
        match timeout(DEADLINE, first.recv())
            .await
            .expect("old stream ends")
        {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    let err = ended.expect_err("old subscription fails");
    assert!(err.into_service_error().is_resource_in_use_exception());
    next_event(&mut second).await;
    emu.shutdown().await;
}

/// Reads a shard to its end and returns the final event.
async fn read_to_end(events: &mut EventReceiver) -> aws_sdk_kinesis::types::SubscribeToShardEvent {
    loop {
        let event = next_event(events).await;
        if !event.child_shards().is_empty() {
            return event;
        }
    }
}

#[tokio::test]
async fn shard_end_lists_child_shards_after_split_and_after_merge() {
    let emu = Emulator::builder()
        .stream("reshard", 1)
        .consumer_activation_delay(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = active_consumer(&client, "reshard", "c").await;
    let mut parent = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    put(&client, "reshard", "a", "before split").await;
    client
        .split_shard()
        .stream_name("reshard")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    let last = read_to_end(&mut parent).await;
    assert_eq!(last.continuation_sequence_number(), "");
    let children: Vec<_> = last
        .child_shards()
        .iter()
        .map(|c| c.shard_id().to_owned())
        .collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    for child in last.child_shards() {
        assert_eq!(child.parent_shards(), ["shardId-000000000000"]);
    }
    let range = last.child_shards()[1].hash_key_range().unwrap();
    assert_eq!(range.starting_hash_key(), (1u128 << 127).to_string());
    assert_eq!(range.ending_hash_key(), u128::MAX.to_string());
    // The parent's stream ends after the last event.
    assert!(matches!(
        timeout(DEADLINE, parent.recv()).await,
        Ok(Ok(None))
    ));

    let mut left = subscribe(
        &client,
        &consumer,
        "shardId-000000000001",
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    let mut right = subscribe(
        &client,
        &consumer,
        "shardId-000000000002",
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    client
        .merge_shards()
        .stream_name("reshard")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    for events in [&mut left, &mut right] {
        let last = read_to_end(events).await;
        assert_eq!(last.child_shards().len(), 1);
        let merged = &last.child_shards()[0];
        assert_eq!(merged.shard_id(), "shardId-000000000003");
        assert_eq!(
            merged.parent_shards(),
            ["shardId-000000000001", "shardId-000000000002"]
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn twenty_consumers_per_stream() {
    let emu = Emulator::builder().stream("many", 1).start().await.unwrap();
    let client = client(&emu);
    for i in 0..20 {
        client
            .register_stream_consumer()
            .stream_arn(stream_arn("many"))
            .consumer_name(format!("c{i}"))
            .send()
            .await
            .unwrap();
    }
    let err = client
        .register_stream_consumer()
        .stream_arn(stream_arn("many"))
        .consumer_name("c20")
        .send()
        .await
        .expect_err("21st consumer");
    assert!(err.into_service_error().is_limit_exceeded_exception());
    emu.shutdown().await;
}

#[tokio::test]
async fn consumer_not_active_yet_is_refused() {
    let emu = Emulator::builder()
        .stream("creating", 1)
        .consumer_activation_delay(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let consumer = client
        .register_stream_consumer()
        .stream_arn(stream_arn("creating"))
        .consumer_name("c")
        .send()
        .await
        .unwrap();
    let consumer = consumer.consumer().unwrap();
    assert_eq!(consumer.consumer_status().as_str(), "CREATING");
    let err = client
        .subscribe_to_shard()
        .consumer_arn(consumer.consumer_arn())
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .expect_err("consumer is CREATING");
    assert!(err.into_service_error().is_resource_in_use_exception());
    emu.shutdown().await;
}

#[tokio::test]
async fn fault_injection_ends_subscriptions_and_fails_calls() {
    let emu = Emulator::builder()
        .stream("faults", 1)
        .consumer_activation_delay(Duration::ZERO)
        .takeover_window(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let handle = emu.handle();
    let client = client(&emu);
    let consumer = active_consumer(&client, "faults", "c").await;
    let shard = "shardId-000000000000";

    // Error event.
    let mut events = subscribe(
        &client,
        &consumer,
        shard,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    next_event(&mut events).await;
    handle.end_all_subscriptions(EndMode::ErrorEvent);
    let err = timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .expect_err("error event");
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("InternalFailure")
    );

    // Dropped connection.
    let mut events = subscribe(
        &client,
        &consumer,
        shard,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    next_event(&mut events).await;
    handle.end_all_subscriptions(EndMode::DropConnection);
    assert!(timeout(DEADLINE, events.recv()).await.unwrap().is_err());

    // Injected errors on the next calls, then success.
    handle.fail_next("SubscribeToShard", 2, "LimitExceededException");
    for _ in 0..2 {
        let err = client
            .subscribe_to_shard()
            .consumer_arn(&consumer)
            .shard_id(shard)
            .starting_position(position(ShardIteratorType::Latest, None))
            .send()
            .await
            .expect_err("injected");
        assert!(err.into_service_error().is_limit_exceeded_exception());
    }
    handle.fail_next("PutRecord", 1, "InternalFailure");
    let err = client
        .put_record()
        .stream_name("faults")
        .partition_key("k")
        .data(Blob::new(b"x".to_vec()))
        .send()
        .await
        .expect_err("injected 500");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    let mut events = subscribe(
        &client,
        &consumer,
        shard,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    next_event(&mut events).await;
    assert!(handle.request_count("SubscribeToShard") >= 5);

    // Deregistration behind the client's back.
    handle.deregister_consumer("c", "faults").unwrap();
    let err = timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .expect_err("consumer gone");
    assert!(err.into_service_error().is_resource_not_found_exception());
    emu.shutdown().await;
}

#[tokio::test]
async fn silenced_subscriptions_send_nothing_and_latency_delays_responses() {
    let emu = Emulator::builder()
        .stream("silence", 1)
        .consumer_activation_delay(Duration::ZERO)
        .idle_event_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let handle = emu.handle();
    let client = client(&emu);
    let consumer = active_consumer(&client, "silence", "c").await;
    let mut events = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::Latest, None),
    )
    .await;
    next_event(&mut events).await;
    handle.silence_subscriptions(true);
    // Drain an event that may have been in flight, then expect silence.
    let _ = timeout(Duration::from_millis(150), events.recv()).await;
    put(&client, "silence", "k", "quiet").await;
    assert!(
        timeout(Duration::from_millis(600), events.recv())
            .await
            .is_err(),
        "event while silenced"
    );
    handle.silence_subscriptions(false);
    let event = next_event(&mut events).await;
    assert_eq!(event.records().len(), 1);

    handle.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    client.list_streams().send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    handle.set_latency(Duration::ZERO);
    emu.shutdown().await;
}

#[tokio::test]
async fn control_endpoint_applies_faults_over_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let emu = Emulator::builder()
        .stream("control", 1)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let body = r#"{"action":"fail_next","operation":"ListStreams","count":1,"error_type":"ResourceInUseException"}"#;
    let mut socket = tokio::net::TcpStream::connect(emu.local_addr())
        .await
        .unwrap();
    let request = format!(
        "POST /_emulator/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    timeout(DEADLINE, socket.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let err = client.list_streams().send().await.expect_err("injected");
    assert_eq!(
        err.into_service_error().meta().code(),
        Some("ResourceInUseException")
    );
    client.list_streams().send().await.unwrap();
    emu.shutdown().await;
}
