//! How long records wait in the relay: from the moment a record enters the hub to the
//! moment the response that carries it is handed to a subscriber's HTTP/2 stream. This is
//! the latency the relay adds on top of Kinesis; the benchmark reads it from `/metrics`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds of the buckets, microseconds; a last bucket takes everything above.
pub const BOUNDS_MICROS: [u64; 19] = [
    100, 250, 500, 1_000, 2_000, 3_000, 4_000, 5_000, 7_500, 10_000, 25_000, 50_000, 100_000,
    250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A histogram of delays counted per record, lock-free so that every subscriber can add to
/// it as it sends.
#[derive(Debug, Default)]
pub struct DelayHistogram {
    /// Records per bucket (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    /// Sum of the delays, microseconds.
    sum_micros: AtomicU64,
}

/// A copy of a [`DelayHistogram`] in Prometheus' terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DelaySnapshot {
    /// Sum of the delays, seconds.
    pub sum_seconds: f64,
    /// Records counted.
    pub count: u64,
    /// (upper bound in seconds, records) per bucket, not cumulative; the last bound is
    /// `f64::MAX` (+Inf).
    pub buckets: Vec<(f64, u64)>,
}

impl DelayHistogram {
    /// Counts `records` that waited `delay` (a batch is counted at the delay of its oldest
    /// record, so quantiles are upper bounds).
    pub fn observe(&self, delay: Duration, records: u64) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.buckets[bucket].fetch_add(records, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(micros.saturating_mul(records), Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> DelaySnapshot {
        let bounds = BOUNDS_MICROS
            .iter()
            .map(|&micros| micros as f64 / 1e6)
            .chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        DelaySnapshot {
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_the_first_bucket_that_holds_them() {
        let histogram = DelayHistogram::default();
        histogram.observe(Duration::from_micros(100), 2);
        histogram.observe(Duration::from_micros(101), 1);
        histogram.observe(Duration::from_millis(4), 3);
        histogram.observe(Duration::from_secs(60), 1);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 7);
        let count_at = |bound: f64| {
            snapshot
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, count)| *count)
        };
        assert_eq!(count_at(0.0001), Some(2));
        assert_eq!(count_at(0.00025), Some(1));
        assert_eq!(count_at(0.004), Some(3));
        assert_eq!(count_at(f64::MAX), Some(1));
        assert!((snapshot.sum_seconds - (0.0002 + 0.000101 + 0.012 + 60.0)).abs() < 1e-9);
    }
}
