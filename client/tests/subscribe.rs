//! The real `kinesis-relay-client subscribe` against a real relay on the emulator.

mod common;

use std::{collections::HashSet, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use common::{Setup, finish, lines, numbered, read_lines, run, signal};
use serde_json::Value;

fn sample() -> Vec<(String, Vec<u8>)> {
    vec![
        ("k1".into(), b"hello".to_vec()),
        ("k2".into(), b"bin\xff\x00".to_vec()),
        ("k3".into(), b"two\nlines".to_vec()),
    ]
}

#[tokio::test]
async fn each_format_prints_every_record() {
    let setup = Setup::start(&[("client-fmt", 1)]).await;
    let sequences = setup.put("client-fmt", &sample()).await;
    setup.wait_held("client-fmt", 3).await;
    let base = [
        "subscribe",
        "--from",
        "earliest",
        "--count",
        "3",
        "--format",
    ];

    let text = run(setup.client(&[&base[..], &["text"]].concat())).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert_eq!(
        String::from_utf8_lossy(&text.stdout),
        "hello\nbin\\xff\\x00\ntwo\\x0alines\n"
    );

    let raw = run(setup.client(&[&base[..], &["raw"]].concat())).await;
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    assert_eq!(raw.stdout, b"hellobin\xff\x00two\nlines");

    let b64 = run(setup.client(&[&base[..], &["base64"]].concat())).await;
    assert_eq!(b64.code, 0, "{}", b64.stderr);
    let decoded: Vec<Vec<u8>> = b64
        .lines()
        .iter()
        .map(|line| STANDARD.decode(line).unwrap())
        .collect();
    let expected: Vec<Vec<u8>> = sample().into_iter().map(|(_, data)| data).collect();
    assert_eq!(decoded, expected);

    let json = run(setup.client(&[&base[..], &["json"]].concat())).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let objects: Vec<Value> = json
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["stream"], "client-fmt");
    assert_eq!(objects[0]["shard_id"], "shardId-000000000000");
    assert_eq!(objects[0]["sequence_number"], sequences[0].as_str());
    assert_eq!(objects[0]["sub_sequence_number"], Value::Null);
    assert_eq!(objects[0]["partition_key"], "k1");
    assert_eq!(objects[0]["data"], "hello");
    assert_eq!(objects[0]["data_encoding"], "utf8");
    let arrival = objects[0]["arrival_time"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(arrival, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{arrival}"
    );
    assert_eq!(objects[1]["data_encoding"], "base64");
    assert_eq!(objects[1]["data"], STANDARD.encode(b"bin\xff\x00"));
    assert_eq!(objects[2]["data"], "two\nlines");
    setup.shutdown().await;
}

#[tokio::test]
async fn filters_select_keys_prefixes_and_shards() {
    let setup = Setup::start(&[("client-filter", 2)]).await;
    let mut records = numbered("rec", 40, 4);
    records.push(("special-1".into(), b"s1".to_vec()));
    records.push(("special-2".into(), b"s2".to_vec()));
    setup.put("client-filter", &records).await;
    setup.wait_held("client-filter", 42).await;
    let common = ["subscribe", "--from", "earliest", "--format", "json"];

    let by_key =
        run(setup.client(&[&common[..], &["--key", "key-1", "--count", "10"]].concat())).await;
    assert_eq!(by_key.code, 0, "{}", by_key.stderr);
    let keys: HashSet<String> = by_key
        .lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["partition_key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys, HashSet::from(["key-1".to_owned()]));
    assert_eq!(by_key.lines().len(), 10);

    let by_prefix =
        run(setup.client(&[&common[..], &["--key-prefix", "special-", "--count", "2"]].concat()))
            .await;
    assert_eq!(by_prefix.code, 0, "{}", by_prefix.stderr);
    let mut data: Vec<String> = by_prefix
        .lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["data"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    data.sort();
    assert_eq!(data, ["s1", "s2"]);

    let shard = "shardId-000000000001";
    let by_shard =
        run(setup.client(&[&common[..], &["--shard", shard, "--count", "5"]].concat())).await;
    assert_eq!(by_shard.code, 0, "{}", by_shard.stderr);
    assert_eq!(by_shard.lines().len(), 5);
    for line in by_shard.lines() {
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap()["shard_id"],
            shard
        );
    }
    setup.shutdown().await;
}

#[tokio::test]
async fn count_and_duration_stop_with_exit_code_zero() {
    let setup = Setup::start(&[("client-count", 1)]).await;
    setup.put("client-count", &numbered("c", 20, 3)).await;
    setup.wait_held("client-count", 20).await;
    let counted = run(setup.client(&["subscribe", "--from", "earliest", "--count", "7"])).await;
    assert_eq!(counted.code, 0, "{}", counted.stderr);
    assert_eq!(
        counted.lines(),
        (0..7).map(|i| format!("c-{i}")).collect::<Vec<_>>()
    );
    let timed = run(setup.client(&["subscribe", "--from", "latest", "--duration", "500ms"])).await;
    assert_eq!(timed.code, 0, "{}", timed.stderr);
    assert!(timed.stdout.is_empty());
    setup.shutdown().await;
}

#[tokio::test]
async fn resumes_across_a_relay_restart_without_loss_or_repeat() {
    let mut setup = Setup::start(&[("client-restart", 2)]).await;
    let mut child = setup
        .client(&[
            "subscribe",
            "--from",
            "earliest",
            "--count",
            "120",
            "--retry-timeout",
            "60s",
        ])
        .spawn()
        .unwrap();
    let mut out = lines(&mut child);
    setup
        .put("client-restart", &numbered("before", 60, 7))
        .await;
    let mut seen = read_lines(&mut out, 60).await;
    setup.stop_relay().await;
    // Written while the relay is down: the restarted relay reads them from Kinesis.
    setup
        .put("client-restart", &numbered("during", 30, 7))
        .await;
    setup.start_relay().await;
    setup.put("client-restart", &numbered("after", 30, 7)).await;
    seen.extend(read_lines(&mut out, 60).await);
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("subscription lost"), "{stderr}");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 120, "a record was repeated: {seen:?}");
    let expected: HashSet<String> = numbered("before", 60, 7)
        .into_iter()
        .chain(numbered("during", 30, 7))
        .chain(numbered("after", 30, 7))
        .map(|(_, data)| String::from_utf8(data).unwrap())
        .collect();
    assert_eq!(unique, expected.iter().collect());
    if stderr.contains("re-sent") {
        eprintln!("note: the client dropped records the relay sent twice: {stderr}");
    }
    setup.shutdown().await;
}

