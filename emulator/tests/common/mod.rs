//! Scaffolding of the emulator's tests: the shared pieces from `kinesis-relay-test-support`
//! (SDK configuration, PutRecords, the deadline), SDK clients over HTTP/1.1 and TLS,
//! consumers and subscriptions.
// Each test binary uses part of this module, and of what it re-exports.
#![allow(dead_code, unused_imports)]

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use kinesis_emulator::Emulator;
use std::time::Duration;
use tokio::time::{Instant, timeout};

pub use kinesis_relay_test_support::DEADLINE;

pub type EventReceiver = aws_sdk_kinesis::primitives::event_stream::EventReceiver<
    SubscribeToShardEventStream,
    aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError,
>;

fn config(emu: &Emulator) -> aws_sdk_kinesis::config::Builder {
    kinesis_relay_test_support::config(&emu.endpoint_url()).retry_config(RetryConfig::disabled())
}

/// An SDK client over plain HTTP/1.1, retries off so that injected errors surface.
pub fn client(emu: &Emulator) -> Client {
    Client::from_conf(config(emu).build())
}

/// An SDK client over TLS that trusts the emulator's self-signed certificate; the SDK's
/// rustls connector offers ALPN h2, so requests go over HTTP/2.
pub fn tls_client(emu: &Emulator) -> Client {
    let pem = emu
        .certificate_pem()
        .expect("emulator started with tls(true)");
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(pem.as_bytes()))
                .build()
                .expect("tls context"),
        )
        .build_https();
    Client::from_conf(config(emu).http_client(http_client).build())
}

pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}")
}

/// Registers a consumer and waits (with a deadline) until it is ACTIVE; returns its ARN.
pub async fn active_consumer(client: &Client, stream: &str, name: &str) -> String {
    let registered = client
        .register_stream_consumer()
        .stream_arn(stream_arn(stream))
        .consumer_name(name)
        .send()
        .await
        .expect("register consumer");
    let arn = registered.consumer().unwrap().consumer_arn().to_owned();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let described = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
            .expect("describe consumer");
        if described.consumer_description().unwrap().consumer_status() == &ConsumerStatus::Active {
            return arn;
        }
        assert!(Instant::now() < deadline, "consumer never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn position(kind: ShardIteratorType, seq: Option<&str>) -> StartingPosition {
    StartingPosition::builder()
        .r#type(kind)
        .set_sequence_number(seq.map(str::to_owned))
        .build()
        .expect("starting position")
}

/// Subscribes and returns the event receiver (the SDK has already read the initial response).
pub async fn subscribe(
    client: &Client,
    consumer_arn: &str,
    shard: &str,
    start: StartingPosition,
) -> EventReceiver {
    client
        .subscribe_to_shard()
        .consumer_arn(consumer_arn)
        .shard_id(shard)
        .starting_position(start)
        .send()
        .await
        .expect("subscribe")
        .event_stream
}

/// The next SubscribeToShardEvent, failing the test at the deadline or on stream end.
pub async fn next_event(events: &mut EventReceiver) -> SubscribeToShardEvent {
    match timeout(DEADLINE, events.recv()).await {
        Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Puts `count` records of `data_len` bytes with PutRecords; returns their sequence numbers.
pub async fn put_many(client: &Client, stream: &str, count: usize, data_len: usize) -> Vec<String> {
    let records: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| (format!("key-{i}"), vec![b'x'; data_len]))
        .collect();
    kinesis_relay_test_support::put(client, stream, &records).await
}
