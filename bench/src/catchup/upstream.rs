//! The catch-up run's upstream: the emulator in this process, so that its request counts
//! (the relay's GetRecords calls) can be read; filling it; and the time AWS's GetRecords
//! limits allow for reading a shard back.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use kinesis_emulator::EmulatorHandle;
use tokio::sync::oneshot;

use super::RECORD_BYTES;
use crate::{
    payload::{self, Kind},
    serve,
    systems::relay,
};

/// GetRecords calls per second and shard, on AWS and in the emulator with limits on.
const CALLS_PER_S: f64 = 5.0;
/// Record bytes GetRecords returns per second and shard (2 MiB).
const BYTES_PER_S: f64 = 2.0 * 1024.0 * 1024.0;
/// The most record bytes one GetRecords call returns (10 MiB).
const MAX_CALL_BYTES: u64 = 10 << 20;

/// The emulator, on a thread and runtime of its own: the harness's clients do not delay
/// its answers (a GetRecords answer of 10 MiB takes a while to write), nor it theirs.
pub struct Upstream {
    /// Its endpoint URL.
    pub endpoint: String,
    handle: EmulatorHandle,
    /// Tells the thread to shut the emulator down.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Upstream {
    /// Starts an emulator with one shard, with AWS's per-shard limits if `limits`. Writes
    /// and GetRecords share that switch, and it is fixed once the emulator runs.
    pub async fn start(limits: bool) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("emulator".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(anyhow::Error::from(err)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match serve::emulator_builder(limits).start().await {
                        Ok(emulator) => {
                            let _ = ready_tx.send(Ok((emulator.endpoint_url(), emulator.handle())));
                            let _ = stop_rx.await;
                            emulator.shutdown().await;
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(anyhow::Error::from(err)));
                        }
                    }
                });
            })
            .context("starting the emulator's thread")?;
        let (endpoint, handle) = ready_rx
            .await
            .context("the emulator's thread ended")?
            .context("starting the emulator")?;
        Ok(Self {
            endpoint,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// GetRecords requests received so far, refused ones included.
    pub fn get_records_calls(&self) -> u64 {
        self.handle.request_count("GetRecords")
    }

    /// GetShardIterator requests received so far: one per catch-up reader started (and
    /// one per iterator a reader renews, which a run this short never does).
    pub fn iterator_calls(&self) -> u64 {
        self.handle.request_count("GetShardIterator")
    }

    /// Waits until no GetRecords request has arrived for `quiet` (every reader is idle or
    /// gone), at most `bound`; says whether it got quiet.
    pub async fn wait_quiet(&self, quiet: Duration, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let (mut calls, mut since) = (self.get_records_calls(), Instant::now());
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.get_records_calls();
            if now != calls {
                (calls, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }

    /// Reads the shard from its oldest record with GetRecords, as the relay's catch-up
    /// does but from this process, until `records` records are read; returns how long that
    /// took. Throttled calls are retried after 200 ms.
    pub async fn read(&self, records: u64, per_call: i32) -> anyhow::Result<Duration> {
        let client = kinesis_relay::embedded::client_for(&self.endpoint);
        let started = Instant::now();
        let shard = client
            .list_shards()
            .stream_name(serve::STREAM)
            .send()
            .await
            .context("ListShards")?;
        let shard_id = shard
            .shards()
            .first()
            .map(|shard| shard.shard_id().to_owned())
            .context("the stream has no shard")?;
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(serve::STREAM)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .context("GetShardIterator")?
            .shard_iterator()
            .map(str::to_owned);
        let mut read = 0;
        while read < records {
            let current = iterator.take().context("the shard ended")?;
            match client
                .get_records()
                .shard_iterator(&current)
                .limit(per_call)
                .send()
                .await
            {
                Ok(output) => {
                    read += output.records().len() as u64;
                    iterator = output.next_shard_iterator().map(str::to_owned);
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|err| err.is_provisioned_throughput_exceeded_exception()) =>
                {
                    iterator = Some(current);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err).context("GetRecords"),
            }
        }
        Ok(started.elapsed())
    }

    /// Writes records `0..records` of [`RECORD_BYTES`] (kind `Load`) in order: `rate` a
    /// second in ten batches a second when given (below the shard's write limit, so none
    /// is refused and reordered), else as fast as the emulator takes them.
    pub async fn fill(&self, records: u64, rate: Option<f64>) -> anyhow::Result<Duration> {
        let client = kinesis_relay::embedded::client_for(&self.endpoint);
        let batch = rate.map_or(500, |rate| (rate / 10.0) as u64).clamp(1, 500);
        let mut tick = rate.map(|rate| {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(batch as f64 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        let started = Instant::now();
        let mut seq = 0;
        while seq < records {
            if let Some(tick) = &mut tick {
                tick.tick().await;
            }
            let end = records.min(seq + batch);
            let payloads: Vec<Bytes> = (seq..end)
                .map(|seq| payload::make(seq, payload::now_ns(), Kind::Load, RECORD_BYTES))
                .collect();
            relay::send(&client, payloads)
                .await
                .with_context(|| format!("writing records {seq}..{end}"))?;
            seq = end;
        }
        Ok(started.elapsed())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The longest a reader waits after one answer: the byte bucket's debt after a call that
/// returned 10 MiB.
pub fn longest_debt() -> Duration {
    Duration::from_secs_f64(MAX_CALL_BYTES as f64 / BYTES_PER_S)
}

/// The soonest a reader can have `records` records of `record_bytes` under one shard's
/// GetRecords limits, asking for `per_call` records a call, if answers took no time:
/// (seconds, calls). As on AWS, both buckets start full, a call is admitted while a call
/// token is left and the byte bucket is not in debt, and its answer (up to 10 MiB) may
/// put the byte bucket into debt.
pub fn budget_time(records: u64, record_bytes: u64, per_call: u64) -> (f64, u64) {
    let per_call = per_call.min(MAX_CALL_BYTES / record_bytes.max(1)).max(1);
    let (mut now, mut call_tokens, mut byte_tokens) = (0.0f64, CALLS_PER_S, BYTES_PER_S);
    let (mut left, mut calls) = (records, 0u64);
    while left > 0 {
        let wait = ((1.0 - call_tokens) / CALLS_PER_S)
            .max(-byte_tokens / BYTES_PER_S)
            .max(0.0);
        now += wait;
        call_tokens = (call_tokens + wait * CALLS_PER_S).min(CALLS_PER_S) - 1.0;
        byte_tokens = (byte_tokens + wait * BYTES_PER_S).min(BYTES_PER_S);
        let taken = per_call.min(left);
        byte_tokens -= (taken * record_bytes) as f64;
        left -= taken;
        calls += 1;
    }
    (now, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_time_follows_the_byte_bucket_and_its_debt() {
        // 20 MiB in calls of 10,000 records: at once (the full bucket lets the first call
        // take 10 MB, 7.8 MiB of debt), after 3.88 s, and after 4.88 s more.
        let (secs, calls) = budget_time(20_480, 1024, 10_000);
        assert_eq!(calls, 3);
        assert!((secs - 8.766).abs() < 0.01, "{secs}");
        // Small calls: five a second, then the byte rate.
        let (secs, calls) = budget_time(10, 1024, 1);
        assert_eq!(calls, 10);
        assert!((secs - 1.0).abs() < 1e-9, "{secs}");
        // Nothing to read takes no time.
        assert_eq!(budget_time(0, 1024, 10_000), (0.0, 0));
    }
}
