//! Smoke test: `--quick` runs every system (the relay's SSE subscribers too) and each
//! delivers records with no gaps or repeats. Nothing about speed is asserted. Needs `bench/install-peers.sh`; without
//! redis-server or nats-server on PATH the test says so and passes, unless
//! `KINESIS_RELAY_BENCH_REQUIRE_PEERS` is set (CI sets it after installing them).

use std::process::Command;

/// Whether `program` runs.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn quick_matrix_delivers_every_record_on_every_system() {
    let peers = installed("redis-server") && installed("nats-server");
    if !peers {
        assert!(
            std::env::var_os("KINESIS_RELAY_BENCH_REQUIRE_PEERS").is_none(),
            "redis-server and nats-server are required: run bench/install-peers.sh"
        );
        eprintln!("SKIPPED: redis-server or nats-server missing; run bench/install-peers.sh");
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_kinesis-relay-bench"))
        .args([
            "--quick",
            "--systems",
            "relay,relay-16k,relay-sse,redis,nats",
            "--out",
        ])
        .arg(out.path())
        .status()
        .expect("the bench binary runs (redis-server and nats-server: bench/install-peers.sh)");
    assert!(status.success(), "bench --quick failed: {status}");

    let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    let (system, delivered, gaps, repeats, error, added_p99, per_cpu_s, steal, per_response) = (
        column("system"),
        column("delivered"),
        column("gaps"),
        column("repeats"),
        column("error"),
        column("added_p99_us"),
        column("deliveries_per_cpu_s"),
        column("steal_pct"),
        column("records_per_response"),
    );
    let mut seen = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.splitn(header.len(), ',').collect();
        let cell = line.to_string();
        assert_eq!(fields[error], "\"\"", "cell failed: {cell}");
        assert!(
            fields[delivered].parse::<u64>().unwrap() > 0,
            "nothing delivered: {cell}"
        );
        assert_eq!(fields[gaps], "0", "gaps: {cell}");
        assert_eq!(fields[repeats], "0", "repeats: {cell}");
        // Measured over a span with nothing in flight at either end (cell/span.rs): a span
        // that starts or ends with records in flight has no figure.
        assert!(
            fields[per_cpu_s].parse::<f64>().unwrap() > 0.0,
            "no deliveries per CPU-second: {cell}"
        );
        // Read from /proc/stat over the saturation span: a share of the machine's time.
        let stolen: f64 = fields[steal].parse().expect("steal_pct is a number");
        assert!((0.0..=100.0).contains(&stolen), "steal {stolen}%: {cell}");
        // Counted by the relay's gRPC subscribers, the only ones that get records in
        // responses.
        if fields[system] == "relay" || fields[system] == "relay-16k" {
            assert!(
                fields[per_response].parse::<f64>().unwrap() >= 1.0,
                "no records per response: {cell}"
            );
        } else {
            assert_eq!(fields[per_response], "", "{cell}");
        }
        // The relay's own share of the latency comes from its metrics; the others have none.
        if fields[system].starts_with("relay") {
            assert!(
                fields[added_p99].parse::<u64>().is_ok() || fields[added_p99] == "inf",
                "relay-added latency not measured: {cell}"
            );
        } else {
            assert_eq!(fields[added_p99], "", "{cell}");
        }
        seen.push(fields[system].to_owned());
    }
    for expected in ["relay", "relay-16k", "relay-sse", "redis", "nats"] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} did not run: {csv}"
        );
    }
    assert!(out.path().join("results.md").exists());
    assert!(out.path().join("results.png").exists());
    // One round each (--quick): every round, numbered, beside the medians.
    let rounds = std::fs::read_to_string(out.path().join("rounds.csv")).expect("rounds.csv");
    assert!(rounds.starts_with("round,system,"), "{rounds}");
    assert_eq!(rounds.lines().count(), csv.lines().count(), "{rounds}");
    assert!(
        rounds.lines().skip(1).all(|line| line.starts_with("1,")),
        "{rounds}"
    );
}

#[test]
fn soak_run_leaves_no_descriptor_behind() {
    // The soak run fails when the relay's open files do not come back after the churn;
    // its RSS figures are printed, not asserted.
    let output = Command::new(env!("CARGO_BIN_EXE_kinesis-relay-bench"))
        .args(["--soak", "--soak-cycles", "1000"])
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "soak failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| open files |"), "{stdout}");
}

#[test]
fn compressed_subscribers_get_every_record_in_fewer_bytes() {
    // One relay cell with JSON records: uncompressed, then subscribers accepting zstd. Only
    // the relay runs, so no peer is needed.
    let wire = |accept: &str| -> f64 {
        let out = tempfile::tempdir().expect("temp dir");
        let status = Command::new(env!("CARGO_BIN_EXE_kinesis-relay-bench"))
            .args([
                "--quick",
                "--systems",
                "relay",
                "--subscribers",
                "2",
                "--json-payloads",
                "--subscriber-compression",
                accept,
                "--out",
            ])
            .arg(out.path())
            .status()
            .expect("the bench binary runs");
        assert!(
            status.success(),
            "bench --subscriber-compression {accept} failed"
        );
        let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
        let line = lines.next().expect("one cell");
        let fields: Vec<&str> = line.splitn(header.len(), ',').collect();
        assert_eq!(fields[column("error")], "\"\"", "{line}");
        assert_eq!(fields[column("gaps")], "0", "{line}");
        assert_eq!(fields[column("repeats")], "0", "{line}");
        fields[column("wire_bytes_per_record")]
            .parse()
            .expect("wire bytes")
    };
    let (plain, zstd) = (wire("none"), wire("zstd"));
    // 1 KiB records: about 1 KiB each on the wire plain, a small fraction with zstd.
    assert!(plain > 900.0, "uncompressed: {plain} bytes per record");
    assert!(
        zstd * 4.0 < plain,
        "zstd: {zstd} bytes per record, {plain} uncompressed"
    );
}

#[test]
fn rounds_take_turns_and_the_report_keeps_one_row_per_system() {
    // Two relay systems (no peer needed), two rounds: each system runs in each round,
    // and the report has one row for each, the median round's.
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_kinesis-relay-bench"))
        .args([
            "--quick",
            "--systems",
            "relay,relay-16k",
            "--subscribers",
            "2",
            "--rounds",
            "2",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("the bench binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench --rounds 2 failed: {stderr}");
    let turns: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("round "))
        .collect();
    assert_eq!(turns.len(), 4, "two systems, two rounds each: {stderr}");
    assert!(turns[0].starts_with("round 1/2 relay "), "{turns:?}");
    assert!(
        turns[2].starts_with("round 2/2 relay-16k "),
        "the second round starts with the other system: {turns:?}"
    );
    let csv = std::fs::read_to_string(out.path().join("results.csv")).expect("results.csv");
    let systems: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().expect("system"))
        .collect();
    assert_eq!(systems, ["relay", "relay-16k"], "{csv}");
    let md = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert!(md.contains("Each cell ran 2 rounds"), "{md}");
}
