//! Benchmark (not a test): user records per second and per shard that kinesis-producer
//! writes into the project's emulator with its per-shard limits on (1000 records/s and
//! 1 MiB/s per shard, as Kinesis), for 100-byte records, without and with `--aggregate`.
//!
//! ```text
//! cargo run --release -p kinesis-producer --example bench
//! BENCH_SECS=20 BENCH_SHARDS=4 cargo run --release -p kinesis-producer --example bench
//! ```
//!
//! Targets: at least 95% of 1000 records/s per shard without aggregation, at least 9,000
//! user records/s per shard with it (the 1 MiB/s byte limit is then the ceiling).

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use clap::Parser;
use kinesis_emulator::Emulator;
use kinesis_producer::cli::Args;
use kinesis_producer::shard_map::ShardMap;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = env_or("BENCH_SECS", 10);
    let shards = env_or("BENCH_SHARDS", 1) as u32;
    println!(
        "kinesis-producer into the emulator, limits on, {shards} shard(s), 100-byte records, ~{secs} s per run"
    );
    println!(
        "{:<12} {:>10} {:>9} {:>12} {:>12} {:>9} {:>10}",
        "mode", "records", "seconds", "records/s", "busiest/s", "of limit", "throttled"
    );
    for (name, aggregate, per_shard_target) in
        [("plain", false, 1000), ("aggregated", true, 10_000)]
    {
        let stream = format!("bench-{name}");
        let emu = Emulator::builder()
            .stream(&stream, shards)
            .limits(true)
            .start()
            .await?;
        let count = per_shard_target * secs * u64::from(shards);
        let mut argv = vec![
            "kinesis-producer".to_string(),
            "--stream".into(),
            stream.clone(),
            "--generate".into(),
            "--count".into(),
            count.to_string(),
            "--size".into(),
            "100".into(),
            // Few distinct keys: an aggregate stores each key once, so 100-byte records
            // cost ~106 bytes each and 1 MiB/s holds ~9,800 of them.
            "--partition-key".into(),
            "k{seq%64}".into(),
            "--quiet".into(),
            "--no-progress".into(),
        ];
        if aggregate {
            argv.push("--aggregate".into());
        }
        let args = Args::parse_from(argv);
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(emu.endpoint_url())
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .build();
        let client = aws_sdk_kinesis::Client::from_conf(config);
        let map = ShardMap::list(&client, &stream, "us-east-1").await?;
        let report = kinesis_producer::produce_with(args, client, "us-east-1".into()).await?;
        let summary = report.summary.expect("a full run");
        anyhow::ensure!(
            report.exit_code.is_success() && summary.records_written == count,
            "run failed: {:?} {summary:?}",
            report.exit_code
        );
        // Keys rarely split evenly over shards: the busiest shard, which works for the whole
        // run, shows what one shard takes.
        let mut per_shard = std::collections::HashMap::new();
        for seq in 0..count {
            let key = format!("k{}", seq % 64);
            *per_shard
                .entry(map.predict(&key, None).cloned())
                .or_insert(0u64) += 1;
        }
        let busiest = *per_shard.values().max().unwrap_or(&0) as f64 / summary.elapsed_secs;
        let target = if aggregate { 9000.0 } else { 1000.0 };
        println!(
            "{:<12} {:>10} {:>9.2} {:>12.0} {:>12.0} {:>8.1}% {:>10}",
            name,
            summary.records_written,
            summary.elapsed_secs,
            summary.records_per_sec,
            busiest,
            100.0 * busiest / target,
            summary.throttles,
        );
        emu.shutdown().await;
    }
    println!(
        "(busiest/s: user records/s into the shard holding the most keys; of limit: of 1000 \
         records/s plain, of the 9,000 user records/s target aggregated)"
    );
    Ok(())
}
