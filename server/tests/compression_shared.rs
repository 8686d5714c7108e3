//! Compressed responses are compressed once and shared: many subscribers at the tip of a
//! stream, accepting zstd, each get every record, while the relay compresses each piece of
//! the records about once. In a test binary of its own, because the compression counters
//! are process-wide.

mod common;

use common::*;
use kinesis_relay_api::v1;
use tonic::codec::CompressionEncoding;

const SUBSCRIBERS: usize = 10;
const RECORDS: usize = 400;

#[tokio::test]
async fn subscribers_at_the_tip_share_one_compression_of_each_piece() {
    let mut config = fast_config(&["shared-zstd"]);
    config.admin.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let (emulator, relay) = relay_on_one_shard("shared-zstd", config).await;
    let mut streams = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = connect(relay.local_addr)
            .await
            .accept_compressed(CompressionEncoding::Zstd);
        streams.push(
            subscribe(
                &mut client,
                v1::SubscribeRequest {
                    stream: "shared-zstd".into(),
                    starting_position: Some(v1::subscribe_request::StartingPosition::Latest(
                        v1::Latest {},
                    )),
                    ..Default::default()
                },
            )
            .await,
        );
    }
    // JSON records in bursts, as a producer writes them.
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    let records: Vec<(String, Vec<u8>)> = (0..RECORDS)
        .map(|i| {
            let data = format!(
                r#"{{"id":"order-{i}","status":"shipped","customer":"customer-{}","lines":[{}]}}"#,
                i % 40,
                (0..8)
                    .map(|j| format!(r#"{{"sku":"SKU-{:05}","quantity":{}}}"#, i * 3 + j, j + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            ("key-0".to_owned(), data.into_bytes())
        })
        .collect();
    for burst in records.chunks(100) {
        put(&kinesis, "shared-zstd", burst).await;
    }
    let expected: Vec<String> = records
        .iter()
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect();
    for stream in &mut streams {
        let delivery = receive(stream, RECORDS).await;
        assert!(
            check_order(&delivery.records) == expected,
            "a subscriber missed records"
        );
    }

    let metrics = metrics_page(relay.metrics_addr.unwrap()).await;
    let value = |name: &str| metric(&metrics, name, "encoding=\"zstd\"").unwrap();
    let sent = value("kinesis_relay_compressed_pieces_sent");
    let compressed = value("kinesis_relay_compressed_pieces_compressed");
    // Each piece went to every subscriber; nearly each was compressed once.
    assert!(
        compressed * 3.0 < sent,
        "{compressed} pieces compressed for {sent} sent to {SUBSCRIBERS} subscribers"
    );
    eprintln!("{compressed} pieces compressed for {sent} sent to {SUBSCRIBERS} subscribers");
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}
