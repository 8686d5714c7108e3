//! `streams`, `describe` and `--help`.

mod common;

use std::path::PathBuf;

use common::{Setup, client, run};
use serde_json::Value;

#[tokio::test]
async fn streams_and_describe_as_table_and_json() {
    let setup = Setup::start(&[("client-desc-a", 2), ("client-desc-b", 1)]).await;
    let table = run(setup.client(&["streams"])).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines = table.lines();
    assert!(lines[0].starts_with("STREAM"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("client-desc-a") && l.contains("2"))
    );

    let json = run(setup.client(&["streams", "--json"])).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let streams: Vec<Value> = json
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0]["name"], "client-desc-a");
    assert_eq!(streams[0]["shard_count"], 2);

    let described = run(setup.client(&["describe", "--stream", "client-desc-a", "--json"])).await;
    assert_eq!(described.code, 0, "{}", described.stderr);
    let stream: Value = serde_json::from_str(&described.lines()[0]).unwrap();
    assert_eq!(stream["stream"], "client-desc-a");
    assert_eq!(stream["shards"].as_array().unwrap().len(), 2);
    assert_eq!(stream["shards"][0]["state"], "READING");
    assert!(stream["oldest_cursor"].as_str().is_some());

    let all = run(setup.client(&["describe"])).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    let text = String::from_utf8_lossy(&all.stdout);
    assert!(text.contains("stream client-desc-a"), "{text}");
    assert!(text.contains("stream client-desc-b"), "{text}");
    assert!(text.contains("shardId-000000000001"), "{text}");
    setup.shutdown().await;
}

/// Compares `--help` output with the stored snapshot; `UPDATE_SNAPSHOTS=1` rewrites it.
async fn check_help(args: &[&str], snapshot: &str) {
    let output = run(client("http://127.0.0.1:1", args)).await;
    assert_eq!(output.code, 0, "{}", output.stderr);
    let actual = String::from_utf8(output.stdout).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(snapshot);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "--help changed; if intended, run with UPDATE_SNAPSHOTS=1 and review {}",
        path.display()
    );
}

#[tokio::test]
async fn help_matches_the_snapshots() {
    check_help(&["--help"], "help.txt").await;
    check_help(&["subscribe", "--help"], "subscribe-help.txt").await;
    check_help(&["archive", "--help"], "archive-help.txt").await;
}
