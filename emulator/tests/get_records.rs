//! GetRecords and GetShardIterator through aws-sdk-kinesis: the per-shard read limits,
//! iterator expiry, AT_TIMESTAMP, and injected errors.

mod common;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::*;
use kinesis_emulator::Emulator;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

const SHARD_0: &str = "shardId-000000000000";
const SHARD_1: &str = "shardId-000000000001";

async fn iterator(client: &Client, stream: &str, shard: &str, kind: ShardIteratorType) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator()
        .expect("an iterator")
        .to_owned()
}

async fn at_timestamp(client: &Client, stream: &str, time: DateTime) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(SHARD_0)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(time)
        .send()
        .await
        .expect("GetShardIterator AT_TIMESTAMP")
        .shard_iterator()
        .expect("an iterator")
        .to_owned()
}

/// Writes `count` records of `size` bytes to shard 0 (explicit hash key 0); returns their
/// sequence numbers.
async fn put_to_shard_0(client: &Client, stream: &str, count: usize, size: usize) -> Vec<String> {
    let entries = (0..count)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .explicit_hash_key("0")
                .data(Blob::new(vec![b'r'; size]))
                .build()
                .unwrap()
        })
        .collect();
    kinesis_relay_test_support::put_entries(client, stream, entries).await
}

