//! Ingest against the project's emulator, through the real aws-sdk-kinesis client: every
//! record arrives exactly once and in sequence order per shard, whatever the upstream does.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use kinesis_emulator::EndMode;
use kinesis_relay::{embedded::client_for, ingest::InitialPosition};
use kinesis_relay_api::{
    kpl,
    v1::{self, SubscribeRequest, subscribe_request::StartingPosition, subscribe_response::Event},
};

fn earliest(stream: &str) -> SubscribeRequest {
    SubscribeRequest {
        stream: stream.into(),
        starting_position: Some(StartingPosition::Earliest(v1::Earliest {})),
        ..Default::default()
    }
}

/// Produces `n` records in `batches` PutRecords calls spread over time while `during` runs.
async fn produce_while(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    prefix: &str,
    n: usize,
    batches: usize,
) -> Vec<String> {
    let records = numbered(prefix, n, 16);
    let per_batch = n.div_ceil(batches);
    for chunk in records.chunks(per_batch) {
        put(kinesis, stream, chunk).await;
        tokio::time::sleep(Duration::from_millis(50)).await; // pacing the producer, not synchronising
    }
    records
        .into_iter()
        .map(|(_, data)| String::from_utf8(data).unwrap())
        .collect()
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[tokio::test]
async fn continuous_production_across_many_renewals_arrives_exactly_once_in_order() {
    let emulator = fast_emulator()
        .subscription_lifetime(Duration::from_millis(700))
        .stream("renewals", 3)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["renewals"])).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("renewals")).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let renewals_before = emulator.handle().request_count("SubscribeToShard");
    let sent = produce_while(&kinesis, "renewals", "renewal", 3000, 60).await;
    let delivery = receive(&mut subscription, sent.len()).await;
    let got = check_order(&delivery.records);
    assert_eq!(sorted(got), sorted(sent));
    let renewals = emulator.handle().request_count("SubscribeToShard") - renewals_before;
    assert!(
        renewals >= 6,
        "the subscriptions were renewed only {renewals} times"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn split_then_merge_while_producing_keeps_parents_before_children() {
    let emulator = fast_emulator().stream("reshard", 1).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&["reshard"])).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("reshard")).await;
    let kinesis = client_for(&emulator.endpoint_url());

    let mut sent = produce_while(&kinesis, "reshard", "before-split", 200, 4).await;
    kinesis
        .split_shard()
        .stream_name("reshard")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    let open = |kinesis: aws_sdk_kinesis::Client| async move {
        let shards = kinesis
            .list_shards()
            .stream_name("reshard")
            .send()
            .await
            .unwrap();
        shards
            .shards()
            .iter()
            .filter(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .map(|s| s.shard_id().to_owned())
            .collect::<Vec<_>>()
    };
    eventually("two open children after the split", || {
        let kinesis = kinesis.clone();
        async move { open(kinesis).await.len() == 2 }
    })
    .await;
    sent.extend(produce_while(&kinesis, "reshard", "after-split", 200, 4).await);
    let mut children = open(kinesis.clone()).await;
    children.sort();
    kinesis
        .merge_shards()
        .stream_name("reshard")
        .shard_to_merge(&children[0])
        .adjacent_shard_to_merge(&children[1])
        .send()
        .await
        .expect("MergeShards");
    eventually("one open shard after the merge", || {
        let kinesis = kinesis.clone();
        async move { open(kinesis).await.len() == 1 }
    })
    .await;
    sent.extend(produce_while(&kinesis, "reshard", "after-merge", 200, 4).await);

    let delivery = receive(&mut subscription, sent.len()).await;
    let got = check_order(&delivery.records);
    assert_eq!(sorted(got.clone()), sorted(sent));
    // Delivery order: every parent record before any child record, every split child record
    // before any merged record.
    let phase = |data: &str| match data {
        d if d.starts_with("before-split") => 0,
        d if d.starts_with("after-split") => 1,
        _ => 2,
    };
    let phases: Vec<_> = got.iter().map(|d| phase(d)).collect();
    assert!(
        phases.windows(2).all(|w| w[0] <= w[1]),
        "parent records must come before children's"
    );
    let ended = delivery
        .events
        .iter()
        .filter(|e| matches!(e, Event::ShardEvent(s) if s.kind == v1::ShardEventKind::Ended as i32))
        .count();
    let started = delivery
        .events
        .iter()
        .filter(
            |e| matches!(e, Event::ShardEvent(s) if s.kind == v1::ShardEventKind::Started as i32),
        )
        .count();
    assert_eq!(
        ended, 3,
        "the parent and both split children end: {:?}",
        delivery.events
    );
    assert_eq!(
        started, 3,
        "both children and the merged shard start: {:?}",
        delivery.events
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// Runs `fault` while records flow and checks that every record still arrives once.
async fn survives(stream: &str, fault: impl AsyncFnOnce(&kinesis_emulator::Emulator)) {
    let emulator = fast_emulator().stream(stream, 2).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&[stream])).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest(stream)).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut sent = produce_while(&kinesis, stream, "before", 300, 3).await;
    fault(&emulator).await;
    sent.extend(produce_while(&kinesis, stream, "after", 300, 3).await);
    let delivery = receive(&mut subscription, sent.len()).await;
    assert_eq!(sorted(check_order(&delivery.records)), sorted(sent));
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn subscriptions_ended_with_an_error_event_recover() {
    survives("fault-error-event", async |emulator| {
        emulator.handle().end_all_subscriptions(EndMode::ErrorEvent);
    })
    .await;
}

