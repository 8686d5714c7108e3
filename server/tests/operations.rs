//! Running the relay: Prometheus metrics, health that follows the upstream, and relays that
//! take another relay as their upstream.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;
use kinesis_relay::{
    AdminSettings, RelayConfig, embedded::client_for, ingest::upstream_relay::UpstreamRelay,
};
use kinesis_relay_api::v1::{self, SubscribeRequest, subscribe_request::StartingPosition};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn earliest(stream: &str) -> SubscribeRequest {
    SubscribeRequest {
        stream: stream.into(),
        starting_position: Some(StartingPosition::Earliest(v1::Earliest {})),
        ..Default::default()
    }
}

#[tokio::test]
async fn metrics_report_what_flows_in_and_out() {
    let emulator = fast_emulator().stream("metered", 2).start().await.unwrap();
    let config = RelayConfig {
        admin: AdminSettings {
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..AdminSettings::default()
        },
        ..fast_config(&["metered"])
    };
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let metrics = relay.metrics_addr.expect("metrics listener");
    let mut grpc = connect(relay.local_addr).await;
    let mut stream = subscribe(&mut grpc, earliest("metered")).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "metered", &numbered("metered", 50, 4)).await;
    receive(&mut stream, 50).await;

    let (status, text) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let records_in: f64 = text
        .lines()
        .filter(|l| l.starts_with("kinesis_relay_records_in_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(records_in, 50.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "kinesis_relay_records_out_total",
            "stream=\"metered\""
        ),
        Some(50.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "kinesis_relay_subscribers", "stream=\"metered\""),
        Some(1.0),
        "{text}"
    );
    assert!(metric(&text, "kinesis_relay_ring_bytes", "stream=\"metered\"").unwrap() > 0.0);
    // Process-wide: no corrupt aggregate in this test binary.
    assert_eq!(
        metric(&text, "kinesis_relay_corrupt_aggregates_total", ""),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "kinesis_relay_connections_open", ""),
        Some(1.0),
        "the test's one gRPC connection"
    );
    // Every record sent is counted once in the delay histogram, and took less than the
    // catch-all bucket.
    assert_eq!(
        metric(
            &text,
            "kinesis_relay_delivery_delay_seconds_count",
            "stream=\"metered\""
        ),
        Some(50.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "kinesis_relay_delivery_delay_seconds_bucket",
            "le=\"10.0\",stream=\"metered\""
        ),
        Some(50.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "kinesis_relay_reader_state",
            "shard=\"shardId-000000000000\",state=\"reading\""
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "kinesis_relay_subscriptions_total",
            "shard=\"shardId-000000000001\""
        )
        .unwrap()
            >= 1.0
    );
    for name in [
        "kinesis_relay_bytes_in_total",
        "kinesis_relay_millis_behind_latest",
        "kinesis_relay_lag_disconnects_total",
        "kinesis_relay_gaps_total",
        "kinesis_relay_ring_oldest_age_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert_eq!(http_get(metrics, "/live").await.0, 200);
    eventually("/ready to answer 200", || async {
        http_get(metrics, "/ready").await.0 == 200
    })
    .await;
    assert_eq!(http_get(metrics, "/nope").await.0, 404);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

async fn health(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|response| response.into_inner().status)
        .unwrap_or(-1)
}

