//! The emulator's settings: the durations of the enhanced fan-out lifecycle and the limits.

use std::time::Duration;

/// Everything the builder sets, shared read-only by all tasks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a new consumer stays CREATING before it is ACTIVE (AWS takes tens of seconds).
    pub consumer_activation_delay: Duration,
    /// How long an idle subscription waits before it sends an empty event (AWS: about 5 s).
    pub idle_event_interval: Duration,
    /// How long a subscription lives before its event stream ends (AWS: 5 minutes).
    pub subscription_lifetime: Duration,
    /// Within this time of a subscription's start, a second one for the same consumer and
    /// shard is refused with ResourceInUseException; after it, the second takes over (AWS: 5 s).
    pub takeover_window: Duration,
    /// How long a subscription waits after a write before it pushes (AWS: none).
    pub push_delay: Duration,
    /// Whether the per-shard throughput limits apply.
    pub limits: bool,
    /// How long records are kept (AWS default: 24 h).
    pub retention: Duration,
    /// How long a shard iterator stays valid; GetRecords with an older one answers
    /// ExpiredIteratorException (AWS: 5 minutes). Tests shorten it to reach expiry.
    pub iterator_lifetime: Duration,
}

/// The longest duration any setting may take (ten years); longer ones are cut to it, so
/// that adding a setting to the current time can never overflow.
const MAX_SETTING: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Settings {
    /// The settings with every duration cut to at most ten years, and the idle event
    /// interval to at least 10 ms.
    pub(crate) fn clamped(mut self) -> Self {
        for duration in [
            &mut self.consumer_activation_delay,
            &mut self.idle_event_interval,
            &mut self.subscription_lifetime,
            &mut self.takeover_window,
            &mut self.push_delay,
            &mut self.retention,
            &mut self.iterator_lifetime,
        ] {
            *duration = (*duration).min(MAX_SETTING);
        }
        // A zero interval would make idle subscriptions spin.
        self.idle_event_interval = self.idle_event_interval.max(Duration::from_millis(10));
        self
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            consumer_activation_delay: Duration::from_secs(1),
            idle_event_interval: Duration::from_secs(5),
            subscription_lifetime: Duration::from_secs(300),
            takeover_window: Duration::from_secs(5),
            push_delay: Duration::ZERO,
            limits: true,
            retention: Duration::from_secs(24 * 3600),
            iterator_lifetime: Duration::from_secs(300),
        }
    }
}
