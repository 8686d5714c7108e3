//! Per-shard write limits and request size constraints, through aws-sdk-kinesis.

mod common;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::*;
use kinesis_emulator::Emulator;
use std::time::{Duration, Instant};

fn entries(count: usize, size: usize) -> Vec<PutRecordsRequestEntry> {
    (0..count)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(Blob::new(vec![7u8; size]))
                .build()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn writes_beyond_1000_records_per_second_fail_per_entry() {
    let emu = Emulator::builder().stream("rate", 1).start().await.unwrap();
    let client = client(&emu);
    let mut accepted = 0;
    let mut failed = 0;
    let started = Instant::now();
    for _ in 0..3 {
        let out = client
            .put_records()
            .stream_name("rate")
            .set_records(Some(entries(500, 10)))
            .send()
            .await
            .unwrap();
        let failures = out.failed_record_count().unwrap() as usize;
        failed += failures;
        accepted += 500 - failures;
        for record in out.records().iter().filter(|r| r.error_code().is_some()) {
            assert_eq!(
                record.error_code(),
                Some("ProvisionedThroughputExceededException")
            );
            assert!(
                record
                    .error_message()
                    .unwrap()
                    .contains("shardId-000000000000")
            );
            assert!(record.sequence_number().is_none());
        }
    }
    // One second's worth (1000) plus what refilled while the calls ran (1000/s).
    let refill = (started.elapsed().as_secs_f64() * 1000.0).ceil() as usize;
    assert!(accepted >= 1000, "accepted {accepted}");
    assert!(
        accepted <= 1000 + refill,
        "accepted {accepted}, refill {refill}"
    );
    assert_eq!(accepted + failed, 1500);
    if refill < 400 {
        assert!(failed > 0, "nothing throttled");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn writes_beyond_1_mib_per_second_are_throttled_and_put_record_fails() {
    let emu = Emulator::builder()
        .stream("bytes", 1)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    // 8 x 500 KiB in one call: the 1 MiB bucket takes two of them.
    let out = client
        .put_records()
        .stream_name("bytes")
        .set_records(Some(entries(8, 500 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(6));
    // About 24 KiB are left; 1000 KiB more need about a second of refill.
    let started = Instant::now();
    let result = client
        .put_record()
        .stream_name("bytes")
        .partition_key("k")
        .data(Blob::new(vec![0u8; 1000 * 1024]))
        .send()
        .await;
    if started.elapsed() < Duration::from_millis(800) {
        let err = result.expect_err("throttled");
        assert!(
            err.into_service_error()
                .is_provisioned_throughput_exceeded_exception()
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn limits_off_accepts_everything() {
    let emu = Emulator::builder()
        .stream("free", 1)
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    for _ in 0..4 {
        let out = client
            .put_records()
            .stream_name("free")
            .set_records(Some(entries(500, 10)))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    assert_eq!(emu.handle().stored_records("free").unwrap(), 2000);
    emu.shutdown().await;
}

#[tokio::test]
async fn request_size_constraints_hold_even_with_limits_off() {
    let emu = Emulator::builder()
        .stream("size", 4)
        .limits(false)
        .start()
        .await
        .unwrap();
    let client = client(&emu);
    let too_many = client
        .put_records()
        .stream_name("size")
        .set_records(Some(entries(501, 1)))
        .send()
        .await
        .expect_err("501 records");
    assert_eq!(
        too_many.into_service_error().meta().code(),
        Some("ValidationException")
    );

    let too_big = client
        .put_record()
        .stream_name("size")
        .partition_key("k")
        .data(Blob::new(vec![0u8; 1024 * 1024]))
        .send()
        .await
        .expect_err("1 MiB of data plus the key");
    assert_eq!(
        too_big.into_service_error().meta().code(),
        Some("ValidationException")
    );

    let total = client
        .put_records()
        .stream_name("size")
        .set_records(Some(entries(6, 1000 * 1000)))
        .send()
        .await
        .expect_err("6 MB in one call");
    assert!(total.into_service_error().is_invalid_argument_exception());

    let fits = client
        .put_record()
        .stream_name("size")
        .partition_key("k")
        .data(Blob::new(vec![0u8; 1024 * 1024 - 1]))
        .send()
        .await;
    assert!(fits.is_ok());
    emu.shutdown().await;
}
