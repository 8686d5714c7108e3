//! Smoke test: `--catch-up --quick` prints its figures, every subscriber catching up gets
//! every record (the run fails otherwise), and 100 subscribers from the same position share
//! one reader: the emulator sees no more readers start (GetShardIterator calls) for them
//! than for one subscriber, and fewer GetRecords calls than one per subscriber. The
//! GetRecords ratio against one subscriber is printed, not asserted: at this size one
//! reader makes a handful of calls, and how many it makes past the old records, at the live
//! tip, depends on how soon the slowest subscriber joins the ring. Nothing about speed is
//! asserted. Needs no peer server: the emulator runs inside the harness.

use std::process::Command;

#[test]
fn catch_up_quick_prints_figures_and_shares_one_reader() {
    let output = Command::new(env!("CARGO_BIN_EXE_kinesis-relay-bench"))
        .args(["--catch-up", "--quick"])
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "--catch-up --quick failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "**Reading one shard back**",
        "| on (5 calls/s, 2 MiB/s per shard) |",
        "| off, the relay's budget lifted |",
        "**Catching up beside live subscribers**",
        "| 1 subscriber from trim_horizon |",
        "| 100 subscribers from trim_horizon |",
        ", 0 gaps, 0 repeats in all.",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // "- shared reader: 100 subscribers from one position were served by 1 reader(s), one
    // subscriber by 1 (GetShardIterator calls)"
    let (crowd_readers, single_readers): (u64, u64) = stdout
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(
                "- shared reader: 100 subscribers from one position were served by ",
            )?;
            let (crowd, rest) = rest.split_once(" reader(s), one subscriber by ")?;
            let (single, _) = rest.split_once(' ')?;
            Some((crowd.parse().ok()?, single.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no shared-reader line in:\n{stdout}"));
    assert!(
        single_readers > 0,
        "one subscriber caught up without a reader:\n{stdout}"
    );
    assert!(
        crowd_readers as f64 <= single_readers as f64 * 1.1,
        "100 subscribers from one position needed {crowd_readers} readers, one needed {single_readers}:\n{stdout}"
    );
    // "- GetRecords calls: 100 subscribers made 1.00x the calls of one (3 against 3; ..."
    let crowd_calls: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("- GetRecords calls: 100 subscribers made "))
        .and_then(|rest| rest.split_once(" of one (")?.1.split_once(" against "))
        .and_then(|(calls, _)| calls.parse().ok())
        .unwrap_or_else(|| panic!("no GetRecords line in:\n{stdout}"));
    assert!(
        crowd_calls < 100,
        "100 subscribers made {crowd_calls} GetRecords calls, one or more each:\n{stdout}"
    );
}
