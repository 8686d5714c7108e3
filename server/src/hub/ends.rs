//! Why subscriptions ended, counted per stream for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberEnd {
    /// The client cancelled the call or closed its connection.
    ClientCancel,
    /// The call's `grpc-timeout` passed (DEADLINE_EXCEEDED).
    Deadline,
    /// The subscriber fell behind the ring under the DISCONNECT lag policy.
    LagPolicy,
    /// The relay shut down (UNAVAILABLE with the cursor).
    Shutdown,
    /// The connection missed its keepalive pings.
    Keepalive,
    /// The position asked for is older than Kinesis retains (OUT_OF_RANGE).
    Expired,
    /// Reading missed records from Kinesis failed for good or found no free reader
    /// (UNAVAILABLE with the cursor).
    CatchUpFailed,
    /// It waited for its stream to start and the stream did not in time, or the request
    /// did not fit the stream once it had (an unknown shard).
    Refused,
}

impl SubscriberEnd {
    /// Every reason, in metric order.
    pub const ALL: [SubscriberEnd; 8] = [
        SubscriberEnd::ClientCancel,
        SubscriberEnd::Deadline,
        SubscriberEnd::LagPolicy,
        SubscriberEnd::Shutdown,
        SubscriberEnd::Keepalive,
        SubscriberEnd::Expired,
        SubscriberEnd::CatchUpFailed,
        SubscriberEnd::Refused,
    ];

    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberEnd::ClientCancel => "client_cancel",
            SubscriberEnd::Deadline => "deadline",
            SubscriberEnd::LagPolicy => "lag_policy",
            SubscriberEnd::Shutdown => "shutdown",
            SubscriberEnd::Keepalive => "keepalive",
            SubscriberEnd::Expired => "expired",
            SubscriberEnd::CatchUpFailed => "catch_up_failed",
            SubscriberEnd::Refused => "refused",
        }
    }
}

/// Subscriptions ended, by reason.
#[derive(Debug, Default)]
pub struct SubscriberEnds([AtomicU64; SubscriberEnd::ALL.len()]);

impl SubscriberEnds {
    /// Counts one end.
    pub fn count(&self, end: SubscriberEnd) {
        self.0[end as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Ends for `end` so far.
    pub fn get(&self, end: SubscriberEnd) -> u64 {
        self.0[end as usize].load(Ordering::Relaxed)
    }
}
