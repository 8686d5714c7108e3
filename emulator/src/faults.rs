//! Fault injection: injected errors, latency, silenced subscriptions, dropped connections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

use crate::error::KinesisError;

/// The faults in force, shared by the server, the subscriptions and the handle.
#[derive(Debug)]
pub(crate) struct Faults {
    /// Errors to return, per operation, oldest first: (calls left, AWS error type).
    failures: Mutex<HashMap<String, Vec<(u32, String)>>>,
    /// Added before every AWS response, in microseconds.
    latency_micros: AtomicU64,
    /// While true, subscriptions stay open but send nothing.
    silence: watch::Sender<bool>,
    /// Tells connections that carry a subscription to close.
    drop_connections: broadcast::Sender<()>,
    /// Requests received per operation, for tests that wait for a client to act.
    requests: Mutex<HashMap<String, u64>>,
    /// AWS requests that arrived over HTTP/2, so tests can tell h2 was negotiated.
    http2_requests: AtomicU64,
}

impl Faults {
    pub(crate) fn new() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            latency_micros: AtomicU64::new(0),
            silence: watch::Sender::new(false),
            drop_connections: broadcast::Sender::new(16),
            requests: Mutex::new(HashMap::new()),
            http2_requests: AtomicU64::new(0),
        }
    }

    /// Makes the next `count` calls of `operation` fail with `error_type`.
    pub(crate) fn fail_next(&self, operation: &str, count: u32, error_type: &str) {
        if count == 0 {
            return;
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures
            .entry(operation.to_owned())
            .or_default()
            .push((count, error_type.to_owned()));
    }

    /// Counts a request and returns the injected error for it, if one is due.
    pub(crate) fn on_request(&self, operation: &str) -> Option<KinesisError> {
        {
            let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            *requests.entry(operation.to_owned()).or_default() += 1;
        }
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let queue = failures.get_mut(operation)?;
        let (left, error_type) = queue.first_mut()?;
        let err = KinesisError::from_type(error_type, format!("injected fault for {operation}"));
        *left -= 1;
        if *left == 0 {
            queue.remove(0);
        }
        Some(err)
    }

    /// How many requests of `operation` have arrived.
    pub(crate) fn request_count(&self, operation: &str) -> u64 {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.get(operation).copied().unwrap_or(0)
    }

    pub(crate) fn count_http2_request(&self) {
        self.http2_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn http2_requests(&self) -> u64 {
        self.http2_requests.load(Ordering::Relaxed)
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.store(micros, Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_micros.load(Ordering::Relaxed))
    }

    pub(crate) fn set_silence(&self, silent: bool) {
        self.silence.send_replace(silent);
    }

    pub(crate) fn silence_receiver(&self) -> watch::Receiver<bool> {
        self.silence.subscribe()
    }

    pub(crate) fn drop_subscription_connections(&self) {
        // No receiver means no connection is open: nothing to drop.
        let _ = self.drop_connections.send(());
    }

    pub(crate) fn drop_receiver(&self) -> broadcast::Receiver<()> {
        self.drop_connections.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_used_up_in_order() {
        let faults = Faults::new();
        faults.fail_next("PutRecords", 2, "InternalFailure");
        faults.fail_next("PutRecords", 1, "LimitExceededException");
        let types: Vec<_> = (0..4)
            .map(|_| {
                faults
                    .on_request("PutRecords")
                    .map(|e| e.error_type().to_owned())
            })
            .collect();
        assert_eq!(
            types,
            vec![
                Some("InternalFailure".into()),
                Some("InternalFailure".into()),
                Some("LimitExceededException".into()),
                None
            ]
        );
        assert_eq!(faults.request_count("PutRecords"), 4);
        assert!(faults.on_request("GetRecords").is_none());
    }
}
