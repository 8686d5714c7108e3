//! Smoke test: `--catch-up --quick` prints its figures, every subscriber catching up gets
//! every record (the run fails otherwise), and 100 subscribers from the same position share
//! one reader: they cause at most 1.1 times the GetRecords calls of one, or one call more.
//! (A reader that has read up to the live records makes one more call at the tip, or not,
//! depending on whether its subscribers joined the ring before its next step; the quick run
//! needs only one or two calls, so that one call is beyond 10%. Readers that are not shared
//! make a call each, or are refused and fail the run.) Nothing about speed is asserted.
//! Needs no peer server: the emulator runs inside the harness.

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
    // "- shared reader: 100 subscribers made 1.00x the GetRecords calls of one (2 calls
    // against 2; target ...".
    let (crowd, single): (u64, u64) = stdout
        .lines()
        .find_map(|line| line.strip_prefix("- shared reader: 100 subscribers made "))
        .and_then(|rest| {
            rest.split_once(" of one (")?
                .1
                .split_once(" calls against ")
        })
        .and_then(|(crowd, rest)| {
            let single = rest.split_once(';')?.0;
            Some((crowd.parse().ok()?, single.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no shared-reader line in:\n{stdout}"));
    assert!(
        single > 0,
        "one subscriber caught up without a call:\n{stdout}"
    );
    assert!(
        crowd as f64 <= single as f64 * 1.1 || crowd <= single + 1,
        "100 subscribers from one position made {crowd} GetRecords calls, one made {single}:\n{stdout}"
    );
}
