//! The transports: HTTP/1.1, h2c with prior knowledge, TLS with ALPN h2; restart on the
//! same port.

mod common;

use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use kinesis_emulator::Emulator;
use std::time::Duration;

#[tokio::test]
async fn h2c_prior_knowledge_serves_json_requests() {
    let emu = Emulator::builder().stream("h2c", 2).start().await.unwrap();
    let client: HyperClient<_, Full<Bytes>> = HyperClient::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = http::Request::post(emu.endpoint_url())
        .header("x-amz-target", "Kinesis_20131202.ListShards")
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from_static(br#"{"StreamName":"h2c"}"#)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-amz-json-1.1"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["Shards"].as_array().unwrap().len(), 2);

    let unknown = http::Request::post(emu.endpoint_url())
        .header("x-amz-target", "Kinesis_20131202.NoSuchOperation")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = client.request(unknown).await.unwrap();
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["__type"], "UnknownOperationException");

    let malformed = http::Request::post(emu.endpoint_url())
        .header("x-amz-target", "Kinesis_20131202.PutRecords")
        .body(Full::new(Bytes::from_static(b"{not json")))
        .unwrap();
    let response = client.request(malformed).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(emu.handle().http2_requests(), 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn sdk_over_tls_uses_h2_for_operations_and_subscriptions() {
    let emu = Emulator::builder()
        .stream("tls", 2)
        .tls(true)
        .consumer_activation_delay(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let client = tls_client(&emu);
    let seqs = put_many(&client, "tls", 20, 100).await;
    assert_eq!(seqs.len(), 20);
    let consumer = active_consumer(&client, "tls", "c").await;
    let mut total = 0;
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let mut events = subscribe(
            &client,
            &consumer,
            shard,
            position(ShardIteratorType::TrimHorizon, None),
        )
        .await;
        total += next_event(&mut events).await.records().len();
    }
    assert_eq!(total, 20);
    assert!(emu.handle().http2_requests() >= 5);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_new_emulator_can_start_on_the_port_of_a_stopped_one() {
    let first = Emulator::builder()
        .stream("restart", 1)
        .start()
        .await
        .unwrap();
    let addr = first.local_addr();
    let client = client(&first);
    let consumer = active_consumer(&client, "restart", "c").await;
    let mut events = subscribe(
        &client,
        &consumer,
        "shardId-000000000000",
        position(ShardIteratorType::Latest, None),
    )
    .await;
    next_event(&mut events).await;
    first.shutdown().await;
    // The open subscription ends with the emulator.
    let ended = tokio::time::timeout(DEADLINE, events.recv()).await.unwrap();
    assert!(!matches!(ended, Ok(Some(_))));
    let second = Emulator::builder()
        .listen(addr)
        .stream("restart", 1)
        .start()
        .await
        .unwrap();
    assert_eq!(second.local_addr(), addr);
    let client = common::client(&second);
    client
        .describe_stream_summary()
        .stream_name("restart")
        .send()
        .await
        .unwrap();
    second.shutdown().await;
}
