//! The contract from outside Rust: grpcurl through server reflection (v1alpha, as grpcurl
//! 1.8 speaks it) and a Python client generated from `proto/` by grpcio-tools.

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::*;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

async fn grpcurl(args: &[&str]) -> (bool, String) {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn grpcurl_available() -> bool {
    Command::new("grpcurl")
        .arg("-version")
        .output()
        .await
        .is_ok()
}

#[tokio::test]
async fn grpcurl_lists_describes_checks_health_and_subscribes() {
    if !require_tool("grpcurl", grpcurl_available().await) {
        return;
    }
    let emulator = fast_emulator()
        .stream("grpcurl-stream", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["grpcurl-stream"])).await;
    wait_active(&relay).await;
    let addr = relay.local_addr.to_string();

    let (ok, listed) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{listed}");
    assert!(listed.contains("kinesis_relay.v1.Relay"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    let (ok, described) =
        grpcurl(&["-plaintext", &addr, "describe", "kinesis_relay.v1.Relay"]).await;
    assert!(ok, "{described}");
    assert!(described.contains("rpc Subscribe"), "{described}");
    assert!(
        described.contains("stream .kinesis_relay.v1.SubscribeResponse"),
        "{described}"
    );
    // Comments of the proto travel through reflection.
    assert!(described.contains("Every"), "{described}");

    let (ok, message) =
        grpcurl(&["-plaintext", &addr, "describe", "kinesis_relay.v1.Record"]).await;
    assert!(ok && message.contains("sequence_number"), "{message}");

    // Health turns SERVING once every stream has a live subscription.
    eventually("grpcurl to report the relay SERVING", || {
        let addr = addr.clone();
        async move {
            let (ok, health) = grpcurl(&[
                "-plaintext",
                "-d",
                r#"{"service":"kinesis_relay.v1.Relay"}"#,
                &addr,
                "grpc.health.v1.Health/Check",
            ])
            .await;
            ok && health.contains("\"SERVING\"")
        }
    })
    .await;

    let (ok, streams) = grpcurl(&["-plaintext", &addr, "kinesis_relay.v1.Relay/ListStreams"]).await;
    assert!(ok && streams.contains("grpcurl-stream"), "{streams}");

    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, "grpcurl-stream", &numbered("via-grpcurl", 3, 3)).await;
    let mut child = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-max-time",
            "30",
            "-d",
            r#"{"stream":"grpcurl-stream","earliest":{}}"#,
            &addr,
            "kinesis_relay.v1.Relay/Subscribe",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let wanted: Vec<String> = (0..3)
        .map(|i| base64_of(format!("via-grpcurl-{i}").as_bytes()))
        .collect();
    tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            for data in &wanted {
                if line.contains(data.as_str()) && !seen.contains(data) {
                    seen.push(data.clone());
                }
            }
            if seen.len() == wanted.len() {
                break;
            }
        }
    })
    .await
    .expect("grpcurl prints the records");
    assert_eq!(seen.len(), 3);
    child.kill().await.ok();
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn python_client_generated_from_the_proto_subscribes() {
    let has_tools = Command::new("python3")
        .args(["-c", "import grpc_tools, grpc"])
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !require_tool("python3 with grpcio-tools", has_tools) {
        return;
    }
    let generated = std::env::temp_dir().join(format!("relay-python-{}", std::process::id()));
    std::fs::create_dir_all(&generated).unwrap();
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo_root().join("proto"))
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .arg("kinesis_relay/v1/relay.proto")
        .status()
        .await
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc generates the client");

    let emulator = fast_emulator()
        .stream("python-stream", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["python-stream"])).await;
    wait_active(&relay).await;
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, "python-stream", &numbered("from-python", 5, 5)).await;

    // Once plain, once with every request compressed with gzip.
    for compression in ["none", "gzip"] {
        let mut python = Command::new("python3");
        python
            .arg(repo_root().join("server/tests/python/relay_client.py"))
            .arg(&generated)
            .arg(relay.local_addr.to_string())
            .arg("python-stream")
            .arg("5")
            .arg(compression);
        let stdout = run_client(python, &format!("python client ({compression})")).await;
        assert!(
            stdout.contains(r#""streams": ["python-stream"]"#),
            "{stdout}"
        );
        assert!(stdout.contains(r#""shards": 2"#), "{stdout}");
        expect_records(&stdout, "from-python", 5);
    }
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&generated);
}

#[tokio::test]
async fn node_grpc_js_client_with_gzip_requests_subscribes() {
    let modules = repo_root().join(".peers/node_modules");
    let has_tools = modules.join("@grpc/grpc-js").is_dir()
        && modules.join("@grpc/proto-loader").is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .await
            .is_ok_and(|out| out.status.success());
    if !require_tool("node with @grpc/grpc-js (scripts/peers.sh)", has_tools) {
        return;
    }
    let emulator = fast_emulator()
        .stream("node-stream", 2)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["node-stream"])).await;
    wait_active(&relay).await;
    let kinesis = kinesis_relay::embedded::client_for(&emulator.endpoint_url());
    put(&kinesis, "node-stream", &numbered("from-node", 5, 5)).await;

    let mut node = Command::new("node");
    node.arg(repo_root().join("server/tests/node/relay_client.js"))
        .arg(repo_root().join("proto"))
        .arg(relay.local_addr.to_string())
        .arg("node-stream")
        .arg("5")
        .env("NODE_PATH", &modules);
    let stdout = run_client(node, "node client").await;
    assert!(
        stdout.contains(r#"{"streams":["node-stream"]}"#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"{"shards":2}"#), "{stdout}");
    expect_records(&stdout, "from-node", 5);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

/// Runs a client program of another language to its end; its standard output.
async fn run_client(mut command: Command, what: &str) -> String {
    let output = tokio::time::timeout(DEADLINE + Duration::from_secs(10), command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} finishes"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts that `stdout` holds the records `prefix-0` to `prefix-{count - 1}`.
fn expect_records(stdout: &str, prefix: &str, count: usize) {
    for i in 0..count {
        assert!(stdout.contains(&format!("{prefix}-{i}")), "{stdout}");
    }
}
