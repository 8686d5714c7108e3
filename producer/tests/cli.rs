//! The command line without any Kinesis: help, usage errors, credentials and endpoint
//! errors, each with its exit code and one clear line.

mod common;

use std::process::Command;

use common::{producer_command, stderr};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kinesis-producer"))
}

#[test]
fn help_documents_flags_env_and_exit_codes() {
    let output = bin().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--stream <STREAM>",
        "[env: KINESIS_STREAM=]",
        "--failed-output",
        "--aggregate",
        "--ordered",
        "--linger",
        "--explicit-hash-key",
        "Exit codes:",
        "10   stream not found",
        "11   no AWS credentials",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let output = bin().env_remove("KINESIS_STREAM").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = bin()
        .args(["--stream", "s", "--key-field", "/id"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--key-field needs --format json"));
    let output = bin()
        .args(["--stream", "s", "--partition-key", "{nope}"])
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unknown placeholder"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_credentials_exit_11_with_one_line() {
    let output = producer_command("http://127.0.0.1:9")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["--stream", "s"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(11), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no usable AWS credentials"), "{err}");
}

#[test]
fn no_region_exit_12() {
    let output = producer_command("http://127.0.0.1:9")
        .env_remove("AWS_REGION")
        .args(["--stream", "s"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(12), "{err}");
    assert!(err.contains("no AWS region configured"), "{err}");
}

#[test]
fn unreachable_endpoint_exit_12() {
    // Port 9 (discard) is closed on test machines: connection refused.
    let output = producer_command("http://127.0.0.1:9")
        .args(["--stream", "s"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(12), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the Kinesis endpoint"), "{err}");
}
