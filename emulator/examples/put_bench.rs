//! PutRecords throughput of the emulator, and its memory while retention trims.
//!
//! Not a test: it prints figures. Run in release:
//!
//! ```text
//! cargo run --release -p kinesis-emulator --example put_bench -- [--seconds 20]
//!     [--retention-secs 5] [--concurrency 8] [--shards 4] [--sdk]
//! ```
//!
//! The emulator runs in-process with limits off. By default the load comes from raw HTTP/1.1
//! keep-alive connections sending a prepared 500-record PutRecords body (100-byte records),
//! which measures the emulator; `--sdk` sends through aws-sdk-kinesis instead.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kinesis_emulator::Emulator;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RECORD_BYTES: usize = 100;
const BATCH: usize = 500;

struct Options {
    seconds: u64,
    retention_secs: u64,
    concurrency: usize,
    shards: u32,
    sdk: bool,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 20,
        retention_secs: 5,
        concurrency: 8,
        shards: 4,
        sdk: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("--seconds", Some(v)) => options.seconds = v,
            ("--retention-secs", Some(v)) => options.retention_secs = v,
            ("--concurrency", Some(v)) => options.concurrency = v as usize,
            ("--shards", Some(v)) => options.shards = v as u32,
            ("--sdk", _) => {
                options.sdk = true;
                i += 1;
                continue;
            }
            (other, _) => {
                eprintln!("unknown or incomplete argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    options
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn request_body(worker: usize) -> Bytes {
    let data = base64::engine::general_purpose::STANDARD.encode([b'x'; RECORD_BYTES]);
    let records: Vec<serde_json::Value> = (0..BATCH)
        .map(|i| serde_json::json!({ "Data": data, "PartitionKey": format!("w{worker}-k{i}") }))
        .collect();
    Bytes::from(serde_json::json!({ "StreamName": "bench", "Records": records }).to_string())
}

async fn raw_worker(url: String, worker: usize, stop: Instant, written: Arc<AtomicU64>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = request_body(worker);
    while Instant::now() < stop {
        let request = http::Request::post(&url)
            .header("x-amz-target", "Kinesis_20131202.PutRecords")
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(body.clone()))
            .expect("request");
        let response = client.request(request).await.expect("PutRecords");
        assert!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(
            bytes.starts_with(b"{\"FailedRecordCount\":0"),
            "records failed"
        );
        written.fetch_add(BATCH as u64, Ordering::Relaxed);
    }
}

async fn sdk_worker(
    client: aws_sdk_kinesis::Client,
    worker: usize,
    stop: Instant,
    written: Arc<AtomicU64>,
) {
    while Instant::now() < stop {
        let entries = (0..BATCH)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("w{worker}-k{i}"))
                    .data(Blob::new(vec![b'x'; RECORD_BYTES]))
                    .build()
                    .expect("entry")
            })
            .collect();
        let out = client
            .put_records()
            .stream_name("bench")
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
        written.fetch_add(BATCH as u64, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    let emu = Emulator::builder()
        .stream("bench", options.shards)
        .limits(false)
        .retention(Duration::from_secs(options.retention_secs))
        .start()
        .await
        .expect("start the emulator");
    let handle = emu.handle();
    println!(
        "put_bench: {} s, {} workers, {} shards, {}-byte records, {}-record PutRecords, retention {} s, client {}",
        options.seconds,
        options.concurrency,
        options.shards,
        RECORD_BYTES,
        BATCH,
        options.retention_secs,
        if options.sdk {
            "aws-sdk-kinesis"
        } else {
            "raw HTTP/1.1"
        }
    );
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop = started + Duration::from_secs(options.seconds);
    let mut workers = Vec::new();
    for worker in 0..options.concurrency {
        let written = written.clone();
        if options.sdk {
            let config = aws_sdk_kinesis::Config::builder()
                .endpoint_url(emu.endpoint_url())
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                    "a", "b", None, None, "t",
                ))
                .behavior_version_latest()
                .build();
            let client = aws_sdk_kinesis::Client::from_conf(config);
            workers.push(tokio::spawn(sdk_worker(client, worker, stop, written)));
        } else {
            workers.push(tokio::spawn(raw_worker(
                emu.endpoint_url(),
                worker,
                stop,
                written,
            )));
        }
    }
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Instant::now();
        let total = written.load(Ordering::Relaxed);
        let rate = (total - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        println!(
            "t={:>5.1}s  {:>9.0} records/s  stored {:>9}  rss {:>7.1} MiB",
            now.duration_since(started).as_secs_f64(),
            rate,
            handle.stored_records("bench").unwrap_or(0),
            rss_mib()
        );
        last = (now, total);
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = written.load(Ordering::Relaxed);
    println!(
        "total: {total} records in {elapsed:.1} s = {:.0} records/s; rss {:.1} MiB",
        total as f64 / elapsed,
        rss_mib()
    );
    emu.shutdown().await;
}
