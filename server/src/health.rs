//! gRPC health (`grpc.health.v1`) that says whether the relay is really reading its streams.
//!
//! - `""`: SERVING while the server runs (liveness: restarting would not help an upstream
//!   outage, and a new process would register another consumer).
//! - `kinesis_relay.v1.Relay/<stream>`: SERVING once a subscription to the stream has been
//!   live, NOT_SERVING when none has been for longer than the threshold.
//! - `kinesis_relay.v1.Relay`: SERVING when every stream is (readiness).
//!
//! At shutdown everything turns NOT_SERVING first, so load balancers stop routing.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::hub::StreamHub;

/// The service name of the relay in health checks.
pub const RELAY_SERVICE: &str = "kinesis_relay.v1.Relay";
/// How often stream health is re-evaluated.
const TICK: Duration = Duration::from_millis(250);

/// Health service name of one stream.
pub fn stream_service(stream: &str) -> String {
    format!("{RELAY_SERVICE}/{stream}")
}

/// Keeps the health statuses (and `ready`) up to date until shutdown.
pub async fn run(
    reporter: HealthReporter,
    hubs: Vec<Arc<StreamHub>>,
    threshold: Duration,
    ready: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let mut last_live: HashMap<String, Instant> = HashMap::new();
    let mut healthy: HashMap<String, bool> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::stopped(&mut shutdown) => break,
        }
        let now = Instant::now();
        let mut all = true;
        for hub in &hubs {
            let live = hub.view().reading();
            if live {
                last_live.insert(hub.name().to_owned(), now);
            }
            let ok = last_live
                .get(hub.name())
                .is_some_and(|at| now.duration_since(*at) <= threshold);
            all &= ok;
            if healthy.insert(hub.name().to_owned(), ok) != Some(ok) {
                let status = if ok {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter
                    .set_service_status(&stream_service(hub.name()), status)
                    .await;
                if ok {
                    info!(stream = hub.name(), "stream healthy");
                } else if last_live.contains_key(hub.name()) {
                    warn!(
                        stream = hub.name(),
                        ?threshold,
                        "no live subscription for longer than the threshold: NOT_SERVING"
                    );
                }
            }
        }
        let status = if all {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status(RELAY_SERVICE, status).await;
        ready.send_if_modified(|ready| std::mem::replace(ready, all) != all);
    }
    for hub in &hubs {
        reporter
            .set_service_status(&stream_service(hub.name()), ServingStatus::NotServing)
            .await;
    }
    reporter
        .set_service_status(RELAY_SERVICE, ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let _ = ready.send(false);
}
