//! Resuming past the relay's ring: the real `kinesis-relay-client subscribe --checkpoint`
//! and a relay fed by another relay (`--upstream-relay`) come back after the ring was
//! overrun, and the relay reads what they missed from Kinesis (catch-up).

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{Setup, client, eventually, finish, lines, numbered, read_lines, run, signal};
use kinesis_relay::{
    RelayConfig, RunningRelay, embedded::client_for, hub::RingLimits,
    ingest::upstream_relay::UpstreamRelay,
};

/// Holds about 140 of these tests' records (an entry costs some 450 bytes): the records
/// written before the stop fit, those written while the subscriber is away overrun it.
fn small_ring() -> RingLimits {
    RingLimits {
        max_bytes: 64 << 10,
        max_age: Duration::from_secs(600),
    }
}

/// Records written while the subscriber is away: several rings' worth, and within the
/// emulator's write limit of one shard (1000 records a second).
const AWAY: usize = 600;

/// The data of `records`.
fn texts(records: &[(String, Vec<u8>)]) -> Vec<String> {
    records
        .iter()
        .map(|(_, data)| String::from_utf8(data.clone()).unwrap())
        .collect()
}

/// Waits until `relay`'s ring of its only stream holds `end` records in all and no longer
/// the first `dropped` + 1 of them.
async fn wait_overrun(relay: &RunningRelay, end: u64, dropped: u64) {
    eventually(
        "the ring to drop the records the subscriber has not read",
        || async {
            relay.hubs[0]
                .view()
                .shards()
                .all(|shard| shard.end_index() == end && shard.oldest_index() > dropped)
        },
    )
    .await;
}

#[tokio::test]
async fn a_checkpoint_older_than_the_ring_resumes_every_record_once() {
    let setup = Setup::start_with(&[("client-catch-up", 1)], small_ring()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cursor");
    let file = file.to_str().unwrap();
    let subscribe = ["subscribe", "--from", "earliest", "--checkpoint", file];

    // Stopped with Ctrl-C after the records written so far.
    let mut child = setup.client(&subscribe).spawn().unwrap();
    let mut out = lines(&mut child);
    let before = numbered("before", 20, 3);
    setup.put("client-catch-up", &before).await;
    let mut seen = read_lines(&mut out, before.len()).await;
    signal(&child, "INT").await;
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 130, "{stderr}");
    while let Ok(Some(line)) = out.next_line().await {
        seen.push(line);
    }
    assert_eq!(seen, texts(&before));

    // While it is down the ring is overrun.
    let away = numbered("away", AWAY, 3);
    setup.put("client-catch-up", &away).await;
    let relay = setup.relay.as_ref().unwrap();
    wait_overrun(relay, (before.len() + AWAY) as u64, before.len() as u64).await;

    let resumed =
        run(setup.client(&[&subscribe[..], &["--count", &AWAY.to_string()]].concat())).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed.lines() == texts(&away),
        "not every record once, in order: {:?}\n{}",
        resumed.lines(),
        resumed.stderr
    );
    // The client drops records sent twice itself; it says so when the relay sent any.
    assert!(
        !resumed.stderr.contains("gap") && !resumed.stderr.contains("re-sent"),
        "no gap and no repeat reported: {}",
        resumed.stderr
    );
    assert!(relay.catch_ups[0].counters.calls.load(Ordering::Relaxed) >= 1);

    // The checkpoint the resumed run left is right after its last record.
    let late = numbered("late", 5, 3);
    setup.put("client-catch-up", &late).await;
    let rest = run(setup.client(&[&subscribe[..], &["--count", "5"]].concat())).await;
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    assert_eq!(rest.lines(), texts(&late));
    setup.shutdown().await;
}

/// A relay fed by `upstream`, keeping its upstream cursor in `state_dir`.
fn downstream_config(upstream: &Setup, state_dir: &std::path::Path) -> RelayConfig {
    let mut config = upstream.config.clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.rings = RingLimits::default();
    config.ingest.upstream = Some(UpstreamRelay {
        url: upstream.url(),
        token: None,
        ca_cert: None,
    });
    config.ingest.state_dir = Some(state_dir.to_owned());
    config
}

/// Starts a relay fed by another relay and waits until it follows the upstream's shards.
async fn start_downstream(config: RelayConfig) -> RunningRelay {
    // It reads no Kinesis: an address where nothing answers.
    let relay = kinesis_relay::start(config, client_for("http://127.0.0.1:9"))
        .await
        .expect("downstream relay starts");
    eventually("the downstream relay to follow the upstream", || async {
        let view = relay.hubs[0].view();
        view.shards().count() > 0
            && view
                .shards()
                .all(|shard| shard.state() == kinesis_relay::hub::ReaderState::Reading)
    })
    .await;
    relay
}

#[tokio::test]
async fn a_downstream_relay_restarted_past_the_upstream_ring_loses_and_repeats_nothing() {
    let setup = Setup::start_with(&[("tier-catch-up", 1)], small_ring()).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = downstream_config(&setup, state.path());
    let downstream = start_downstream(config.clone()).await;
    // Restarted on the same address, so that its subscriber reconnects to it.
    config.listen = downstream.local_addr;
    let url = format!("http://{}", downstream.local_addr);
    let checkpoint = state.path().join("subscriber-cursor");
    let mut child = client(
        &url,
        &[
            "subscribe",
            "--from",
            "earliest",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--retry-timeout",
            "60s",
        ],
    )
    .spawn()
    .unwrap();
    let mut out = lines(&mut child);
    let before = numbered("before", 20, 3);
    setup.put("tier-catch-up", &before).await;
    let mut seen = read_lines(&mut out, before.len()).await;

    // The downstream relay stops (storing its upstream cursor); the upstream's ring is
    // overrun meanwhile.
    downstream
        .shutdown()
        .await
        .expect("downstream stops cleanly");
    let away = numbered("away", AWAY, 3);
    setup.put("tier-catch-up", &away).await;
    let upstream = setup.relay.as_ref().unwrap();
    wait_overrun(upstream, (before.len() + AWAY) as u64, before.len() as u64).await;

    let downstream = start_downstream(config).await;
    let after = numbered("after", 5, 3);
    setup.put("tier-catch-up", &after).await;
    seen.extend(read_lines(&mut out, AWAY + after.len()).await);
    signal(&child, "INT").await;
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 130, "{stderr}");
    while let Ok(Some(line)) = out.next_line().await {
        seen.push(line);
    }
    let want: Vec<String> = [texts(&before), texts(&away), texts(&after)].concat();
    assert!(
        seen == want,
        "not every record once, in order: {seen:?}\n{stderr}"
    );
    // The client drops records sent twice itself; it says so when the relay sent any.
    assert!(!stderr.contains("re-sent"), "{stderr}");
    assert!(
        upstream.catch_ups[0].counters.calls.load(Ordering::Relaxed) >= 1,
        "the upstream relay read the records past its ring from Kinesis"
    );
    downstream.shutdown().await.unwrap();
    setup.shutdown().await;
}
