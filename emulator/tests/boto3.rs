//! boto3's `subscribe_to_shard` against the emulator: runs tests/python/test_boto3.py.
//! Skipped, with a message, only when python3 cannot import boto3 outside CI; under CI
//! (`CI` set, as `.ci/run` does after installing boto3) a missing boto3 fails the test.

use kinesis_emulator::Emulator;
use std::process::Command;
use std::time::Duration;

fn boto3_available() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_subscribe_to_shard() {
    if !boto3_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "boto3 is required in CI (scripts/peers.sh installs it)"
        );
        eprintln!(
            "SKIPPED boto3_subscribe_to_shard: python3 cannot import boto3 (pip install boto3)"
        );
        return;
    }
    let emu = Emulator::builder()
        .consumer_activation_delay(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/test_boto3.py");
    let endpoint = emu.endpoint_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("KINESIS_EMULATOR_ENDPOINT", endpoint)
            .output()
            .expect("run python3")
    });
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("python finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    emu.shutdown().await;
}
