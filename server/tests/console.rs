//! The web console in a real browser: headless Chromium driven by selenium
//! (`python/console_browser.py`) against a relay on the emulator, with records written by
//! `kinesis-producer`; and the console's files and its `--console off` switch over HTTP.

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;
use tokio::process::Command;

/// The `kinesis-producer` binary beside this test's, built if it is not there yet (a
/// workspace test run builds it anyway).
async fn producer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let producer = dir.join("kinesis-producer");
    if !producer.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "-p", "kinesis-producer"])
            .current_dir(repo_root())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "building kinesis-producer");
    }
    producer
}

async fn browser_available() -> bool {
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .await
        .is_ok_and(|status| status.success());
    selenium
        && Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
}

/// Runs `python/console_browser.py` against `relay` (and `token` if given); its output,
/// after checking that it succeeded and printed each of `checks`.
async fn run_browser(
    relay: &kinesis_relay::RunningRelay,
    emulator: &kinesis_emulator::Emulator,
    stream: &str,
    shards: usize,
    screenshot: &Path,
    token: Option<&str>,
    checks: &[&str],
) {
    let producer = producer_binary().await;
    let mut browser = Command::new("python3");
    browser
        .arg(repo_root().join("server/tests/python/console_browser.py"))
        .arg(relay.local_addr.to_string())
        .arg(stream)
        .arg(shards.to_string())
        .arg(emulator.endpoint_url())
        .arg(&producer)
        .arg(screenshot)
        .args(token)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(150), browser.output())
        .await
        .expect("the browser test finishes within 150 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in checks {
        assert!(stdout.contains(check), "missing {check:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn the_console_shows_the_stream_and_tails_filtered_records_in_a_browser() {
    if !require_tool(
        "Chromium, chromedriver and selenium",
        browser_available().await,
    ) {
        return;
    }
    let emulator = fast_emulator()
        .stream("console-stream", 3)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["console-stream"])).await;
    wait_active(&relay).await;
    let screenshot = std::env::temp_dir().join(format!("console-{}.png", std::process::id()));
    run_browser(
        &relay,
        &emulator,
        "console-stream",
        3,
        &screenshot,
        None,
        &[
            "console lists the stream and its shards",
            "tail shows the 10 records of key-1, in order, and no others",
            "resumed after the pause: 10 more records, none lost or repeated",
            "keyboard: Tab reaches the controls, Enter pauses",
            "phone-sized window: no horizontal scrolling",
        ],
    )
    .await;
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    let _ = std::fs::remove_file(&screenshot);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_console_works_with_a_pasted_token() {
    if !require_tool(
        "Chromium, chromedriver and selenium",
        browser_available().await,
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("console-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"console\"\ntoken = \"console-secret\"\nstreams = [\"console-auth\"]\n",
    )
    .unwrap();
    let emulator = fast_emulator()
        .stream("console-auth", 2)
        .start()
        .await
        .unwrap();
    let mut config = fast_config(&["console-auth"]);
    config.security.auth_tokens = Some(tokens);
    let relay = start_relay(&emulator, config).await;
    wait_active(&relay).await;
    let screenshot = dir.join("console.png");
    run_browser(
        &relay,
        &emulator,
        "console-auth",
        2,
        &screenshot,
        Some("console-secret"),
        &[
            "without a token: UNAUTHENTICATED; the pasted token is kept in sessionStorage only",
            "tail shows the 10 records of key-1, in order, and no others",
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_console_is_served_on_the_grpc_port_and_can_be_turned_off() {
    let emulator = fast_emulator()
        .stream("console-files", 1)
        .start()
        .await
        .unwrap();
    let relay = start_relay(&emulator, fast_config(&["console-files"])).await;
    let (status, response) = http_get(relay.local_addr, "/console/").await;
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("<title>kinesis-relay console</title>"));
    assert!(response.contains("content-security-policy: default-src 'none'"));
    let (status, response) = http_get(relay.local_addr, "/console/console.js").await;
    assert_eq!(status, 200);
    assert!(response.contains("text/javascript"));
    let (status, _) = http_get(relay.local_addr, "/console/nothing-here").await;
    assert_eq!(status, 404);
    relay.shutdown().await.unwrap();

    let mut config = fast_config(&["console-files"]);
    config.transport.console = false;
    let relay = start_relay(&emulator, config).await;
    let (status, _) = http_get(relay.local_addr, "/console/").await;
    assert_ne!(status, 200, "--console off serves no console");
    // The HTTP endpoints stay.
    let (status, _) = http_get(relay.local_addr, "/v1/streams").await;
    assert_eq!(status, 200);
    relay.shutdown().await.unwrap();
    emulator.shutdown().await;
}
