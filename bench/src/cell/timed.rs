//! The open-loop phases of a cell: records published at a fixed rate, each stamped with
//! its intended send time (no coordinated omission), and the latency they saw, end to end
//! and (for the relay) its own share from its delivery-delay histogram.

use super::*;

/// What an open-loop phase found.
pub(super) struct Timed {
    /// Deliveries per second during the phase (and its drain).
    pub(super) delivered_per_s: f64,
    /// Length of the phase with its drain, seconds.
    pub(super) elapsed: f64,
    /// p50, p99, p99.9 and max latency, microseconds.
    pub(super) quantiles: (u64, u64, u64, u64),
    /// The relay's own share: p50, p99, p99.9, microseconds (bucket upper bounds).
    pub(super) added: Option<(u64, u64, u64)>,
}

/// The upper bound (µs) of the bucket holding quantile `q` of what was counted between two
/// snapshots of cumulative buckets; `u64::MAX` when it is above every bound.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<u64> {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|(&(bound, now), &(_, then))| (bound, now.saturating_sub(then)))
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    counts
        .iter()
        .find(|(_, cumulative)| *cumulative >= rank)
        .map(|&(bound, _)| {
            if bound.is_finite() {
                (bound * 1e6).round() as u64
            } else {
                u64::MAX
            }
        })
}

/// Publishes `rate` timed records per second for `duration` in 1 ms ticks, each stamped with
/// its intended send time, waits for delivery, and takes the latency histogram.
pub(super) async fn timed_phase(
    server: &Server,
    sender: &mut Sender,
    readers: &Readers,
    rate: f64,
    duration: Duration,
    max_batch: usize,
) -> anyhow::Result<Timed> {
    if let Ok(mut hist) = readers.latency.lock() {
        hist.reset();
    }
    let delay0 = systems::relay_delay(server).await;
    let first = sender.next_seq;
    let delivered0 = readers.delivered();
    let start_ns = payload::now_ns();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let total = ((rate * duration.as_secs_f64()) as u64).max(1);
    while sender.next_seq - first < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        let count = (due.saturating_sub(sender.next_seq - first) as usize).min(max_batch);
        if count > 0 {
            let intended = |seq: u64| start_ns + ((seq - first) as f64 / rate * 1e9) as u64;
            sender.send(count, Kind::Timed, intended).await?;
        }
    }
    readers
        .drain(sender.next_seq, Duration::from_secs(20))
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let added = delay0
        .zip(systems::relay_delay(server).await)
        .and_then(|(before, after)| {
            let quantile = |q| bucket_quantile(&before, &after, q);
            Some((quantile(0.5)?, quantile(0.99)?, quantile(0.999)?))
        });
    let hist = readers
        .latency
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock poisoned"))?;
    Ok(Timed {
        delivered_per_s: (readers.delivered() - delivered0) as f64 / elapsed,
        elapsed,
        quantiles: (
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max(),
        ),
        added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_come_from_the_difference_of_two_snapshots() {
        let before = [(0.001, 10), (0.005, 10), (f64::INFINITY, 10)];
        let after = [(0.001, 100), (0.005, 109), (f64::INFINITY, 110)];
        assert_eq!(bucket_quantile(&before, &after, 0.5), Some(1_000));
        assert_eq!(bucket_quantile(&before, &after, 0.99), Some(5_000));
        assert_eq!(bucket_quantile(&before, &after, 0.999), Some(u64::MAX));
        assert_eq!(bucket_quantile(&before, &before, 0.5), None);
    }
}
