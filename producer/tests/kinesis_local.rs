//! The producer against kinesis-local (the npm package of kinesis-mock), an independent
//! Kinesis implementation. `.ci/run` starts it and sets KINESIS_LOCAL_URL; locally run
//! `producer/tests/start-kinesis-local.sh PORT` and export what it prints.

mod common;

use std::collections::HashMap;

use common::*;

#[tokio::test]
async fn lines_in_the_same_lines_back_with_their_keys() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let client = client(&url);
    let stream = stream_name("lines");
    create_stream(&client, &stream, 2).await;

    let lines: Vec<String> = (0..1000).map(|i| format!("line number {i}")).collect();
    let input = lines.join("\n") + "\n";
    let output = run_producer(
        &url,
        &[
            "--stream",
            &stream,
            "--partition-key",
            "key-{seq%7}",
            "--linger",
            "20ms",
        ],
        input.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1000 records written"),
        "{}",
        stderr(&output)
    );

    let read = read_all(&client, &stream, lines.len()).await;
    assert_eq!(read.len(), lines.len(), "exactly N records back");
    let mut by_data: HashMap<String, String> = read
        .into_iter()
        .map(|r| (String::from_utf8(r.data).unwrap(), r.partition_key))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        let key = by_data
            .remove(line)
            .unwrap_or_else(|| panic!("line {i} missing"));
        assert_eq!(key, format!("key-{}", i % 7));
    }
}

#[tokio::test]
async fn ordered_keeps_input_order_per_key() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let client = client(&url);
    let stream = stream_name("ordered");
    create_stream(&client, &stream, 2).await;

    let input: String = (0..600)
        .map(|i| format!("{{\"k\":\"u{}\",\"n\":{i}}}\n", i % 5))
        .collect();
    let output = run_producer(
        &url,
        &[
            "--stream",
            &stream,
            "--format",
            "json",
            "--key-field",
            "/k",
            "--ordered",
            "--linger",
            "0ms",
        ],
        input.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let read = read_all(&client, &stream, 600).await;
    assert_eq!(read.len(), 600);
    let mut last: HashMap<String, i64> = HashMap::new();
    for record in read {
        let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
        assert_eq!(value["k"], record.partition_key.as_str());
        let n = value["n"].as_i64().unwrap();
        if let Some(previous) = last.insert(record.partition_key.clone(), n) {
            assert!(
                n > previous,
                "key {} went from {previous} to {n}",
                record.partition_key
            );
        }
    }
}

#[tokio::test]
async fn oversized_record_is_refused_and_kept() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let client = client(&url);
    let stream = stream_name("big");
    create_stream(&client, &stream, 1).await;
    let failed = std::env::temp_dir().join(format!("{stream}.failed.jsonl"));

    let mut input = b"small one\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 1));
    input.extend_from_slice(b"\nsmall two\n");
    let output = run_producer(
        &url,
        &[
            "--stream",
            &stream,
            "--partition-key",
            "k",
            "--failed-output",
            failed.to_str().unwrap(),
        ],
        &input,
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(err.contains("over the 1 MiB Kinesis limit"), "{err}");
    assert!(err.contains("1 rejected"), "{err}");

    let lines = std::fs::read_to_string(&failed).unwrap();
    std::fs::remove_file(&failed).unwrap();
    assert_eq!(lines.lines().count(), 1);
    let value: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(value["error"], "RecordTooLarge");
    assert_eq!(value["partition_key"], "k");

    let read = read_all(&client, &stream, 2).await;
    let data: Vec<_> = read.iter().map(|r| r.data.as_slice()).collect();
    assert_eq!(data, vec![&b"small one"[..], &b"small two"[..]]);
}

#[tokio::test]
async fn missing_stream_is_one_line_and_exit_code_10() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let output = run_producer(&url, &["--stream", "no-such-stream-at-all"], b"a\n");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(10), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("stream 'no-such-stream-at-all' not found"),
        "{err}"
    );
}

#[tokio::test]
async fn generated_records_carry_seq_and_timestamp() {
    let Some(url) = kinesis_local_url() else {
        return;
    };
    let client = client(&url);
    let stream = stream_name("gen");
    create_stream(&client, &stream, 2).await;
    let output = run_producer(
        &url,
        &[
            "--stream",
            &stream,
            "--generate",
            "--count",
            "300",
            "--size",
            "120",
            "--summary-json",
        ],
        b"",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["records_written"], 300);
    assert_eq!(summary["shards"], 2);

    let read = read_all(&client, &stream, 300).await;
    let mut seqs: Vec<u64> = read
        .iter()
        .map(|r| {
            assert_eq!(r.data.len(), 120);
            let value: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
            assert!(value["ts_us"].as_u64().unwrap() > 0);
            value["seq"].as_u64().unwrap()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..300).collect::<Vec<_>>());
}
