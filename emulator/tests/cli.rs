//! The `kinesis-emulator` binary: help text, startup, streams from flags.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-emulator");

#[test]
fn help_explains_every_flag() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--create-stream",
        "--consumer-activation-delay",
        "--idle-event-interval",
        "--subscription-lifetime",
        "--takeover-window",
        "--push-delay",
        "--retention",
        "--iterator-lifetime",
        "KINESIS_EMULATOR_ITERATOR_LIFETIME",
        "--no-limits",
        "--tls",
        "--tls-cert-out",
        "KINESIS_EMULATOR_LISTEN",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flags_fail_with_a_message() {
    let output = Command::new(BIN)
        .args(["--create-stream", "no-shard-count"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("NAME:SHARDS"));
    let output = Command::new(BIN)
        .args(["--iterator-lifetime", "soon"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--iterator-lifetime"), "{stderr}");
}

/// Starts the binary on a free port; returns the child and the URL it printed.
async fn start(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--log", "warn"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .expect("the URL is printed in time")
        .unwrap()
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("kinesis-emulator listening on ")
        .expect("URL line")
        .to_owned();
    (child, url)
}

fn sdk_client(url: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .endpoint_url(url)
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "a", "b", None, None, "t",
        ))
        .behavior_version_latest()
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

#[tokio::test]
async fn iterator_lifetime_is_read_from_the_environment() {
    let (mut child, url) = start(
        &["--create-stream", "expiring:1", "--no-limits"],
        &[("KINESIS_EMULATOR_ITERATOR_LIFETIME", "200ms")],
    )
    .await;
    let client = sdk_client(&url);
    let issued = Instant::now();
    let iterator = client
        .get_shard_iterator()
        .stream_name("expiring")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let expired = loop {
        match client.get_records().shard_iterator(&iterator).send().await {
            Ok(_) => {}
            Err(err) => break err.into_service_error(),
        }
        assert!(Instant::now() < deadline, "the iterator never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(expired.is_expired_iterator_exception(), "{expired:?}");
    assert!(issued.elapsed() >= Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn starts_with_streams_and_prints_its_url() {
    let (mut child, url) = start(
        &["--create-stream", "demo:4"],
        &[("KINESIS_EMULATOR_CREATE_STREAMS", "ignored:1")],
    )
    .await;
    let addr = url.strip_prefix("http://").unwrap().to_owned();

    // The control endpoint answers on the same port.
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok(mut socket) = tokio::net::TcpStream::connect(&addr).await {
            socket
                .write_all(
                    b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            let mut response = String::new();
            socket.read_to_string(&mut response).await.unwrap();
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator never accepted a connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(health.contains("\"ok\""), "{health}");

    let client = sdk_client(&url);
    let summary = client
        .describe_stream_summary()
        .stream_name("demo")
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .open_shard_count(),
        4
    );
    // The flag wins over the environment variable.
    assert!(
        client
            .describe_stream_summary()
            .stream_name("ignored")
            .send()
            .await
            .is_err()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