#[tokio::test]
async fn checkpoint_resumes_the_next_run_where_the_last_stopped() {
    let setup = Setup::start(&[("client-checkpoint", 2)]).await;
    setup.put("client-checkpoint", &numbered("cp", 30, 5)).await;
    setup.wait_held("client-checkpoint", 30).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cursor");
    let file = file.to_str().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let part = run(setup.client(&[
            "subscribe",
            "--from",
            "earliest",
            "--count",
            "7",
            "--checkpoint",
            file,
        ]))
        .await;
        assert_eq!(part.code, 0, "{}", part.stderr);
        assert_eq!(part.lines().len(), 7);
        seen.extend(part.lines());
    }
    // Interrupted with Ctrl-C: the checkpoint covers what was printed.
    let mut child = setup
        .client(&["subscribe", "--from", "earliest", "--checkpoint", file])
        .spawn()
        .unwrap();
    let mut out = lines(&mut child);
    seen.extend(read_lines(&mut out, 9).await);
    signal(&child, "INT").await;
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 130, "{stderr}");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 30, "repeat or loss: {seen:?}");
    setup
        .put("client-checkpoint", &numbered("late", 3, 5))
        .await;
    let rest = run(setup.client(&[
        "subscribe",
        "--from",
        "earliest",
        "--count",
        "3",
        "--checkpoint",
        file,
    ]))
    .await;
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    let mut late = rest.lines();
    late.sort();
    assert_eq!(late, ["late-0", "late-1", "late-2"], "{}", rest.stderr);
    setup.shutdown().await;
}

#[tokio::test]
async fn a_closed_pipe_ends_quietly() {
    let setup = Setup::start(&[("client-pipe", 1)]).await;
    setup.put("client-pipe", &numbered("p", 5, 2)).await;
    let mut child = setup
        .client(&["subscribe", "--from", "earliest"])
        .spawn()
        .unwrap();
    let mut out = lines(&mut child);
    read_lines(&mut out, 1).await;
    drop(out);
    // Keep records coming until the client notices the closed pipe.
    let pid_done = async {
        loop {
            setup.put("client-pipe", &numbered("more", 5, 2)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let status = tokio::select! {
        status = child.wait() => status.unwrap(),
        _ = pid_done => unreachable!(),
        _ = tokio::time::sleep(common::DEADLINE) => panic!("client kept running"),
    };
    let (_, stderr) = finish(child).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "expected a quiet exit: {stderr}");
    setup.shutdown().await;
}
