//! Positions older than the relay's ring are read from Kinesis (GetRecords) and joined to
//! the live records with no gap and no repeat: cursors, timestamps, trim_horizon, relay
//! restarts, shared readers, throttling, expired iterators and expired positions.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::*;
use kinesis_relay::{
    catchup::budget::Rates, embedded::client_for, hub::RingLimits, ingest::InitialPosition,
};
use kinesis_relay_api::{
    resume::cursor_of,
    v1::{self, SubscribeRequest, subscribe_request::StartingPosition, subscribe_response::Event},
};

fn request(stream: &str, start: StartingPosition) -> SubscribeRequest {
    SubscribeRequest {
        stream: stream.into(),
        starting_position: Some(start),
        ..Default::default()
    }
}

fn after(stream: &str, cursor: &str) -> SubscribeRequest {
    request(stream, StartingPosition::AfterCursor(cursor.into()))
}

/// A ring so small that a few hundred records overrun it.
fn small_ring() -> RingLimits {
    RingLimits {
        max_bytes: 16 << 10,
        max_age: Duration::from_secs(600),
    }
}

/// An emulator holding `stream` (one shard, no write limits: tests write bursts) and a
/// relay on it.
async fn relay_on_unlimited_shard(
    stream: &str,
    config: kinesis_relay::RelayConfig,
) -> (kinesis_emulator::Emulator, kinesis_relay::RunningRelay) {
    let emulator = fast_emulator()
        .limits(false)
        .stream(stream, 1)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    (emulator, relay)
}

fn data(records: &[Received]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.record.data).into_owned())
        .collect()
}

fn texts(sent: &[(String, Vec<u8>)]) -> Vec<String> {
    sent.iter()
        .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
        .collect()
}

/// Waits until the ring no longer holds the first record of the stream.
async fn wait_overrun(relay: &kinesis_relay::RunningRelay) {
    eventually("the ring to drop the oldest records", || async {
        relay.hubs[0]
            .view()
            .shards()
            .all(|shard| shard.oldest_index() > 0)
    })
    .await;
}

