//! The producer against the project's emulator, in-process on a free port, with the
//! per-shard limits on: nothing lost under throttling, aggregation that unpacks record for
//! record, order per key, the failed-output file.

mod common;

use std::collections::HashMap;

use common::*;
use kinesis_emulator::Emulator;
use kinesis_relay_api::kpl;

async fn emulator(stream: &str, shards: u32) -> Emulator {
    Emulator::builder()
        .stream(stream, shards)
        .limits(true)
        .start()
        .await
        .expect("start emulator")
}

/// Runs the binary off the async threads, so the in-process emulator keeps serving.
async fn produce(url: &str, args: Vec<String>, stdin: Vec<u8>) -> std::process::Output {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_producer(&url, &args, &stdin)
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn numbered_lines(n: usize) -> (Vec<String>, Vec<u8>) {
    let lines: Vec<String> = (0..n).map(|i| format!("record {i:06}")).collect();
    let input = (lines.join("\n") + "\n").into_bytes();
    (lines, input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_nothing_is_lost() {
    let emu = emulator("throttled", 2).await;
    let url = emu.endpoint_url();
    // Whole requests throttled, then per-entry throttling from the real limits: 3000
    // records with the producer's own limiter off overrun the 1000 records/s buckets.
    emu.handle()
        .fail_next("PutRecords", 3, "ProvisionedThroughputExceededException");
    let (lines, input) = numbered_lines(3000);
    let output = produce(
        &url,
        strings(&[
            "--stream",
            "throttled",
            "--partition-key",
            "{seq}",
            "--summary-json",
            "--shard-records-per-sec",
            "0",
            "--linger",
            "10ms",
        ]),
        input,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["records_written"], 3000);
    assert!(summary["throttles"].as_u64().unwrap() >= 3, "{summary}");
    assert!(summary["retries"].as_u64().unwrap() >= 3, "{summary}");

    let client = client(&url);
    let read = read_all(&client, "throttled", lines.len()).await;
    assert_eq!(
        read.len(),
        lines.len(),
        "exactly N back, no duplicates, none lost"
    );
    let mut data: Vec<String> = read
        .into_iter()
        .map(|r| String::from_utf8(r.data).unwrap())
        .collect();
    data.sort();
    assert_eq!(data, lines);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_keeps_throttling_rare() {
    let emu = emulator("paced", 1).await;
    let url = emu.endpoint_url();
    let output = produce(
        &url,
        strings(&[
            "--stream",
            "paced",
            "--generate",
            "--count",
            "2500",
            "--summary-json",
        ]),
        Vec::new(),
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["records_written"], 2500);
    // 2500 records at 1000/s into one shard whose bucket holds one second: paced, not
    // throttled.
    assert_eq!(summary["throttles"], 0, "{summary}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_unpack_record_for_record() {
    let emu = emulator("packed", 2).await;
    let url = emu.endpoint_url();
    let (lines, input) = numbered_lines(20_000);
    let output = produce(
        &url,
        strings(&[
            "--stream",
            "packed",
            "--aggregate",
            "--partition-key",
            "k{seq%13}",
            "--summary-json",
        ]),
        input,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["records_written"], 20_000);
    let kinesis_records = summary["kinesis_records"].as_u64().unwrap();
    assert!(
        kinesis_records < 100,
        "aggregated into {kinesis_records} Kinesis records"
    );

    let read = read_all(&client(&url), "packed", kinesis_records as usize).await;
    assert_eq!(read.len() as u64, kinesis_records);
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    let mut total = 0;
    for record in read {
        assert!(kpl::is_aggregated(&record.data));
        for user in kpl::deaggregate(&record.data).unwrap() {
            total += 1;
            per_key
                .entry(user.partition_key)
                .or_default()
                .push(String::from_utf8(user.data.to_vec()).unwrap());
        }
    }
    assert_eq!(total, lines.len());
    for (i, line) in lines.iter().enumerate() {
        let key = format!("k{}", i % 13);
        assert!(per_key[&key].contains(line), "{line} missing under {key}");
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_with_throttling_keeps_order_per_key() {
    let emu = emulator("ordered", 2).await;
    let url = emu.endpoint_url();
    emu.handle()
        .fail_next("PutRecords", 2, "ProvisionedThroughputExceededException");
    emu.handle().fail_next("PutRecords", 1, "InternalFailure");
    let input: String = (0..1500)
        .map(|i| format!("{{\"user\":\"u{}\",\"n\":{i}}}\n", i % 40))
        .collect();
    let output = produce(
        &url,
        strings(&[
            "--stream",
            "ordered",
            "--format",
            "json",
            "--key-field",
            "/user",
            "--ordered",
            "--shard-records-per-sec",
            "0",
            "--linger",
            "5ms",
        ]),
        input.into_bytes(),
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));

    let read = read_all(&client(&url), "ordered", 1500).await;
    assert_eq!(read.len(), 1500);
    let mut last: HashMap<String, i64> = HashMap::new();
    for record in read {
        let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
        assert_eq!(value["user"], record.partition_key.as_str());
        let n = value["n"].as_i64().unwrap();
        if let Some(previous) = last.insert(record.partition_key.clone(), n) {
            assert!(
                n > previous,
                "{}: {previous} then {n}",
                record.partition_key
            );
        }
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_keep_failing_go_to_the_failed_output() {
    let emu = emulator("failing", 1).await;
    let url = emu.endpoint_url();
    emu.handle()
        .fail_next("PutRecords", 100, "ProvisionedThroughputExceededException");
    let failed = std::env::temp_dir().join(format!("failing-{}.jsonl", std::process::id()));
    let output = produce(
        &url,
        strings(&[
            "--stream",
            "failing",
            "--partition-key",
            "p{seq}",
            "--max-attempts",
            "3",
            "--failed-output",
            failed.to_str().unwrap(),
            "--linger",
            "0ms",
        ]),
        b"one\ntwo\nthree\n".to_vec(),
    )
    .await;
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(err.contains("3 failed"), "{err}");

    let text = std::fs::read_to_string(&failed).unwrap();
    std::fs::remove_file(&failed).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|v| v["partition_key"].as_str().unwrap().to_owned());
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["partition_key"], "p0");
    assert_eq!(lines[0]["data"], "b25l"); // base64("one")
    assert_eq!(lines[0]["error"], "ProvisionedThroughputExceededException");
    assert_eq!(emu.handle().stored_records("failing").unwrap(), 0);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_mid_run_is_followed_and_nothing_is_lost() {
    let emu = emulator("resharded", 1).await;
    let url = emu.endpoint_url();
    let producer_url = url.clone();
    let run = tokio::spawn(async move {
        let args = strings(&[
            "--stream",
            "resharded",
            "--generate",
            "--rate",
            "1500/s",
            "--count",
            "4500",
            "--partition-key",
            "{seq}",
            "--summary-json",
        ]);
        produce(&producer_url, args, Vec::new()).await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while emu.handle().stored_records("resharded").unwrap() < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "producer wrote nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let client = client(&url);
    client
        .update_shard_count()
        .stream_name("resharded")
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");

    let output = run.await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["records_written"], 4500, "{summary}");
    assert_eq!(
        summary["shards"], 2,
        "the producer re-read the shard map: {summary}"
    );

    let read = read_all(&client, "resharded", 4500).await;
    let mut seqs: Vec<u64> = read
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.data).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..4500).collect::<Vec<_>>());
    emu.shutdown().await;
}