#[tokio::test]
async fn health_follows_the_upstream_subscriptions() {
    let emulator = fast_emulator().stream("healthy", 1).start().await.unwrap();
    let proxy = Proxy::start(emulator.local_addr()).await;
    let config = RelayConfig {
        admin: AdminSettings {
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            health_threshold: Duration::from_secs(1),
        },
        ..fast_config(&["healthy"])
    };
    let relay = kinesis_relay::start(config, client_for(&proxy.url()))
        .await
        .unwrap();
    let metrics = relay.metrics_addr.unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", relay.local_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    eventually("SERVING once the stream is read", || {
        let mut client = client.clone();
        async move {
            health(&mut client, "kinesis_relay.v1.Relay").await == serving
                && health(&mut client, "kinesis_relay.v1.Relay/healthy").await == serving
        }
    })
    .await;
    assert_eq!(health(&mut client, "").await, serving);

    proxy.cut();
    eventually("NOT_SERVING after the threshold without a live subscription", || {
        let mut client = client.clone();
        async move { health(&mut client, "kinesis_relay.v1.Relay/healthy").await == not_serving }
    })
    .await;
    assert_eq!(
        health(&mut client, "kinesis_relay.v1.Relay").await,
        not_serving
    );
    assert_eq!(
        health(&mut client, "").await,
        serving,
        "liveness stays SERVING"
    );
    assert_eq!(http_get(metrics, "/ready").await.0, 503);

    proxy.restore();
    eventually("SERVING again once the upstream is back", || {
        let mut client = client.clone();
        async move { health(&mut client, "kinesis_relay.v1.Relay").await == serving }
    })
    .await;
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_relay_fed_by_a_relay_delivers_the_same_records_and_cursors_work_on_both() {
    let emulator = fast_emulator().stream("tree", 2).start().await.unwrap();
    let first = start_relay(&emulator, fast_config(&["tree"])).await;
    wait_active(&first).await;
    let mut second_config = fast_config(&["tree"]);
    second_config.ingest.upstream = Some(UpstreamRelay {
        url: format!("http://{}", first.local_addr),
        token: None,
        ca_cert: None,
    });
    let second = kinesis_relay::start(second_config, client_for("http://127.0.0.1:9"))
        .await
        .unwrap();
    wait_active(&second).await;

    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "tree", &numbered("tree", 200, 8)).await;
    let mut from_first = connect(first.local_addr).await;
    let mut from_second = connect(second.local_addr).await;
    let mut a = subscribe(&mut from_first, earliest("tree")).await;
    let mut b = subscribe(&mut from_second, earliest("tree")).await;
    let got_a = receive(&mut a, 200).await;
    let got_b = receive(&mut b, 200).await;
    let key = |r: &Received| {
        (
            r.shard_id.clone(),
            r.record.sequence_number.clone(),
            r.record.data.clone(),
        )
    };
    let per_shard = |records: &[Received]| {
        let mut shards: std::collections::BTreeMap<String, Vec<_>> = Default::default();
        for r in records {
            shards.entry(r.shard_id.clone()).or_default().push(key(r));
        }
        shards
    };
    check_order(&got_b.records);
    assert_eq!(
        per_shard(&got_a.records),
        per_shard(&got_b.records),
        "same records, same order per shard"
    );

    // A cursor from the second tier resumes on the first, and the other way round.
    drop(b);
    let mut partial = subscribe(
        &mut from_second,
        SubscribeRequest {
            max_records_per_batch: 5,
            ..earliest("tree")
        },
    )
    .await;
    let head = receive(&mut partial, 60).await;
    drop(partial);
    put(&kinesis, "tree", &numbered("tree-more", 50, 8)).await;
    let mut rest = subscribe(
        &mut from_first,
        SubscribeRequest {
            starting_position: Some(StartingPosition::AfterCursor(head.last_cursor.clone())),
            ..earliest("tree")
        },
    )
    .await;
    let tail = receive(&mut rest, 250 - head.records.len()).await;
    let mut all = head.records.clone();
    all.extend(tail.records);
    let unique: BTreeSet<_> = check_order(&all).into_iter().collect();
    assert_eq!(unique.len(), 250);

    let mut back = subscribe(
        &mut from_second,
        SubscribeRequest {
            starting_position: Some(StartingPosition::AfterCursor(got_a.last_cursor.clone())),
            ..earliest("tree")
        },
    )
    .await;
    let newer = receive(&mut back, 50).await;
    assert!(
        check_order(&newer.records)
            .iter()
            .all(|d| d.starts_with("tree-more"))
    );
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_relay_fed_by_a_relay_resumes_after_a_restart_where_its_checkpoint_says() {
    let emulator = fast_emulator()
        .stream("tree-resume", 1)
        .start()
        .await
        .unwrap();
    let first = start_relay(&emulator, fast_config(&["tree-resume"])).await;
    wait_active(&first).await;
    let state_dir =
        std::env::temp_dir().join(format!("relay-upstream-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut config = fast_config(&["tree-resume"]);
    config.ingest.upstream = Some(UpstreamRelay {
        url: format!("http://{}", first.local_addr),
        token: None,
        ca_cert: None,
    });
    config.ingest.state_dir = Some(state_dir.clone());
    // Without a saved position, a restart would read only what arrives after it.
    config.ingest.initial_position = kinesis_relay::ingest::InitialPosition::Latest;
    let second = kinesis_relay::start(config.clone(), client_for("http://127.0.0.1:9"))
        .await
        .unwrap();
    wait_active(&second).await;
    let kinesis = client_for(&emulator.endpoint_url());
    put(&kinesis, "tree-resume", &numbered("before", 20, 1)).await;
    wait_held(&second, "tree-resume", 20).await;
    second.shutdown().await.unwrap();
    // The upstream position is kept per shard, in the checkpoint file of the stream.
    let saved = std::fs::read_to_string(state_dir.join("tree-resume.checkpoints.json")).unwrap();
    assert!(saved.contains("last_sequence"), "{saved}");

    put(&kinesis, "tree-resume", &numbered("during", 15, 1)).await;
    let second = kinesis_relay::start(config, client_for("http://127.0.0.1:9"))
        .await
        .unwrap();
    wait_active(&second).await;
    wait_held(&second, "tree-resume", 15).await;
    let mut from_second = connect(second.local_addr).await;
    let mut stream = subscribe(&mut from_second, earliest("tree-resume")).await;
    let got = receive(&mut stream, 15).await;
    let data = check_order(&got.records);
    assert!(data.iter().all(|d| d.starts_with("during")), "{data:?}");
    drop(stream);
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    emulator.shutdown().await;
    std::fs::remove_dir_all(&state_dir).unwrap();
}

#[tokio::test]
async fn the_embedded_emulator_keeps_only_what_the_relay_can_replay() {
    let streams = ["embedded-retention".to_owned()];
    let embedded = kinesis_relay::embedded::start(&streams, 1, Duration::from_secs(1), None)
        .await
        .unwrap();
    put(
        &embedded.client,
        "embedded-retention",
        &numbered("old", 100, 4),
    )
    .await;
    let handle = embedded.emulator.handle();
    assert_eq!(handle.stored_records("embedded-retention").unwrap(), 100);
    // Past the retention the emulator lets the records go, even with nothing written.
    eventually("records past the retention to be dropped", || async {
        handle.stored_records("embedded-retention").unwrap() == 0
    })
    .await;
    embedded.stop().await;
}