#[tokio::test]
async fn a_cursor_older_than_the_ring_resumes_from_kinesis_exactly_once() {
    let mut config = fast_config(&["past-ring"]);
    config.rings = small_ring();
    let (emulator, relay) = relay_on_unlimited_shard("past-ring", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    let first = numbered("first", 30, 4);
    put(&kinesis, "past-ring", &first).await;
    let mut subscription = subscribe(
        &mut grpc,
        request("past-ring", StartingPosition::Earliest(v1::Earliest {})),
    )
    .await;
    let seen = receive(&mut subscription, 15).await;
    drop(subscription);
    let second = numbered("second", 1500, 4);
    put(&kinesis, "past-ring", &second).await;
    wait_overrun(&relay).await;

    let expected: Vec<String> = texts(&first)
        .into_iter()
        .chain(texts(&second))
        .skip(seen.records.len())
        .collect();
    // More records arrive while it catches up: the ring's floor moves under it, and it
    // keeps reading Kinesis until the ring holds what follows.
    let during = numbered("during", 1500, 4);
    let writer = {
        let kinesis = kinesis.clone();
        let during = during.clone();
        tokio::spawn(async move {
            for chunk in during.chunks(100) {
                put(&kinesis, "past-ring", chunk).await;
            }
        })
    };
    let expected: Vec<String> = expected.into_iter().chain(texts(&during)).collect();
    let mut resumed = subscribe(&mut grpc, after("past-ring", &seen.last_cursor)).await;
    let delivery = receive(&mut resumed, expected.len()).await;
    writer.await.unwrap();
    check_order(&delivery.records);
    assert_eq!(
        data(&delivery.records),
        expected,
        "every record once, in order"
    );
    // Live records follow the caught-up ones.
    let live = numbered("live", 10, 2);
    put(&kinesis, "past-ring", &live).await;
    let delivery = receive(&mut resumed, live.len()).await;
    assert_eq!(data(&delivery.records), texts(&live));
    assert!(
        relay.catch_ups[0]
            .counters
            .readers_started
            .load(Ordering::Relaxed)
            >= 1
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_behind_the_ring_catches_up_under_the_default_policy() {
    let mut config = fast_config(&["slow-reader"]);
    config.rings = small_ring();
    let (emulator, relay) = relay_on_unlimited_shard("slow-reader", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(
        &mut grpc,
        request("slow-reader", StartingPosition::Latest(v1::Latest {})),
    )
    .await;
    // The subscription is open once it sent its first heartbeat.
    tokio::time::timeout(DEADLINE, subscription.message())
        .await
        .expect("a heartbeat")
        .unwrap();
    // The subscriber reads nothing while far more than the ring holds is written.
    let sent = numbered("burst", 1500, 4);
    put(&kinesis, "slow-reader", &sent).await;
    wait_overrun(&relay).await;
    let delivery = receive(&mut subscription, sent.len()).await;
    check_order(&delivery.records);
    assert_eq!(data(&delivery.records), texts(&sent));
    assert!(
        !delivery
            .events
            .iter()
            .any(|event| matches!(event, Event::Gap(_))),
        "no gap under LAG_POLICY_CATCH_UP"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn trim_horizon_and_timestamps_reach_closed_shards_parents_first() {
    let emulator = fast_emulator().stream("history", 1).start().await.unwrap();
    let kinesis = client_for(&emulator.endpoint_url());
    let before = numbered("before-split", 60, 4);
    put(&kinesis, "history", &before).await;
    let split_at = std::time::SystemTime::now();
    kinesis
        .split_shard()
        .stream_name("history")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    let after_split = numbered("after-split", 60, 8);
    put(&kinesis, "history", &after_split).await;
    kinesis
        .merge_shards()
        .stream_name("history")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .expect("MergeShards");
    let after_merge = numbered("after-merge", 60, 8);
    put(&kinesis, "history", &after_merge).await;
    // A relay started now holds none of it: every shard is read from Kinesis.
    let mut config = fast_config(&["history"]);
    config.ingest.initial_position = InitialPosition::Latest;
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;

    let all: Vec<String> = [&before, &after_split, &after_merge]
        .into_iter()
        .flat_map(|records| texts(records))
        .collect();
    let mut horizon = subscribe(
        &mut grpc,
        request("history", StartingPosition::TrimHorizon(v1::TrimHorizon {})),
    )
    .await;
    let delivery = receive(&mut horizon, all.len()).await;
    check_order(&delivery.records);
    assert_parents_first(&delivery.records);
    let mut got = data(&delivery.records);
    got.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(got, want, "every record of every shard exactly once");
    let ended: Vec<String> = delivery
        .events
        .iter()
        .filter_map(|event| match event {
            Event::ShardEvent(e) if e.kind == v1::ShardEventKind::Ended as i32 => {
                Some(e.shard_id.clone())
            }
            _ => None,
        })
        .collect();
    assert!(ended.contains(&"shardId-000000000000".to_owned()));
    // DescribeStream says how far back Kinesis reaches.
    let described = grpc
        .describe_stream(v1::DescribeStreamRequest {
            stream: "history".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.upstream_retention_hours, 24);
    let oldest = described
        .upstream_oldest_timestamp
        .expect("a retention start");
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(24 * 3600);
    let oldest = std::time::SystemTime::try_from(oldest).unwrap();
    assert!(oldest.duration_since(day_ago).unwrap_or_default() < Duration::from_secs(60));

    let mut since_split = subscribe(
        &mut grpc,
        request("history", StartingPosition::AtTimestamp(split_at.into())),
    )
    .await;
    let expected = after_split.len() + after_merge.len();
    let delivery = receive(&mut since_split, expected).await;
    check_order(&delivery.records);
    assert_parents_first(&delivery.records);
    assert!(
        data(&delivery.records)
            .iter()
            .all(|text| !text.starts_with("before-split")),
        "nothing from before the timestamp"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// Records of shard 0 come before those of its children (1, 2), which come before those
/// of the merged shard 3.
fn assert_parents_first(records: &[Received]) {
    let generation = |shard: &str| match shard {
        "shardId-000000000000" => 0,
        "shardId-000000000001" | "shardId-000000000002" => 1,
        _ => 2,
    };
    let mut highest = 0;
    for received in records {
        let generation = generation(&received.shard_id);
        assert!(
            generation >= highest,
            "a record of {} came after a child's",
            received.shard_id
        );
        highest = generation;
    }
}

#[tokio::test]
async fn a_hundred_subscribers_from_one_cursor_share_one_reader() {
    let mut config = fast_config(&["shared"]);
    config.rings = small_ring();
    // Small calls, so that a read takes many of them and sharing shows in the count.
    config.catch_up.records_per_call = 100;
    let (emulator, relay) = relay_on_unlimited_shard("shared", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    put(&kinesis, "shared", &numbered("early", 20, 2)).await;
    let mut subscription = subscribe(
        &mut grpc,
        request("shared", StartingPosition::Earliest(v1::Earliest {})),
    )
    .await;
    let cursor = receive(&mut subscription, 20).await.last_cursor;
    drop(subscription);
    let sent = numbered("shared", 1000, 4);
    put(&kinesis, "shared", &sent).await;
    wait_overrun(&relay).await;
    let emulator_handle = emulator.handle();
    let catch_up = relay.catch_ups[0].clone();

    // One subscriber alone: the calls its catch-up takes.
    let calls_before = emulator_handle.request_count("GetRecords");
    let mut alone = subscribe(&mut grpc, after("shared", &cursor)).await;
    assert_eq!(
        data(&receive(&mut alone, sent.len()).await.records),
        texts(&sent)
    );
    drop(alone);
    let one = emulator_handle.request_count("GetRecords") - calls_before;
    eventually("the first reader to stop", || async {
        catch_up.counters.readers_running.load(Ordering::Relaxed) == 0
    })
    .await;

    // A hundred at once from the same cursor.
    let calls_before = emulator_handle.request_count("GetRecords");
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(subscribe(&mut grpc, after("shared", &cursor)).await);
    }
    // Read together: unread streams would fill the connection's flow-control window.
    let deliveries =
        futures::future::join_all(streams.iter_mut().map(|stream| receive(stream, sent.len())))
            .await;
    for delivery in deliveries {
        assert_eq!(data(&delivery.records), texts(&sent));
    }
    let hundred = emulator_handle.request_count("GetRecords") - calls_before;
    assert!(
        hundred as f64 <= one as f64 * 1.1 + 1.0,
        "100 subscribers made {hundred} GetRecords calls, one alone {one}"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_reader_stops_fetching_where_the_ring_takes_over() {
    let mut config = fast_config(&["hand-over"]);
    // Holds about the newer half of what is written below.
    config.rings = RingLimits {
        max_bytes: 4 << 20,
        max_age: Duration::from_secs(600),
    };
    config.catch_up.records_per_call = 50;
    // Room to read the whole shard ahead of a subscriber that is slow.
    config.catch_up.buffer_bytes = 64 << 20;
    // No budget to pace the reader: it would read to the shard's tip at once.
    config.catch_up.rates = Rates {
        calls: 1e6,
        bytes: 1e12,
    };
    let (emulator, relay) = relay_on_unlimited_shard("hand-over", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    // Records of 8 KiB: the subscriber's flow-control window (2 MiB) fills with a few
    // hundred of them, so its reader runs ahead of it.
    let sent: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|i| (format!("key-{}", i % 4), format!("{i:0>8192}").into_bytes()))
        .collect();
    put(&kinesis, "hand-over", &sent).await;
    // Measured once every record has reached the ring (the first eviction can come while the
    // ingest is still appending): the ring then holds the newer part, within its budget.
    eventually("every record to reach the ring", || async {
        let view = relay.hubs[0].view();
        view.shards().map(|shard| shard.end_index()).sum::<u64>() == sent.len() as u64
    })
    .await;
    wait_overrun(&relay).await;
    let not_held = relay.hubs[0]
        .view()
        .shards()
        .map(|shard| shard.oldest_index())
        .sum::<u64>();
    assert!(
        (100..900).contains(&not_held),
        "the ring should hold part of the records, not {} of 1000",
        1000 - not_held
    );
    let emulator_handle = emulator.handle();
    let calls_before = emulator_handle.request_count("GetRecords");
    let mut subscription = subscribe(
        &mut grpc,
        request(
            "hand-over",
            StartingPosition::TrimHorizon(v1::TrimHorizon {}),
        ),
    )
    .await;
    // The subscriber reads nothing until its reader has fetched what the ring lacks and
    // stopped there.
    let catch_up = relay.catch_ups[0].clone();
    eventually("the reader to hand over to the ring", || async {
        catch_up.counters.handed_over.load(Ordering::Relaxed) == 1
    })
    .await;
    let delivery = receive(&mut subscription, sent.len()).await;
    assert_eq!(data(&delivery.records), texts(&sent), "every record once");
    drop(subscription);
    eventually("the reader to stop", || async {
        catch_up.counters.readers_running.load(Ordering::Relaxed) == 0
    })
    .await;
    // The records the ring does not hold, 50 per call, and one call for the record at
    // the seam; reading on would take the shard's other records and its tip too.
    let calls = emulator_handle.request_count("GetRecords") - calls_before;
    let needed = not_held.div_ceil(50) + 1;
    assert!(
        calls <= needed,
        "the reader made {calls} GetRecords calls; {not_held} records were not in the ring, {needed} calls at most were needed"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn throttling_and_expired_iterators_lose_nothing() {
    let mut config = fast_config(&["faulty"]);
    config.rings = small_ring();
    config.catch_up.records_per_call = 200;
    let (emulator, relay) = relay_on_unlimited_shard("faulty", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    put(&kinesis, "faulty", &numbered("early", 10, 2)).await;
    let mut subscription = subscribe(
        &mut grpc,
        request("faulty", StartingPosition::Earliest(v1::Earliest {})),
    )
    .await;
    let cursor = receive(&mut subscription, 10).await.last_cursor;
    drop(subscription);
    let sent = numbered("faulty", 1200, 4);
    put(&kinesis, "faulty", &sent).await;
    wait_overrun(&relay).await;
    let handle = emulator.handle();
    handle.fail_next("GetRecords", 4, "ProvisionedThroughputExceededException");
    handle.fail_next("GetRecords", 2, "ExpiredIteratorException");
    handle.fail_next("GetRecords", 2, "InternalFailure");
    let mut resumed = subscribe(&mut grpc, after("faulty", &cursor)).await;
    let delivery = receive(&mut resumed, sent.len()).await;
    check_order(&delivery.records);
    assert_eq!(data(&delivery.records), texts(&sent));
    let counters = &relay.catch_ups[0].counters;
    assert!(counters.expired_iterators.load(Ordering::Relaxed) >= 1);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_restarted_relay_serves_cursors_issued_before_it() {
    let emulator = fast_emulator().stream("rolling", 2).start().await.unwrap();
    let state_dir = std::env::temp_dir().join(format!("relay-catch-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut config = fast_config(&["rolling"]);
    config.ingest.state_dir = Some(state_dir.clone());
    let relay = start_relay(&emulator, config.clone()).await;
    wait_active(&relay).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let first = numbered("first", 200, 8);
    put(&kinesis, "rolling", &first).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(
        &mut grpc,
        SubscribeRequest {
            max_records_per_batch: 10,
            ..request("rolling", StartingPosition::Earliest(v1::Earliest {}))
        },
    )
    .await;
    let seen = receive(&mut subscription, 50).await;
    // The relay read all 200 (its checkpoint says so) while the client took 50 or so.
    eventually("the relay to read every record", || async {
        relay.hubs[0]
            .view()
            .shards()
            .map(|shard| shard.records_held())
            .sum::<usize>()
            == first.len()
    })
    .await;
    drop(subscription);
    relay.shutdown().await.unwrap();
    let second = numbered("second", 100, 8);
    put(&kinesis, "rolling", &second).await;

    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut resumed = subscribe(&mut grpc, after("rolling", &seen.last_cursor)).await;
    let want = first.len() + second.len() - seen.records.len();
    let delivery = receive(&mut resumed, want).await;
    check_order(&delivery.records);
    let mut got: Vec<String> = data(&seen.records)
        .into_iter()
        .chain(data(&delivery.records))
        .collect();
    got.sort();
    let mut all: Vec<String> = texts(&first).into_iter().chain(texts(&second)).collect();
    all.sort();
    assert_eq!(got, all, "no gap and no repeat across the restart");
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    std::fs::remove_dir_all(&state_dir).unwrap();
}

#[tokio::test]
async fn an_expired_position_is_a_gap_under_skip_and_out_of_range_otherwise() {
    let mut config = fast_config(&["expiring"]);
    // Nothing stays in the ring: every resume reads Kinesis.
    config.rings = RingLimits {
        max_bytes: 1 << 20,
        max_age: Duration::from_millis(200),
    };
    let (emulator, relay) = relay_on_unlimited_shard("expiring", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let handle = emulator.handle();
    let mut grpc = connect(relay.local_addr).await;
    let old = numbered("old", 50, 2);
    let mut subscription = subscribe(
        &mut grpc,
        SubscribeRequest {
            max_records_per_batch: 1,
            ..request("expiring", StartingPosition::Latest(v1::Latest {}))
        },
    )
    .await;
    tokio::time::timeout(DEADLINE, subscription.message())
        .await
        .expect("a heartbeat")
        .unwrap();
    put(&kinesis, "expiring", &old).await;
    // The cursor covers half of the old records.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    while seen.len() < 20 {
        let delivery = receive(&mut subscription, 1).await;
        seen.extend(delivery.records);
        cursor = delivery.last_cursor;
    }
    drop(subscription);
    // The old records age to the edge of the retention (24 h), new ones come, then the old
    // ones pass it.
    handle
        .age_records("expiring", Duration::from_secs(24 * 3600 - 60))
        .unwrap();
    let new = numbered("new", 30, 2);
    put(&kinesis, "expiring", &new).await;
    handle
        .age_records("expiring", Duration::from_secs(120))
        .unwrap();
    assert_eq!(handle.stored_records("expiring").unwrap(), new.len());
    eventually("the ring to be empty", || async {
        relay.hubs[0]
            .view()
            .shards()
            .all(|shard| shard.records_held() == 0)
    })
    .await;

    // SKIP: a gap, then the oldest records Kinesis holds.
    let mut skipping = subscribe(
        &mut grpc,
        SubscribeRequest {
            on_lag: v1::LagPolicy::Skip as i32,
            ..after("expiring", &cursor)
        },
    )
    .await;
    let delivery = receive(&mut skipping, new.len()).await;
    assert_eq!(data(&delivery.records), texts(&new));
    let gap = delivery
        .events
        .iter()
        .find_map(|event| match event {
            Event::Gap(gap) => Some(gap.clone()),
            _ => None,
        })
        .expect("a gap before the records");
    assert_eq!(gap.reason, v1::GapReason::UpstreamExpired as i32);

    // DISCONNECT: OUT_OF_RANGE, with a cursor that resumes at the oldest record held.
    let mut strict = subscribe(
        &mut grpc,
        SubscribeRequest {
            on_lag: v1::LagPolicy::Disconnect as i32,
            ..after("expiring", &cursor)
        },
    )
    .await;
    let status = loop {
        match tokio::time::timeout(DEADLINE, strict.message())
            .await
            .unwrap()
        {
            Ok(Some(message)) => assert!(
                !matches!(message.event, Some(Event::Records(_))),
                "no record before the status"
            ),
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("retention"),
        "{}",
        status.message()
    );
    let resume = cursor_of(&status).expect("a resume cursor");
    // Its position names no record; where Kinesis refuses an iterator there, the relay
    // reads from the oldest record instead.
    handle.fail_next("GetShardIterator", 1, "InvalidArgumentException");
    let mut resumed = subscribe(&mut grpc, after("expiring", &resume)).await;
    let delivery = receive(&mut resumed, new.len()).await;
    assert_eq!(data(&delivery.records), texts(&new));
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_subscribe_while_the_stream_is_starting_waits_and_then_streams() {
    let emulator = fast_emulator()
        .consumer_activation_delay(Duration::from_secs(2))
        .stream("slow-start", 1)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["slow-start"])).await;
    assert_eq!(
        relay.hubs[0].view().status(),
        v1::StreamStatus::Starting,
        "the consumer is still CREATING"
    );
    let mut grpc = connect(relay.local_addr).await;
    let mut subscription = subscribe(
        &mut grpc,
        request("slow-start", StartingPosition::Latest(v1::Latest {})),
    )
    .await;
    let first = tokio::time::timeout(DEADLINE, subscription.message())
        .await
        .expect("a response")
        .expect("no error while starting")
        .expect("open");
    assert!(matches!(first.event, Some(Event::Heartbeat(_))));
    wait_active(&relay).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let sent = numbered("started", 20, 2);
    put(&kinesis, "slow-start", &sent).await;
    let delivery = receive(&mut subscription, sent.len()).await;
    assert_eq!(data(&delivery.records), texts(&sent));
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn catch_up_resumes_inside_a_kpl_aggregate_and_applies_filters() {
    use bytes::Bytes;
    use kinesis_relay_api::kpl;

    let mut config = fast_config(&["kpl-catch-up"]);
    // Holds the aggregates until the plain records overrun it.
    config.rings = RingLimits {
        max_bytes: 64 << 10,
        ..small_ring()
    };
    let (emulator, relay) = relay_on_unlimited_shard("kpl-catch-up", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    let aggregates: Vec<(String, Vec<u8>)> = (0..3)
        .map(|a| {
            let users: Vec<_> = (0..20)
                .map(|u| kpl::UserRecord {
                    partition_key: format!("user-{u}"),
                    explicit_hash_key: None,
                    data: Bytes::from(format!("agg-{a}-user-{u}")),
                })
                .collect();
            ("outer".to_owned(), kpl::aggregate(&users).to_vec())
        })
        .collect();
    put(&kinesis, "kpl-catch-up", &aggregates).await;
    let mut subscription = subscribe(
        &mut grpc,
        SubscribeRequest {
            max_records_per_batch: 7,
            ..request("kpl-catch-up", StartingPosition::Earliest(v1::Earliest {}))
        },
    )
    .await;
    let seen = receive(&mut subscription, 30).await;
    drop(subscription);
    let last = &seen.records.last().unwrap().record;
    assert!(
        last.sub_sequence_number.is_some_and(|sub| sub < 19),
        "the cursor stops inside an aggregate"
    );
    let plain = numbered("plain", 1500, 4);
    put(&kinesis, "kpl-catch-up", &plain).await;
    wait_overrun(&relay).await;

    let users: Vec<String> = (0..3)
        .flat_map(|a| (0..20).map(move |u| format!("agg-{a}-user-{u}")))
        .collect();
    let expected: Vec<String> = users
        .into_iter()
        .chain(texts(&plain))
        .skip(seen.records.len())
        .collect();
    let mut resumed = subscribe(&mut grpc, after("kpl-catch-up", &seen.last_cursor)).await;
    let delivery = receive(&mut resumed, expected.len()).await;
    check_order(&delivery.records);
    assert_eq!(data(&delivery.records), expected);

    // The subscriber's partition-key filter applies to records read from Kinesis too.
    let mut filtered = subscribe(
        &mut grpc,
        SubscribeRequest {
            partition_keys: vec!["key-1".into()],
            ..after("kpl-catch-up", &seen.last_cursor)
        },
    )
    .await;
    let want: Vec<String> = plain
        .iter()
        .filter(|(key, _)| key == "key-1")
        .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
        .collect();
    let delivery = receive(&mut filtered, want.len()).await;
    assert_eq!(data(&delivery.records), want);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn heartbeats_report_progress_while_records_come_from_kinesis() {
    let mut config = fast_config(&["progress"]);
    config.rings = small_ring();
    // A slow catch-up: two calls a second of 100 records.
    config.catch_up.records_per_call = 100;
    config.catch_up.rates.calls = 2.0;
    let (emulator, relay) = relay_on_unlimited_shard("progress", config).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut grpc = connect(relay.local_addr).await;
    put(&kinesis, "progress", &numbered("early", 10, 2)).await;
    let mut subscription = subscribe(
        &mut grpc,
        request("progress", StartingPosition::Earliest(v1::Earliest {})),
    )
    .await;
    let cursor = receive(&mut subscription, 10).await.last_cursor;
    drop(subscription);
    let sent = numbered("progress", 600, 4);
    put(&kinesis, "progress", &sent).await;
    wait_overrun(&relay).await;
    let mut resumed = subscribe(&mut grpc, after("progress", &cursor)).await;
    let delivery = receive(&mut resumed, sent.len()).await;
    assert_eq!(data(&delivery.records), texts(&sent));
    let behind: Vec<i64> = delivery
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Heartbeat(heartbeat) => heartbeat.shards.first().map(|s| s.millis_behind_latest),
            _ => None,
        })
        .collect();
    assert!(
        behind.iter().any(|&millis| millis > 0),
        "heartbeats while catching up say how far behind the tip it is: {behind:?}"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}
