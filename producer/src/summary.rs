//! Counters, the progress line and the final summary.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

/// Counters shared by the pipeline and the progress line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the input (sent or not).
    pub read: AtomicU64,
    /// User records acknowledged by Kinesis.
    pub written: AtomicU64,
    /// User data bytes acknowledged.
    pub written_bytes: AtomicU64,
    /// Kinesis records acknowledged (aggregates count once).
    pub kinesis_records: AtomicU64,
    /// PutRecords requests sent.
    pub requests: AtomicU64,
    /// Entry sends that were retries.
    pub retries: AtomicU64,
    /// Entries throttled by Kinesis.
    pub throttles: AtomicU64,
    /// User records that failed for good.
    pub failed: AtomicU64,
    /// User records refused before sending.
    pub rejected: AtomicU64,
}

/// The final figures, as printed and as `--summary-json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Records read.
    pub records_read: u64,
    /// User records acknowledged by Kinesis.
    pub records_written: u64,
    /// User data bytes acknowledged.
    pub bytes_written: u64,
    /// Kinesis records acknowledged (fewer than user records with --aggregate).
    pub kinesis_records: u64,
    /// PutRecords requests.
    pub put_requests: u64,
    /// Entry retries.
    pub retries: u64,
    /// Entries throttled.
    pub throttles: u64,
    /// User records that failed after all retries.
    pub records_failed: u64,
    /// User records refused before sending.
    pub records_rejected: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
    /// User records written per second.
    pub records_per_sec: f64,
    /// Open shards at the end.
    pub shards: usize,
    /// Whether Ctrl-C cut the input short.
    pub interrupted: bool,
}

impl Stats {
    /// The figures now.
    pub fn summary(&self, elapsed: Duration, shards: usize, interrupted: bool) -> Summary {
        let written = self.written.load(Relaxed);
        let secs = elapsed.as_secs_f64();
        Summary {
            records_read: self.read.load(Relaxed),
            records_written: written,
            bytes_written: self.written_bytes.load(Relaxed),
            kinesis_records: self.kinesis_records.load(Relaxed),
            put_requests: self.requests.load(Relaxed),
            retries: self.retries.load(Relaxed),
            throttles: self.throttles.load(Relaxed),
            records_failed: self.failed.load(Relaxed),
            records_rejected: self.rejected.load(Relaxed),
            elapsed_secs: (secs * 1000.0).round() / 1000.0,
            records_per_sec: if secs > 0.0 {
                (written as f64 / secs).round()
            } else {
                0.0
            },
            shards,
            interrupted,
        }
    }
}

impl Summary {
    /// The human summary, a few lines.
    pub fn render(&self) -> String {
        let mut text = format!(
            "{} records written ({:.2} MiB) in {:.1} s: {} records/s, {} Kinesis records in {} requests to {} shards\n",
            self.records_written,
            self.bytes_written as f64 / 1_048_576.0,
            self.elapsed_secs,
            self.records_per_sec,
            self.kinesis_records,
            self.put_requests,
            self.shards,
        );
        text.push_str(&format!(
            "{} read, {} retries, {} throttled, {} failed, {} rejected{}\n",
            self.records_read,
            self.retries,
            self.throttles,
            self.records_failed,
            self.records_rejected,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        ));
        text
    }
}

/// Prints the progress line on standard error every second until `stop` turns true, then
/// clears it.
pub async fn progress(
    stats: std::sync::Arc<Stats>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = (0u64, Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = Instant::now();
        let written = stats.written.load(Relaxed);
        let rate = (written - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
        last = (written, now);
        let line = format!(
            "\r{written} records, {:.1} MiB, {rate:.0}/s, {} retries, {} throttled, {:.0} s\x1b[K",
            stats.written_bytes.load(Relaxed) as f64 / 1_048_576.0,
            stats.retries.load(Relaxed),
            stats.throttles.load(Relaxed),
            now.duration_since(start).as_secs_f64(),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.flush();
    }
    let _ = std::io::stderr().write_all(b"\r\x1b[K");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_figures() {
        let stats = Stats::default();
        stats.written.store(1000, Relaxed);
        stats.read.store(1001, Relaxed);
        stats.rejected.store(1, Relaxed);
        let summary = stats.summary(Duration::from_secs(2), 4, false);
        assert_eq!(summary.records_per_sec, 500.0);
        let text = summary.render();
        assert!(text.contains("1000 records written"), "{text}");
        assert!(text.contains("1 rejected"), "{text}");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["records_written"], 1000);
        assert_eq!(json["shards"], 4);
    }
}