/// Calls GetRecords with `iterator` until one call is admitted (at most `DEADLINE`).
async fn until_admitted(client: &Client, iterator: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.get_records().shard_iterator(iterator).send().await {
            Ok(_) => return,
            Err(err) => {
                let err = err.into_service_error();
                assert!(
                    err.is_provisioned_throughput_exceeded_exception(),
                    "{err:?}"
                );
            }
        }
        assert!(Instant::now() < deadline, "GetRecords never admitted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn get_records_allows_five_calls_per_second_per_shard_shared_by_readers() {
    let emu = Emulator::builder()
        .stream("read-calls", 2)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    // Two readers of one shard: they share its budget.
    let mut readers = [
        iterator(
            &client,
            "read-calls",
            SHARD_0,
            ShardIteratorType::TrimHorizon,
        )
        .await,
        iterator(&client, "read-calls", SHARD_0, ShardIteratorType::Latest).await,
    ];
    let (mut admitted, mut throttled) = (0, 0);
    let started = Instant::now();
    for i in 0..12 {
        let reader = &mut readers[i % 2];
        match client
            .get_records()
            .shard_iterator(reader.as_str())
            .send()
            .await
        {
            Ok(out) => {
                admitted += 1;
                *reader = out.next_shard_iterator().unwrap().to_owned();
            }
            Err(err) => {
                let err = err.into_service_error();
                assert!(
                    matches!(
                        err,
                        GetRecordsError::ProvisionedThroughputExceededException(_)
                    ),
                    "{err:?}"
                );
                let message = err.meta().message().unwrap();
                assert!(
                    message.contains("read-calls") && message.contains(SHARD_0),
                    "{message}"
                );
                throttled += 1;
            }
        }
    }
    // Five at once, then five per second of refill.
    let allowed = 5 + (started.elapsed().as_secs_f64() * 5.0).floor() as usize;
    assert!(admitted >= 5, "admitted only {admitted}");
    assert!(
        admitted <= allowed,
        "admitted {admitted}, allowed {allowed}"
    );
    assert_eq!(admitted + throttled, 12);
    // The other shard has a budget of its own.
    let other = iterator(&client, "read-calls", SHARD_1, ShardIteratorType::Latest).await;
    client
        .get_records()
        .shard_iterator(&other)
        .send()
        .await
        .expect("another shard is not throttled");
    // And the budget refills.
    until_admitted(&client, &readers[0]).await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_returns_at_most_2_mib_per_second_per_shard() {
    const RECORD: usize = 250_000;
    const STORED: usize = 8 * RECORD;
    let emu = Emulator::builder()
        .stream("read-bytes", 2)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    // 2,000,000 bytes in shard 0, at the write limit's 1 MiB/s: about a second.
    let deadline = Instant::now() + DEADLINE;
    let mut stored = 0;
    while stored < STORED {
        let put = client
            .put_record()
            .stream_name("read-bytes")
            .partition_key("k")
            .explicit_hash_key("0")
            .data(Blob::new(vec![b'r'; RECORD]))
            .send()
            .await;
        match put {
            Ok(_) => stored += RECORD,
            Err(err) => {
                let err = err.into_service_error();
                assert!(
                    err.is_provisioned_throughput_exceeded_exception(),
                    "{err:?}"
                );
                assert!(Instant::now() < deadline, "writes never admitted");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let trim = iterator(
        &client,
        "read-bytes",
        SHARD_0,
        ShardIteratorType::TrimHorizon,
    )
    .await;
    // Five readers at once (the call budget admits five): the first read leaves 97,152
    // bytes of the 2 MiB, the second overdraws them by 1,902,848 bytes, which takes about
    // 0.9 s to pay off; until then the shard refuses every read.
    let calls = (0..5).map(|_| client.get_records().shard_iterator(&trim).send());
    let results = futures::future::join_all(calls).await;
    let (mut admitted, mut throttled) = (0, 0);
    for result in results {
        match result {
            Ok(out) => {
                let bytes: usize = out.records().iter().map(|r| r.data().as_ref().len()).sum();
                assert_eq!(bytes, STORED);
                admitted += 1;
            }
            Err(err) => {
                let err = err.into_service_error();
                assert!(
                    matches!(
                        err,
                        GetRecordsError::ProvisionedThroughputExceededException(_)
                    ),
                    "{err:?}"
                );
                assert!(err.meta().message().unwrap().contains(SHARD_0));
                throttled += 1;
            }
        }
    }
    assert!(
        admitted >= 2 && throttled >= 1,
        "{admitted} reads of {STORED} bytes admitted at once, {throttled} refused"
    );
    // The debt is the shard's alone.
    let other = iterator(&client, "read-bytes", SHARD_1, ShardIteratorType::Latest).await;
    client
        .get_records()
        .shard_iterator(&other)
        .send()
        .await
        .expect("another shard is not throttled");
    until_admitted(&client, &trim).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn limits_off_lifts_the_read_limits_but_not_the_per_call_caps() {
    let emu = Emulator::builder()
        .stream("read-free", 1)
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let seqs = put_many(&client, "read-free", 10_001, 1).await;
    let trim = iterator(
        &client,
        "read-free",
        SHARD_0,
        ShardIteratorType::TrimHorizon,
    )
    .await;
    for _ in 0..12 {
        client
            .get_records()
            .shard_iterator(&trim)
            .limit(1)
            .send()
            .await
            .expect("no read limit");
    }
    // At most 10,000 records per call, as on AWS, limits or not.
    let first = client
        .get_records()
        .shard_iterator(&trim)
        .send()
        .await
        .unwrap();
    assert_eq!(first.records().len(), 10_000);
    let rest = client
        .get_records()
        .shard_iterator(first.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.records().len(), 1);
    assert_eq!(rest.records()[0].sequence_number(), seqs[10_000]);
    emu.shutdown().await;
}

#[tokio::test]
async fn iterators_expire_after_the_iterator_lifetime() {
    const LIFETIME: Duration = Duration::from_millis(300);
    let emu = Emulator::builder()
        .stream("expiry", 1)
        .iterator_lifetime(LIFETIME)
        // Polling below would exceed the 5 calls/s of the read limit.
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let issued = Instant::now();
    let old = iterator(&client, "expiry", SHARD_0, ShardIteratorType::TrimHorizon).await;
    let deadline = Instant::now() + DEADLINE;
    let err = loop {
        match client.get_records().shard_iterator(&old).send().await {
            Ok(_) => {}
            Err(err) => break err.into_service_error(),
        }
        assert!(Instant::now() < deadline, "the iterator never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        issued.elapsed() >= LIFETIME,
        "expired after {:?}",
        issued.elapsed()
    );
    assert!(
        matches!(err, GetRecordsError::ExpiredIteratorException(_)),
        "{err:?}"
    );
    assert!(err.meta().message().unwrap().contains("Iterator expired"));
    // A fresh iterator, and the next iterator GetRecords hands out, are valid again.
    let fresh = iterator(&client, "expiry", SHARD_0, ShardIteratorType::TrimHorizon).await;
    let out = client
        .get_records()
        .shard_iterator(&fresh)
        .send()
        .await
        .unwrap();
    client
        .get_records()
        .shard_iterator(out.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn at_timestamp_starts_at_the_first_record_arriving_at_or_after_the_time() {
    let emu = Emulator::builder()
        .stream("at-time", 1)
        // Several reads of one shard in a row; the read limits have their own tests.
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let early = put_to_shard_0(&client, "at-time", 3, 10).await;
    // Let the clock move on by a few milliseconds (timestamps have millisecond precision),
    // so that a time between the two batches exists.
    let between = SystemTime::now() + Duration::from_millis(2);
    while SystemTime::now() < between + Duration::from_millis(2) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let late = put_to_shard_0(&client, "at-time", 3, 10).await;

    let trim = iterator(&client, "at-time", SHARD_0, ShardIteratorType::TrimHorizon).await;
    let all = client
        .get_records()
        .shard_iterator(&trim)
        .send()
        .await
        .unwrap();
    assert_eq!(all.records().len(), 6);
    let arrival = |i: usize| *all.records()[i].approximate_arrival_timestamp().unwrap();
    assert!(arrival(2) < arrival(3));

    // A time between the batches starts at the first later record.
    let from_between = at_timestamp(&client, "at-time", DateTime::from(between)).await;
    let out = client
        .get_records()
        .shard_iterator(&from_between)
        .send()
        .await
        .unwrap();
    let seqs: Vec<&str> = out.records().iter().map(|r| r.sequence_number()).collect();
    assert_eq!(seqs, late);

    // A record's own ApproximateArrivalTimestamp starts at that record.
    let exact = at_timestamp(&client, "at-time", arrival(3)).await;
    let out = client
        .get_records()
        .shard_iterator(&exact)
        .send()
        .await
        .unwrap();
    let seqs: Vec<&str> = out.records().iter().map(|r| r.sequence_number()).collect();
    assert_eq!(seqs, late);
    assert!(early.iter().all(|seq| !seqs.contains(&seq.as_str())));
    // A time after every record waits for the records arriving after it.
    let now = at_timestamp(&client, "at-time", DateTime::from(SystemTime::now())).await;
    let out = client
        .get_records()
        .shard_iterator(&now)
        .send()
        .await
        .unwrap();
    assert!(out.records().is_empty());
    let newest = put_to_shard_0(&client, "at-time", 1, 10).await;
    let out = client
        .get_records()
        .shard_iterator(out.next_shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    let seqs: Vec<&str> = out.records().iter().map(|r| r.sequence_number()).collect();
    assert_eq!(seqs, newest);
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_errors_reach_the_sdk_as_typed_errors_and_calls_are_counted() {
    let emu = Emulator::builder()
        .stream("inject-read", 1)
        .start()
        .await
        .unwrap();
    let handle = emu.handle();
    let client = client(&emu);
    let trim = iterator(
        &client,
        "inject-read",
        SHARD_0,
        ShardIteratorType::TrimHorizon,
    )
    .await;

    handle.fail_next("GetRecords", 2, "ProvisionedThroughputExceededException");
    for _ in 0..2 {
        let err = client
            .get_records()
            .shard_iterator(&trim)
            .send()
            .await
            .expect_err("injected");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
        let err = err.into_service_error();
        assert!(
            matches!(
                err,
                GetRecordsError::ProvisionedThroughputExceededException(_)
            ),
            "{err:?}"
        );
    }
    handle.fail_next("GetRecords", 1, "ExpiredIteratorException");
    let err = client
        .get_records()
        .shard_iterator(&trim)
        .send()
        .await
        .expect_err("injected");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    let err = err.into_service_error();
    assert!(
        matches!(err, GetRecordsError::ExpiredIteratorException(_)),
        "{err:?}"
    );
    assert_eq!(err.meta().code(), Some("ExpiredIteratorException"));
    // Used up: the next call reads.
    client
        .get_records()
        .shard_iterator(&trim)
        .send()
        .await
        .unwrap();

    handle.fail_next(
        "GetShardIterator",
        1,
        "ProvisionedThroughputExceededException",
    );
    let err = client
        .get_shard_iterator()
        .stream_name("inject-read")
        .shard_id(SHARD_0)
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .expect_err("injected")
        .into_service_error();
    assert!(
        matches!(
            err,
            GetShardIteratorError::ProvisionedThroughputExceededException(_)
        ),
        "{err:?}"
    );
    assert_eq!(handle.request_count("GetRecords"), 4);
    assert_eq!(handle.request_count("GetShardIterator"), 2);
    emu.shutdown().await;
}