#[tokio::test]
async fn dropped_connections_recover() {
    survives("fault-drop", async |emulator| {
        emulator
            .handle()
            .end_all_subscriptions(EndMode::DropConnection);
    })
    .await;
}

#[tokio::test]
async fn resource_in_use_and_throttling_are_waited_out() {
    survives("fault-in-use", async |emulator| {
        let handle = emulator.handle();
        handle.fail_next("SubscribeToShard", 2, "ResourceInUseException");
        handle.fail_next("SubscribeToShard", 2, "LimitExceededException");
        handle.end_all_subscriptions(EndMode::ErrorEvent);
    })
    .await;
}

#[tokio::test]
async fn a_silent_subscription_is_renewed_by_the_watchdog() {
    survives("fault-silent", async |emulator| {
        let handle = emulator.handle();
        let before = handle.request_count("SubscribeToShard");
        handle.silence_subscriptions(true);
        // The watchdog (3 s in tests) must resubscribe on its own.
        eventually("the watchdog to resubscribe", || async {
            handle.request_count("SubscribeToShard") >= before + 2
        })
        .await;
        handle.silence_subscriptions(false);
    })
    .await;
}

#[tokio::test]
async fn a_consumer_deregistered_behind_our_back_is_registered_again() {
    survives("fault-deregistered", async |emulator| {
        let handle = emulator.handle();
        let before = handle.request_count("RegisterStreamConsumer");
        handle
            .deregister_consumer("relay-test", "fault-deregistered")
            .unwrap();
        eventually("the consumer to be registered again", || async {
            handle.request_count("RegisterStreamConsumer") > before
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn an_upstream_outage_is_survived() {
    let emulator = fast_emulator().stream("outage", 2).start().await.unwrap();
    let proxy = Proxy::start(emulator.local_addr()).await;
    let relay = kinesis_relay::start(fast_config(&["outage"]), client_for(&proxy.url()))
        .await
        .unwrap();
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("outage")).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut sent = produce_while(&kinesis, "outage", "before", 200, 2).await;
    proxy.cut();
    // Records written while the relay cannot reach the upstream.
    sent.extend(produce_while(&kinesis, "outage", "during", 200, 2).await);
    eventually("the relay to notice the outage", || async {
        relay.hubs[0].view().status() == v1::StreamStatus::Degraded
    })
    .await;
    proxy.restore();
    sent.extend(produce_while(&kinesis, "outage", "after", 200, 2).await);
    let delivery = receive(&mut subscription, sent.len()).await;
    assert_eq!(sorted(check_order(&delivery.records)), sorted(sent));
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn two_relays_with_one_consumer_name_fight_over_shards_but_lose_nothing() {
    let emulator = fast_emulator().stream("takeover", 1).start().await.unwrap();
    let first = start_relay(&emulator, fast_config(&["takeover"])).await;
    wait_active(&first).await;
    let second = start_relay(&emulator, fast_config(&["takeover"])).await;
    let mut grpc = connect(first.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("takeover")).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let sent = produce_while(&kinesis, "takeover", "contested", 400, 20).await;
    let delivery = receive(&mut subscription, sent.len()).await;
    assert_eq!(sorted(check_order(&delivery.records)), sorted(sent));
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_restarted_relay_resumes_after_its_checkpoint() {
    let emulator = fast_emulator().stream("restart", 2).start().await.unwrap();
    let state_dir = std::env::temp_dir().join(format!("relay-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut config = fast_config(&["restart"]);
    config.ingest.state_dir = Some(state_dir.clone());
    let relay = start_relay(&emulator, config.clone()).await;
    wait_active(&relay).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let first = produce_while(&kinesis, "restart", "first-run", 100, 2).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("restart")).await;
    receive(&mut subscription, first.len()).await;
    relay.shutdown().await.unwrap();

    let second = produce_while(&kinesis, "restart", "while-down", 100, 2).await;
    // LATEST would skip what was written while the relay was down: the checkpoint wins.
    config.ingest.initial_position = InitialPosition::Latest;
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("restart")).await;
    let delivery = receive(&mut subscription, second.len()).await;
    assert_eq!(sorted(check_order(&delivery.records)), sorted(second));
    let held: usize = relay.hubs[0]
        .view()
        .shards()
        .map(|shard| shard.records_held())
        .sum();
    assert_eq!(held, 100, "the first run's records are not read again");
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    std::fs::remove_dir_all(&state_dir).unwrap();
}

#[tokio::test]
async fn kpl_aggregates_are_unpacked_and_corrupt_ones_passed_on_raw() {
    let emulator = fast_emulator().stream("kpl", 1).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&["kpl"])).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(&mut grpc, earliest("kpl")).await;
    let users: Vec<_> = (0..5)
        .map(|i| kpl::UserRecord {
            partition_key: format!("user-{i}"),
            explicit_hash_key: (i == 2).then(|| "12345".to_owned()),
            data: Bytes::from(format!("user-data-{i}")),
        })
        .collect();
    let aggregate = kpl::aggregate(&users).to_vec();
    let mut corrupt = aggregate.clone();
    *corrupt.last_mut().unwrap() ^= 0x55;
    let kinesis = client_for(&emulator.endpoint_url());
    put(
        &kinesis,
        "kpl",
        &[
            ("outer".into(), aggregate),
            ("outer".into(), corrupt.clone()),
        ],
    )
    .await;
    let delivery = receive(&mut subscription, 6).await;
    check_order(&delivery.records);
    for (i, received) in delivery.records[..5].iter().enumerate() {
        assert_eq!(received.record.sub_sequence_number, Some(i as u64));
        assert_eq!(received.record.partition_key, format!("user-{i}"));
        assert_eq!(
            received.record.data.as_ref(),
            format!("user-data-{i}").as_bytes()
        );
    }
    assert_eq!(delivery.records[2].record.explicit_hash_key, "12345");
    let raw = &delivery.records[5].record;
    assert_eq!(raw.sub_sequence_number, None);
    assert_eq!(raw.partition_key, "outer");
    assert_eq!(raw.data.as_ref(), corrupt.as_slice());
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}
