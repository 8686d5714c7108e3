//! The emulator with short EFO durations and a relay tuned to it, on free ports, and waits
//! on what the relay reads and holds.

use std::time::Duration;

use kinesis_emulator::{Emulator, EmulatorBuilder};
use kinesis_relay::{
    RelayConfig, RunningRelay,
    catchup::CatchUpSettings,
    embedded::client_for,
    hub::{ReaderState, RingLimits},
    ingest::{IngestSettings, InitialPosition},
    service::{ServeSettings, TransportSettings},
};
use kinesis_relay_api::v1;

use crate::eventually;

/// An emulator with short EFO durations (activation, idle events, takeover), so that
/// consumer lifecycles run in seconds. Add streams, then `start()`.
pub fn fast_emulator() -> EmulatorBuilder {
    Emulator::builder()
        .consumer_activation_delay(Duration::from_millis(100))
        .idle_event_interval(Duration::from_millis(500))
        .takeover_window(Duration::from_secs(1))
        .push_delay(Duration::ZERO)
}

/// Relay settings for `streams` tuned to [`fast_emulator`]: listening on a free port, every
/// shard read from TRIM_HORIZON (a restarted relay without a state dir holds what a
/// resuming subscriber asks for), and intervals, backoffs and waits in tens to hundreds of
/// milliseconds.
pub fn fast_config(streams: &[&str]) -> RelayConfig {
    RelayConfig {
        streams: streams.iter().map(|s| s.to_string()).collect(),
        listen: "127.0.0.1:0".parse().expect("a socket address"),
        ingest: IngestSettings {
            consumer_name: "relay-test".into(),
            initial_position: InitialPosition::TrimHorizon,
            checkpoint_interval: Duration::from_millis(200),
            watchdog: Duration::from_secs(3),
            list_shards_interval: Duration::from_secs(1),
            consumer_deadline: Duration::from_secs(20),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
            // Just over the emulator's takeover window.
            takeover_wait: Duration::from_millis(1100),
            min_subscribe_interval: Duration::from_millis(100),
            ..IngestSettings::default()
        },
        rings: RingLimits::default(),
        catch_up: CatchUpSettings {
            idle_poll: Duration::from_millis(200),
            idle_grace: Duration::from_secs(1),
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_millis(500),
            ..CatchUpSettings::default()
        },
        serve: ServeSettings {
            heartbeat_interval: Duration::from_millis(500),
            ..ServeSettings::default()
        },
        transport: TransportSettings::default(),
        security: Default::default(),
        admin: Default::default(),
    }
}

/// Starts a relay with `config` on `emulator`.
pub async fn start_relay(emulator: &Emulator, config: RelayConfig) -> RunningRelay {
    kinesis_relay::start(config, client_for(&emulator.endpoint_url()))
        .await
        .expect("relay starts")
}

/// Waits until every stream of the relay is ACTIVE with every shard read by a live
/// subscription (or finished).
pub async fn wait_active(relay: &RunningRelay) {
    for hub in &relay.hubs {
        eventually("the relay to read every shard", || async {
            let view = hub.view();
            view.status() == v1::StreamStatus::Active
                && view.shards().count() > 0
                && view
                    .shards()
                    .all(|shard| shard.finished() || shard.state() == ReaderState::Reading)
        })
        .await;
    }
}

/// How many records the relay's rings hold for `stream`, summed over its shards.
pub fn held(relay: &RunningRelay, stream: &str) -> usize {
    let hub = relay
        .hubs
        .iter()
        .find(|hub| hub.name() == stream)
        .unwrap_or_else(|| panic!("the relay serves {stream}"));
    hub.view().shards().map(|shard| shard.records_held()).sum()
}

/// Waits until the relay's rings hold at least `n` records of `stream`.
pub async fn wait_held(relay: &RunningRelay, stream: &str, n: usize) {
    eventually(
        &format!("the relay to hold {n} records of {stream}"),
        || async { held(relay, stream) >= n },
    )
    .await;
}
