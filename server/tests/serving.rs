//! Serving through real gRPC connections: filters, starting positions, slow subscribers,
//! resume with cursors, request validation, shutdown.

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use common::*;
use kinesis_relay::{embedded::client_for, hub::RingLimits};
use kinesis_relay_api::resume::cursor_of;
use kinesis_relay_api::v1::{
    self, SubscribeRequest, SubscribeResponse, subscribe_request::StartingPosition,
    subscribe_response::Event,
};
use tonic::{Code, Streaming};

fn request(stream: &str, start: StartingPosition) -> SubscribeRequest {
    SubscribeRequest {
        stream: stream.into(),
        starting_position: Some(start),
        ..Default::default()
    }
}

fn earliest() -> StartingPosition {
    StartingPosition::Earliest(v1::Earliest {})
}

/// Reads until a heartbeat and returns the records seen before it: all records were written
/// before the call, so anything extra would arrive first.
async fn records_until_heartbeat(stream: &mut Streaming<SubscribeResponse>) -> usize {
    let mut extra = 0;
    loop {
        let message = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("a heartbeat comes when idle")
            .unwrap()
            .unwrap();
        match message.event {
            Some(Event::Heartbeat(_)) => return extra,
            Some(Event::Records(batch)) => extra += batch.records.len(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn subscribers_with_different_filters_and_starts_get_exactly_their_records() {
    let emulator = fast_emulator().stream("filters", 4).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&["filters"])).await;
    wait_active(&relay).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let first = numbered("first", 200, 16);
    put(&kinesis, "filters", &first).await;
    wait_held(&relay, "filters", 200).await;
    let between = SystemTime::now();
    eventually("the clock to move past the first batch", || async {
        SystemTime::now() > between
    })
    .await;

    let mut grpc = connect(relay.local_addr).await;
    let shard0 = "shardId-000000000000".to_owned();
    let mut all = subscribe(&mut grpc, request("filters", earliest())).await;
    let mut latest = subscribe(
        &mut grpc,
        request("filters", StartingPosition::Latest(v1::Latest {})),
    )
    .await;
    let mut exact = subscribe(
        &mut grpc,
        SubscribeRequest {
            partition_keys: vec!["key-3".into()],
            ..request("filters", earliest())
        },
    )
    .await;
    let mut prefix = subscribe(
        &mut grpc,
        SubscribeRequest {
            partition_key_prefixes: vec!["key-1".into()],
            max_records_per_batch: 3,
            ..request("filters", earliest())
        },
    )
    .await;
    let mut one_shard = subscribe(
        &mut grpc,
        SubscribeRequest {
            shard_ids: vec![shard0.clone()],
            ..request("filters", earliest())
        },
    )
    .await;
    let mut at_time = subscribe(
        &mut grpc,
        request(
            "filters",
            StartingPosition::AtTimestamp(kinesis_relay::subscription::timestamp(between)),
        ),
    )
    .await;

    let second = numbered("second", 200, 16);
    put(&kinesis, "filters", &second).await;
    let everything: Vec<_> = first.iter().chain(&second).collect();
    let count =
        |pred: &dyn Fn(&str) -> bool| everything.iter().filter(|(key, _)| pred(key)).count();

    let got = receive(&mut all, 400).await;
    check_order(&got.records);
    assert_eq!(records_until_heartbeat(&mut all).await, 0);

    let got = receive(&mut latest, 200).await;
    assert!(
        check_order(&got.records)
            .iter()
            .all(|d| d.starts_with("second"))
    );
    assert_eq!(records_until_heartbeat(&mut latest).await, 0);

    let got = receive(&mut exact, count(&|k| k == "key-3")).await;
    assert!(
        got.records
            .iter()
            .all(|r| r.record.partition_key == "key-3")
    );
    assert_eq!(records_until_heartbeat(&mut exact).await, 0);

    let got = receive(&mut prefix, count(&|k| k.starts_with("key-1"))).await;
    assert!(
        got.records
            .iter()
            .all(|r| r.record.partition_key.starts_with("key-1"))
    );
    assert_eq!(records_until_heartbeat(&mut prefix).await, 0);

    let in_shard0: usize = relay.hubs[0]
        .view()
        .shard(&shard0)
        .map_or(0, |shard| shard.records_held());
    assert!(in_shard0 > 0);
    let got = receive(&mut one_shard, in_shard0).await;
    assert!(got.records.iter().all(|r| r.shard_id == shard0));
    assert_eq!(records_until_heartbeat(&mut one_shard).await, 0);

    let got = receive(&mut at_time, 200).await;
    assert!(
        check_order(&got.records)
            .iter()
            .all(|d| d.starts_with("second"))
    );
    assert_eq!(records_until_heartbeat(&mut at_time).await, 0);

    let described = grpc
        .describe_stream(v1::DescribeStreamRequest {
            stream: "filters".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.subscriber_count, 6);
    assert_eq!(described.shards.len(), 4);
    assert_eq!(described.consumer.unwrap().status, "ACTIVE");
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_stalled_subscriber_gets_its_policy_while_the_others_keep_up() {
    let emulator = fast_emulator()
        .limits(false)
        .stream("stall", 1)
        .start()
        .await
        .unwrap();
    let mut config = fast_config(&["stall"]);
    let ring = 1 << 20;
    config.rings = RingLimits {
        max_bytes: ring,
        max_age: Duration::from_secs(600),
    };
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut stalled = subscribe(
        &mut grpc,
        SubscribeRequest {
            on_lag: v1::LagPolicy::Disconnect.into(),
            max_records_per_batch: 10,
            ..request("stall", StartingPosition::Latest(v1::Latest {}))
        },
    )
    .await;
    let mut skipping = subscribe(
        &mut grpc,
        SubscribeRequest {
            on_lag: v1::LagPolicy::Skip.into(),
            max_records_per_batch: 10,
            ..request("stall", StartingPosition::Latest(v1::Latest {}))
        },
    )
    .await;
    let mut live = subscribe(
        &mut grpc,
        request("stall", StartingPosition::Latest(v1::Latest {})),
    )
    .await;
    let reader = tokio::spawn(async move { receive(&mut live, 4000).await });

    let kinesis = client_for(&emulator.endpoint_url());
    let payload = vec![b'x'; 1000];
    for batch in 0..40 {
        let records: Vec<_> = (0..100)
            .map(|i| {
                (
                    format!("k{i}"),
                    [format!("{batch}-{i}-").into_bytes(), payload.clone()].concat(),
                )
            })
            .collect();
        put(&kinesis, "stall", &records).await;
        assert!(
            relay.hubs[0].view().bytes_held() <= ring,
            "the ring stays within its bound"
        );
    }
    let delivered = reader.await.unwrap();
    assert_eq!(
        check_order(&delivered.records).len(),
        4000,
        "the live subscriber got everything"
    );

    // The stalled DISCONNECT subscriber now reads: what was queued, then RESOURCE_EXHAUSTED.
    let mut before_cut = 0;
    let status = loop {
        match tokio::time::timeout(DEADLINE, stalled.message())
            .await
            .unwrap()
        {
            Ok(Some(message)) => {
                if let Some(Event::Records(batch)) = message.event {
                    before_cut += batch.records.len();
                }
            }
            Ok(None) => panic!("the stream must end with a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("too slowly"),
        "{}",
        status.message()
    );
    assert!(before_cut < 4000);
    let cursor = cursor_of(&status).expect("the status carries the cursor");
    // Its position is gone from the ring: resuming reads the rest from Kinesis, exactly.
    let mut resumed = grpc
        .subscribe(request("stall", StartingPosition::AfterCursor(cursor)))
        .await
        .expect("resuming behind the ring is served from Kinesis")
        .into_inner();
    let rest = receive(&mut resumed, 4000 - before_cut).await;
    check_order(&rest.records);
    assert_eq!(rest.records.len(), 4000 - before_cut);
    drop(resumed);

    // The SKIP subscriber gets a gap and goes on to the end.
    let mut received = 0u64;
    let mut missed = 0u64;
    while received + missed < 4000 {
        let message = tokio::time::timeout(DEADLINE, skipping.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match message.event {
            Some(Event::Records(batch)) => received += batch.records.len() as u64,
            Some(Event::Gap(gap)) => {
                assert_eq!(gap.reason, v1::GapReason::SubscriberTooSlow as i32);
                missed += gap.shards.iter().map(|s| s.records_missed).sum::<u64>();
            }
            _ => {}
        }
    }
    assert!(missed > 0, "the skipping subscriber was told about its gap");
    assert_eq!(received + missed, 4000);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn resuming_with_the_cursor_across_a_split_has_no_gap_and_no_repeat() {
    let emulator = fast_emulator().stream("resume", 1).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&["resume"])).await;
    wait_active(&relay).await;
    let kinesis = client_for(&emulator.endpoint_url());
    let mut sent: Vec<String> = numbered("one", 100, 8)
        .into_iter()
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .collect();
    put(&kinesis, "resume", &numbered("one", 100, 8)).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut stream = subscribe(
        &mut grpc,
        SubscribeRequest {
            max_records_per_batch: 7,
            ..request("resume", earliest())
        },
    )
    .await;
    let first = receive(&mut stream, 40).await;
    drop(stream);

    kinesis
        .split_shard()
        .stream_name("resume")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    eventually("the relay to read the children", || async {
        relay.hubs[0].view().shards().count() == 3
    })
    .await;
    put(&kinesis, "resume", &numbered("two", 100, 8)).await;
    sent.extend((0..100).map(|i| format!("two-{i}")));

    let mut stream = subscribe(
        &mut grpc,
        request(
            "resume",
            StartingPosition::AfterCursor(first.last_cursor.clone()),
        ),
    )
    .await;
    let second = receive(&mut stream, 200 - first.records.len()).await;
    assert_eq!(
        records_until_heartbeat(&mut stream).await,
        0,
        "nothing repeated or extra"
    );
    let mut all = first.records.clone();
    all.extend(second.records.clone());
    let mut got = check_order(&all);
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_get_the_right_status_and_say_what_to_fix() {
    let emulator = fast_emulator()
        .stream("valid-a", 1)
        .stream("valid-b", 1)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["valid-a", "valid-b"])).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let shared = grpc.clone();
    let refused = |request: SubscribeRequest| {
        let mut grpc = shared.clone();
        async move { grpc.subscribe(request).await.expect_err("refused") }
    };

    let status = refused(request("nope", earliest())).await;
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("valid-a, valid-b"),
        "{}",
        status.message()
    );

    let status = refused(request("", earliest())).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("stream: required"),
        "{}",
        status.message()
    );

    let status = refused(request("bad name!", earliest())).await;
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = refused(SubscribeRequest {
        shard_ids: vec!["shardId-000000000009".into()],
        ..request("valid-a", earliest())
    })
    .await;
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("shardId-000000000009"));

    let status = refused(SubscribeRequest {
        shard_ids: (0..10_000).map(|i| format!("shardId-{i:012}")).collect(),
        ..request("valid-a", earliest())
    })
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("shard_ids"));

    let status = refused(SubscribeRequest {
        partition_key_prefixes: vec!["p".repeat(1 << 20)],
        ..request("valid-a", earliest())
    })
    .await;
    assert!(
        matches!(
            status.code(),
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
        ),
        "{status:?}"
    );

    for garbage in ["%%%", "AAAA", "not-a-cursor", &"A".repeat(5000)] {
        let status = refused(request(
            "valid-a",
            StartingPosition::AfterCursor(garbage.into()),
        ))
        .await;
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}");
        assert!(
            status.message().starts_with("after_cursor"),
            "{}",
            status.message()
        );
    }

    let mut stream = subscribe(&mut grpc, request("valid-b", earliest())).await;
    let heartbeat = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let status = refused(request(
        "valid-a",
        StartingPosition::AfterCursor(heartbeat.cursor),
    ))
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("valid-b"), "{}", status.message());

    let status = grpc
        .describe_stream(v1::DescribeStreamRequest {
            stream: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn with_catch_up_off_a_position_older_than_the_ring_is_out_of_range() {
    let emulator = fast_emulator().stream("range", 1).start().await.unwrap();
    let mut config = fast_config(&["range"]);
    config.rings.max_bytes = 32 << 10;
    // --catch-up-readers 0: the relay does not read older records from Kinesis.
    config.catch_up.max_readers = 0;
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut stream = subscribe(&mut grpc, request("range", earliest())).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "range", &numbered("early", 10, 2)).await;
    let early = receive(&mut stream, 10).await;
    drop(stream);
    let big: Vec<_> = (0..200)
        .map(|i| (format!("k{i}"), vec![b'y'; 1000]))
        .collect();
    put(&kinesis, "range", &big).await;
    eventually("the early records to be evicted", || async {
        relay.hubs[0]
            .view()
            .shards()
            .all(|shard| shard.oldest_index() > 10)
    })
    .await;
    let status = grpc
        .subscribe(request(
            "range",
            StartingPosition::AfterCursor(early.last_cursor),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    assert!(
        status.message().contains("resume with after_cursor"),
        "{}",
        status.message()
    );
    let old = kinesis_relay::subscription::timestamp(SystemTime::now() - Duration::from_secs(3600));
    let status = grpc
        .subscribe(request("range", StartingPosition::AtTimestamp(old)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable_and_a_cursor_that_resumes_on_another_relay() {
    let emulator = fast_emulator().stream("handover", 2).start().await.unwrap();
    let mut config_a = fast_config(&["handover"]);
    config_a.ingest.consumer_name = "relay-a".into();
    let mut config_b = fast_config(&["handover"]);
    config_b.ingest.consumer_name = "relay-b".into();
    let relay_a = start_relay(&emulator, config_a).await;
    let relay_b = start_relay(&emulator, config_b).await;
    wait_active(&relay_a).await;
    wait_active(&relay_b).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "handover", &numbered("handover", 300, 8)).await;
    let mut grpc_a = connect(relay_a.local_addr).await;
    let mut stream = subscribe(
        &mut grpc_a,
        SubscribeRequest {
            max_records_per_batch: 10,
            ..request("handover", earliest())
        },
    )
    .await;
    let first = receive(&mut stream, 50).await;
    wait_held(&relay_b, "handover", 300).await;
    relay_a.shutdown().await.unwrap();
    // Drain what was in flight; the stream ends with UNAVAILABLE and a cursor.
    let mut in_flight = first.records.clone();
    let status = loop {
        match tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap()
        {
            Ok(Some(message)) => {
                if let Some(Event::Records(batch)) = message.event {
                    in_flight.extend(batch.records.into_iter().map(|record| Received {
                        shard_id: batch.shard_id.clone(),
                        record,
                    }));
                }
            }
            Ok(None) => panic!("the stream must end with a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable);
    let cursor = cursor_of(&status).expect("cursor in the status");
    let mut grpc_b = connect(relay_b.local_addr).await;
    let mut stream = subscribe(
        &mut grpc_b,
        request("handover", StartingPosition::AfterCursor(cursor)),
    )
    .await;
    let rest = receive(&mut stream, 300 - in_flight.len()).await;
    assert_eq!(records_until_heartbeat(&mut stream).await, 0);
    in_flight.extend(rest.records);
    let got: BTreeSet<_> = check_order(&in_flight).into_iter().collect();
    assert_eq!(got.len(), 300);
    relay_b.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn heartbeats_flow_when_idle() {
    let emulator = fast_emulator().stream("idle", 2).start().await.unwrap();
    let relay = start_relay(&emulator, fast_config(&["idle"])).await;
    wait_active(&relay).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut stream = subscribe(
        &mut grpc,
        request("idle", StartingPosition::Latest(v1::Latest {})),
    )
    .await;
    let message = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Event::Heartbeat(heartbeat)) = message.event else {
        panic!("expected a heartbeat, got {message:?}");
    };
    assert_eq!(heartbeat.shards.len(), 2);
    assert!(heartbeat.server_time.is_some());
    assert!(!message.cursor.is_empty());
    let listed = grpc
        .list_streams(v1::ListStreamsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.streams[0].name, "idle");
    assert_eq!(listed.streams[0].shard_count, 2);
    assert_eq!(listed.streams[0].status, v1::StreamStatus::Active as i32);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_cursor_resumes_on_a_restarted_relay_without_repeats_while_it_reads_again() {
    let emulator = fast_emulator()
        .limits(false)
        .stream("reread", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["reread"])).await;
    wait_active(&relay).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "reread", &numbered("old", 2000, 8)).await;
    let mut grpc = connect(relay.local_addr).await;
    let mut stream = subscribe(&mut grpc, request("reread", earliest())).await;
    let first = receive(&mut stream, 2000).await;
    drop(stream);
    relay.shutdown().await.unwrap();
    put(&kinesis, "reread", &numbered("new", 100, 8)).await;

    // The new relay reads the stream again from TRIM_HORIZON; the subscriber resumes at
    // once, while the ring is still behind its cursor.
    let relay = start_relay(&emulator, fast_config(&["reread"])).await;
    let mut grpc = connect(relay.local_addr).await;
    let resume = request(
        "reread",
        StartingPosition::AfterCursor(first.last_cursor.clone()),
    );
    let mut stream = loop {
        match grpc.subscribe(resume.clone()).await {
            Ok(stream) => break stream.into_inner(),
            Err(status) if status.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(10)).await; // retrying a starting relay
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    let rest = receive(&mut stream, 100).await;
    assert!(
        check_order(&rest.records)
            .iter()
            .all(|d| d.starts_with("new"))
    );
    assert_eq!(
        records_until_heartbeat(&mut stream).await,
        0,
        "nothing repeated"
    );
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn records_age_out_of_an_idle_stream() {
    // A relay fed by another relay gets no empty events, only heartbeats: nothing appends,
    // so only the periodic sweep can age its ring.
    let emulator = fast_emulator().stream("aging", 1).start().await.unwrap();
    let first = start_relay(&emulator, fast_config(&["aging"])).await;
    wait_active(&first).await;
    let mut config = fast_config(&["aging"]);
    config.rings.max_age = Duration::from_secs(1);
    config.ingest.upstream = Some(kinesis_relay::ingest::upstream_relay::UpstreamRelay {
        url: format!("http://{}", first.local_addr),
        token: None,
        ca_cert: None,
    });
    let second = kinesis_relay::start(config, client_for("http://127.0.0.1:9"))
        .await
        .unwrap();
    wait_active(&second).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "aging", &numbered("aging", 20, 2)).await;
    wait_held(&second, "aging", 20).await;
    eventually(
        "the idle ring to drop records older than its age limit",
        || async {
            let view = second.hubs[0].view();
            view.bytes_held() == 0 && view.shards().all(|shard| shard.records_held() == 0)
        },
    )
    .await;
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    emulator.shutdown().await;
}
