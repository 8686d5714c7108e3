//! The GetRecords budget of a stream's shards, shared by every catch-up reader.
//!
//! Kinesis allows 5 GetRecords calls and 2 MiB of records per second per shard, for every
//! polling reader of the stream together (other applications included). The relay keeps its
//! catch-up within a configured share of that, per shard: a call waits for a call token and
//! for the byte bucket to be out of debt (a call may return up to 10 MiB, which puts it in
//! debt for the seconds that follow, as Kinesis does).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

/// Calls and bytes per second for each shard.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// GetRecords calls per second per shard.
    pub calls: f64,
    /// Bytes of records per second per shard.
    pub bytes: f64,
}

/// A bucket refilled continuously up to one second's worth.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// How long until `amount` tokens are there.
    fn wait_for(&mut self, amount: f64, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= amount {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((amount - self.tokens) / self.rate)
        }
    }
}

/// One shard's buckets.
#[derive(Debug)]
struct ShardBudget {
    calls: Bucket,
    bytes: Bucket,
}

/// The budgets of every shard of one stream.
#[derive(Debug)]
pub struct Budget {
    rates: Rates,
    shards: Mutex<HashMap<String, Arc<Mutex<ShardBudget>>>>,
}

impl Budget {
    /// Budgets at `rates` (non-positive rates are raised to a tiny positive one).
    pub fn new(rates: Rates) -> Self {
        Self {
            rates: Rates {
                calls: rates.calls.max(0.01),
                bytes: rates.bytes.max(1.0),
            },
            shards: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, shard_id: &str) -> Arc<Mutex<ShardBudget>> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards
            .entry(shard_id.to_owned())
            .or_insert_with(|| {
                let now = Instant::now();
                Arc::new(Mutex::new(ShardBudget {
                    calls: Bucket::new(self.rates.calls, now),
                    bytes: Bucket::new(self.rates.bytes, now),
                }))
            })
            .clone()
    }

    /// Waits until a GetRecords call of `shard_id` fits the budget, then takes its call
    /// token. Bounded: at most one call interval plus the byte debt of one call (10 MiB).
    pub async fn before_call(&self, shard_id: &str) {
        let shard = self.shard(shard_id);
        loop {
            let wait = {
                let mut budget = shard.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let wait = budget
                    .calls
                    .wait_for(1.0, now)
                    .max(budget.bytes.wait_for(0.0, now));
                if wait.is_zero() {
                    budget.calls.tokens -= 1.0;
                    return;
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Charges the bytes a call returned (the bucket may go into debt).
    pub fn charge(&self, shard_id: &str, bytes: usize) {
        let shard = self.shard(shard_id);
        let mut budget = shard.lock().unwrap_or_else(|p| p.into_inner());
        budget.bytes.refill(Instant::now());
        budget.bytes.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_and_bytes_are_paced_per_shard() {
        let budget = Budget::new(Rates {
            calls: 5.0,
            bytes: 1000.0,
        });
        let start = Instant::now();
        for _ in 0..10 {
            budget.before_call("a").await;
        }
        // Five at once (a full bucket), then one every 200 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Another shard has its own budget.
        budget.before_call("b").await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // 3,000 bytes at 1,000 per second: the next call waits for the debt to clear.
        budget.charge("b", 3000);
        let before = Instant::now();
        budget.before_call("b").await;
        assert_eq!(before.elapsed(), Duration::from_secs(2));
    }
}
