//! What the dispatcher does when a batch's result comes back: records written are counted,
//! records Kinesis refused for a reason worth retrying go back to the front of their lane
//! after a backoff, the others are written to the failed output; a fatal error stops
//! everything still queued.

use super::*;

impl Pipeline {
    pub(super) fn on_result(&mut self, result: BatchResult) {
        let now = Instant::now();
        self.in_flight -= 1;
        if self.config.ordered {
            let mut shards: Vec<Arc<str>> = result
                .entries
                .iter()
                .map(|(e, _)| e.shard.clone())
                .collect();
            shards.sort();
            shards.dedup();
            for shard in shards {
                self.lane(&shard).in_flight -= 1;
            }
        }
        if let Some(fatal) = result.fatal {
            self.set_fatal(fatal);
        }
        let mut retries: Vec<Entry> = Vec::new();
        let mut surprised = false;
        for (entry, outcome) in result.entries {
            match outcome {
                Outcome::Written { shard_id } => {
                    self.stats.written.fetch_add(entry.user_records, Relaxed);
                    self.stats
                        .written_bytes
                        .fetch_add(entry.user_bytes, Relaxed);
                    self.stats.kinesis_records.fetch_add(1, Relaxed);
                    self.buffered -= entry.user_records;
                    if let Some(shard_id) = shard_id
                        && !self.map.is_empty()
                        && *shard_id != *entry.shard
                    {
                        surprised = true;
                    }
                }
                Outcome::Retry {
                    code,
                    message,
                    throttled,
                } => {
                    if throttled {
                        self.stats.throttles.fetch_add(1, Relaxed);
                        if let Some(lane) = self.lanes.get_mut(&entry.shard) {
                            lane.limiter.drain(now);
                        }
                    }
                    let expired = entry
                        .first_attempt
                        .is_some_and(|first| now.duration_since(first) >= self.config.record_ttl);
                    if self.fatal.is_some() || entry.attempts >= self.config.max_attempts || expired
                    {
                        let why = if expired {
                            "record TTL passed"
                        } else {
                            "attempts exhausted"
                        };
                        self.fail(entry, &code, &format!("{message} ({why})"));
                    } else {
                        retries.push(entry);
                    }
                }
                Outcome::Failed { code, message } => self.fail(entry, &code, &message),
            }
        }
        if surprised {
            self.request_refresh(now);
        }
        // Back to the front of their lanes, in their original order.
        for mut entry in retries.into_iter().rev() {
            self.stats.retries.fetch_add(1, Relaxed);
            if !self.map.is_empty() && !self.map.contains(&entry.shard) {
                entry.shard =
                    self.lane_id(&entry.partition_key, entry.explicit_hash_key.as_deref());
            }
            let backoff = backoff(entry.attempts);
            let shard = entry.shard.clone();
            let lane = self.lane(&shard);
            let until = now + backoff;
            lane.paused_until = Some(lane.paused_until.map_or(until, |u| u.max(until)));
            lane.queue.push_front(entry);
        }
    }

    pub(super) fn fail(&mut self, entry: Entry, code: &str, message: &str) {
        self.stats.failed.fetch_add(entry.user_records, Relaxed);
        self.buffered -= entry.user_records;
        for user in entry.user_records() {
            if let Err(err) = self.failed.write(&user, code, message) {
                tracing::error!(cause = %err, "cannot write to --failed-output");
            }
        }
        if self.stats.failed.load(Relaxed) == entry.user_records {
            eprintln!("kinesis-producer: a record failed for good: {code}: {message}");
        }
    }

    pub(super) fn set_fatal(&mut self, err: ProducerError) {
        if self.fatal.is_none() {
            self.fatal = Some(err);
        }
    }

    /// After a fatal error: everything not in flight goes to the failed output.
    pub(super) fn abort_queued(&mut self) {
        let message = self
            .fatal
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let mut entries: Vec<Entry> = self.batch.take();
        for (id, lane) in &mut self.lanes {
            entries.extend(lane.queue.drain(..));
            if let Some(entry) = lane.aggregator.as_mut().and_then(|a| a.close(id)) {
                entries.push(entry);
            }
        }
        for entry in entries {
            self.fail(entry, "Aborted", &message);
        }
    }
}

/// First retry backoff; it doubles per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The backoff before retry number `attempts` (1 for the first): the workspace's one
/// formula, exponential with equal jitter.
pub fn backoff(attempts: u32) -> Duration {
    kinesis_relay_api::backoff::delay(BACKOFF_BASE, BACKOFF_MAX, attempts.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(backoff(40) <= BACKOFF_MAX);
        }
    }
}
