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

    fn shard(&self, shard_id: &str, now: Instant) -> Arc<Mutex<ShardBudget>> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards
            .entry(shard_id.to_owned())
            .or_insert_with(|| {
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
        while let Err(wait) = self.try_call(shard_id, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a call token of `shard_id` at `now` if the budget allows a call, else says how
    /// long until it does.
    fn try_call(&self, shard_id: &str, now: Instant) -> Result<(), Duration> {
        let shard = self.shard(shard_id, now);
        let mut budget = shard.lock().unwrap_or_else(|p| p.into_inner());
        let wait = budget
            .calls
            .wait_for(1.0, now)
            .max(budget.bytes.wait_for(0.0, now));
        if wait.is_zero() {
            budget.calls.tokens -= 1.0;
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Charges the bytes a call returned (the bucket may go into debt).
    pub fn charge(&self, shard_id: &str, bytes: usize) {
        self.charge_at(shard_id, bytes, Instant::now());
    }

    fn charge_at(&self, shard_id: &str, bytes: usize, now: Instant) {
        let shard = self.shard(shard_id, now);
        let mut budget = shard.lock().unwrap_or_else(|p| p.into_inner());
        budget.bytes.refill(now);
        budget.bytes.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_bytes_are_paced_per_shard() {
        let budget = Budget::new(Rates {
            calls: 5.0,
            bytes: 1000.0,
        });
        let t0 = Instant::now();
        // A full bucket: five calls at once, then one every 200 ms.
        for _ in 0..5 {
            assert_eq!(budget.try_call("a", t0), Ok(()));
        }
        let wait = budget.try_call("a", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-6, "{wait:?}");
        assert_eq!(
            budget.try_call("a", t0 + Duration::from_millis(200)),
            Ok(())
        );
        // Another shard has its own budget.
        assert_eq!(budget.try_call("b", t0), Ok(()));
        // 3,000 bytes at 1,000 per second: the next call waits for the debt to clear.
        budget.charge_at("b", 3000, t0);
        let wait = budget.try_call("b", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
        assert_eq!(budget.try_call("b", t0 + Duration::from_secs(2)), Ok(()));
    }
}
