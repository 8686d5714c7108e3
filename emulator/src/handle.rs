//! The in-process handle: fault injection and direct access to the state.

use std::sync::Arc;
use std::time::Duration;

use crate::emulator::Shared;
use crate::error::KinesisError;
use crate::protocol;
use crate::subscriptions::{EndMode, EndReason};

/// Controls a running emulator from the test or program that started it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmulatorHandle {
    /// The emulator's state.
    shared: Arc<Shared>,
}

impl EmulatorHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Ends every open subscription now, with an `InternalFailure` event or by dropping the
    /// connections that carry subscriptions. The takeover window still applies to the
    /// client's next SubscribeToShard, as on AWS.
    pub fn end_all_subscriptions(&self, mode: EndMode) {
        self.shared.subscriptions.end_all(EndReason::Fault(mode));
        if mode == EndMode::DropConnection {
            self.shared.faults.drop_subscription_connections();
        }
    }

    /// Makes the next `count` calls of `operation` (e.g. `"SubscribeToShard"`) fail with
    /// the AWS error `error_type` (e.g. `"LimitExceededException"`; `"InternalFailure"`
    /// answers HTTP 500, `"ServiceUnavailable"` 503, anything else 400).
    pub fn fail_next(&self, operation: &str, count: u32, error_type: &str) {
        self.shared.faults.fail_next(operation, count, error_type);
    }

    /// Adds `latency` before every AWS response (zero removes it).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.set_latency(latency);
    }

    /// Deregisters a consumer, named by ARN or by name, behind its client's back; its
    /// subscriptions end with a ResourceNotFoundException event.
    pub fn deregister_consumer(
        &self,
        consumer_arn_or_name: &str,
        stream: &str,
    ) -> Result<(), KinesisError> {
        let arn = if consumer_arn_or_name.starts_with("arn:") {
            self.shared
                .store
                .deregister_consumer(None, None, Some(consumer_arn_or_name))?
        } else {
            let stream = protocol::stream_name(
                (!stream.starts_with("arn:")).then_some(stream),
                stream.starts_with("arn:").then_some(stream),
            )?;
            self.shared
                .store
                .deregister_consumer(Some(stream), Some(consumer_arn_or_name), None)?
        };
        self.shared.subscriptions.end_consumer(&arn);
        Ok(())
    }

    /// While `silent`, subscriptions stay open but send nothing, not even idle events.
    pub fn silence_subscriptions(&self, silent: bool) {
        self.shared.faults.set_silence(silent);
    }

    /// Creates a stream, as CreateStream does.
    pub fn create_stream(&self, name: &str, shards: u32) -> Result<(), KinesisError> {
        self.shared.store.create_stream(name, shards, false)
    }

    /// How many subscriptions are open now.
    pub fn active_subscriptions(&self) -> usize {
        self.shared.subscriptions.active()
    }

    /// How many requests of `operation` have arrived, including failed ones.
    pub fn request_count(&self, operation: &str) -> u64 {
        self.shared.faults.request_count(operation)
    }

    /// How many AWS requests arrived over HTTP/2 (h2c or TLS with ALPN h2).
    pub fn http2_requests(&self) -> u64 {
        self.shared.faults.http2_requests()
    }

    /// Moves the arrival time of every record stored in `stream` back by `by`, so that
    /// ApproximateArrivalTimestamp reports the older time, then applies retention at once:
    /// records whose arrival plus the retention period is before now are dropped. Records
    /// written afterwards arrive at the current time. For testing retention and
    /// AT_TIMESTAMP without waiting.
    pub fn age_records(&self, stream: &str, by: Duration) -> Result<(), KinesisError> {
        self.shared.store.age_records(stream, by)
    }

    /// The number of records currently stored in a stream (after retention trimming).
    pub fn stored_records(&self, stream: &str) -> Result<usize, KinesisError> {
        let inner = self.shared.store.lock();
        Ok(inner
            .stream(stream)?
            .shards
            .iter()
            .map(|s| s.record_count())
            .sum())
    }
}
