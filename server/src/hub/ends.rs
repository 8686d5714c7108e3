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
}

impl SubscriberEnd {
    /// Every reason, in metric order.
    pub const ALL: [SubscriberEnd; 5] = [
        SubscriberEnd::ClientCancel,
        SubscriberEnd::Deadline,
        SubscriberEnd::LagPolicy,
        SubscriberEnd::Shutdown,
        SubscriberEnd::Keepalive,
    ];

    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberEnd::ClientCancel => "client_cancel",
            SubscriberEnd::Deadline => "deadline",
            SubscriberEnd::LagPolicy => "lag_policy",
            SubscriberEnd::Shutdown => "shutdown",
            SubscriberEnd::Keepalive => "keepalive",
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
