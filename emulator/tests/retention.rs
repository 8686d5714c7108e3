//! Retention through aws-sdk-kinesis: records aged past the retention period are gone,
//! younger ones stay with their older arrival time; in-process and over the control endpoint.

mod common;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use common::*;
use kinesis_emulator::{Emulator, KinesisError};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const HOUR: Duration = Duration::from_secs(3600);

/// Every record of the stream's one shard, from TRIM_HORIZON: (sequence number, arrival).
async fn read_all(client: &Client, stream: &str) -> Vec<(String, SystemTime)> {
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator");
    let out = client
        .get_records()
        .shard_iterator(iterator.shard_iterator().unwrap())
        .send()
        .await
        .expect("GetRecords");
    out.records()
        .iter()
        .map(|r| {
            let arrival = r.approximate_arrival_timestamp().unwrap();
            let arrival = UNIX_EPOCH + Duration::from_millis(arrival.to_millis().unwrap() as u64);
            (r.sequence_number().to_owned(), arrival)
        })
        .collect()
}

/// POSTs a fault request to the control endpoint; returns the status line and body.
async fn post_fault(addr: SocketAddr, body: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /_emulator/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    timeout(DEADLINE, socket.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    response
}

#[tokio::test]
async fn records_aged_past_retention_are_dropped_and_younger_ones_kept_older() {
    // The default retention of 24 hours.
    let emu = Emulator::builder().stream("aged", 1).start().await.unwrap();
    let handle = emu.handle();
    let client = client(&emu);
    put_many(&client, "aged", 3, 10).await;
    handle.age_records("aged", 25 * HOUR).unwrap();
    assert_eq!(handle.stored_records("aged").unwrap(), 0);
    let written = SystemTime::now();
    let fresh = put_many(&client, "aged", 2, 10).await;
    let records = read_all(&client, "aged").await;
    let seqs: Vec<&str> = records.iter().map(|(seq, _)| seq.as_str()).collect();
    assert_eq!(seqs, fresh);

    // Less than the retention: kept, reported an hour older.
    handle.age_records("aged", HOUR).unwrap();
    let aged = read_all(&client, "aged").await;
    assert_eq!(aged.len(), 2);
    for ((seq, before), (aged_seq, after)) in records.iter().zip(&aged) {
        assert_eq!(seq, aged_seq);
        assert_eq!(before.duration_since(*after).unwrap(), HOUR);
        assert!(*after < written - HOUR + Duration::from_secs(60));
    }

    let missing = handle.age_records("no-such-stream", HOUR).unwrap_err();
    assert!(matches!(missing, KinesisError::ResourceNotFound(_)));
    emu.shutdown().await;
}

#[tokio::test]
async fn control_endpoint_ages_records() {
    let emu = Emulator::builder()
        .stream("aged-http", 1)
        .retention(2 * HOUR)
        .start()
        .await
        .unwrap();
    let handle = emu.handle();
    let client = client(&emu);
    put_many(&client, "aged-http", 4, 10).await;

    let kept = post_fault(
        emu.local_addr(),
        r#"{"action":"age_records","stream":"aged-http","seconds":3600}"#,
    )
    .await;
    assert!(kept.starts_with("HTTP/1.1 200"), "{kept}");
    assert_eq!(handle.stored_records("aged-http").unwrap(), 4);

    let dropped = post_fault(
        emu.local_addr(),
        r#"{"action":"age_records","stream":"aged-http","seconds":3601}"#,
    )
    .await;
    assert!(dropped.starts_with("HTTP/1.1 200"), "{dropped}");
    assert_eq!(handle.stored_records("aged-http").unwrap(), 0);
    assert!(read_all(&client, "aged-http").await.is_empty());

    let unknown = post_fault(
        emu.local_addr(),
        r#"{"action":"age_records","stream":"nope","seconds":1}"#,
    )
    .await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    let malformed = post_fault(
        emu.local_addr(),
        r#"{"action":"age_records","stream":"aged-http","seconds":-1}"#,
    )
    .await;
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed}");
    emu.shutdown().await;
}
