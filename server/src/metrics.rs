//! Prometheus metrics, served by the admin listener (`crate::admin`).
//!
//! Nothing is counted twice: readers and subscribers keep plain counters in the hub, and
//! this collector reads them, with the hub's gauges (ring bytes, oldest age, millis behind,
//! reader state, subscribers), at each scrape.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use crate::{
    catchup::{CatchUp, CatchUpCounters},
    connections::limits::{CloseReason, ConnectionTable},
    hub::{ReaderState, StreamHub, delay::DelaySnapshot, ends::SubscriberEnd},
    ingest::records::CORRUPT_AGGREGATES,
    service::compress::{CompressionCounters, ResponseEncoding},
};

/// Reads the hubs at each scrape.
#[derive(Debug)]
pub struct HubCollector {
    /// The hubs.
    hubs: Vec<Arc<StreamHub>>,
    /// The gRPC listener's connections.
    connections: Arc<ConnectionTable>,
    /// Catch-up of each stream.
    catch_ups: Vec<Arc<CatchUp>>,
}

type Labels = Vec<(&'static str, String)>;

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, value) in values {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (labels, value) in values {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: &Unit,
    values: &[(Labels, DelaySnapshot)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, Some(unit), MetricType::Histogram)?;
    for (labels, snapshot) in values {
        metric
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(
                snapshot.sum_seconds,
                snapshot.count,
                &snapshot.buckets,
                None,
            )?;
    }
    Ok(())
}

const STATES: [(ReaderState, &str); 4] = [
    (ReaderState::Waiting, "waiting"),
    (ReaderState::Reading, "reading"),
    (ReaderState::Reconnecting, "reconnecting"),
    (ReaderState::Finished, "finished"),
];

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (mut records_in, mut bytes_in, mut subscriptions, mut errors) =
            (vec![], vec![], vec![], vec![]);
        let (mut behind, mut states) = (vec![], vec![]);
        let (mut subscribers, mut records_out, mut bytes_out) = (vec![], vec![], vec![]);
        let (mut disconnects, mut gaps, mut ring_bytes, mut oldest_age) =
            (vec![], vec![], vec![], vec![]);
        let (mut delays, mut ends) = (vec![], vec![]);
        let now = SystemTime::now();
        for hub in &self.hubs {
            let stream = hub.name().to_owned();
            let view = hub.view();
            for shard in view.shards() {
                let labels = vec![("stream", stream.clone()), ("shard", shard.id().to_owned())];
                let counters = shard.counters();
                records_in.push((labels.clone(), counters.records_in));
                bytes_in.push((labels.clone(), counters.bytes_in));
                subscriptions.push((labels.clone(), counters.subscriptions));
                for (kind, count) in &counters.errors {
                    let mut labels = labels.clone();
                    labels.push(("kind", (*kind).to_owned()));
                    errors.push((labels, *count));
                }
                behind.push((labels.clone(), shard.millis_behind()));
                for (value, name) in STATES {
                    let mut labels = labels.clone();
                    labels.push(("state", name.to_owned()));
                    states.push((labels, i64::from(shard.state() == value)));
                }
            }
            let labels = vec![("stream", stream.clone())];
            subscribers.push((labels.clone(), hub.subscriber_count() as i64));
            let c = &hub.counters;
            records_out.push((labels.clone(), c.records_out.load(Ordering::Relaxed)));
            bytes_out.push((labels.clone(), c.bytes_out.load(Ordering::Relaxed)));
            disconnects.push((labels.clone(), c.lag_disconnects.load(Ordering::Relaxed)));
            gaps.push((labels.clone(), c.gaps.load(Ordering::Relaxed)));
            delays.push((labels.clone(), c.delivery_delay.snapshot()));
            for end in SubscriberEnd::ALL {
                let mut labels = labels.clone();
                labels.push(("reason", end.as_str().to_owned()));
                ends.push((labels, c.subscriber_ends.get(end)));
            }
            ring_bytes.push((labels.clone(), view.bytes_held() as i64));
            let age = view
                .oldest_arrival()
                .and_then(|oldest| now.duration_since(oldest).ok())
                .map_or(0, |age| age.as_secs() as i64);
            oldest_age.push((labels, age));
        }
        let e = &mut encoder;
        counter(
            e,
            "kinesis_relay_records_in",
            "Records read from Kinesis (after unpacking KPL aggregates).",
            &records_in,
        )?;
        counter(
            e,
            "kinesis_relay_bytes_in",
            "Bytes of record data read from Kinesis.",
            &bytes_in,
        )?;
        counter(
            e,
            "kinesis_relay_subscriptions",
            "SubscribeToShard subscriptions started (first and renewals).",
            &subscriptions,
        )?;
        counter(
            e,
            "kinesis_relay_corrupt_aggregates",
            "KPL aggregates that failed to unpack and were passed on as one raw record.",
            &[(vec![], CORRUPT_AGGREGATES.load(Ordering::Relaxed))],
        )?;
        counter(
            e,
            "kinesis_relay_subscription_errors",
            "SubscribeToShard errors by kind.",
            &errors,
        )?;
        gauge(
            e,
            "kinesis_relay_millis_behind_latest",
            "Milliseconds between the last record read and the tip of the shard.",
            &behind,
        )?;
        gauge(
            e,
            "kinesis_relay_reader_state",
            "1 for the shard reader's current state.",
            &states,
        )?;
        gauge(
            e,
            "kinesis_relay_subscribers",
            "Live Subscribe calls.",
            &subscribers,
        )?;
        counter(
            e,
            "kinesis_relay_records_out",
            "Records sent to subscribers.",
            &records_out,
        )?;
        counter(
            e,
            "kinesis_relay_bytes_out",
            "Bytes of responses sent to subscribers.",
            &bytes_out,
        )?;
        counter(
            e,
            "kinesis_relay_lag_disconnects",
            "Subscribers disconnected for reading too slowly.",
            &disconnects,
        )?;
        counter(
            e,
            "kinesis_relay_gaps",
            "Gap events sent to subscribers that lagged under SKIP.",
            &gaps,
        )?;
        counter(
            e,
            "kinesis_relay_subscriber_ends",
            "Subscribe calls ended, by reason (client_cancel, deadline, lag_policy, shutdown, keepalive, expired, catch_up_failed, refused).",
            &ends,
        )?;
        histogram(
            e,
            "kinesis_relay_delivery_delay",
            "Time records spent in the relay, from entering it to being handed to a subscriber's stream (per record; a batch counts at its oldest record).",
            &Unit::Seconds,
            &delays,
        )?;
        gauge(
            e,
            "kinesis_relay_ring_bytes",
            "Bytes the relay holds for replay.",
            &ring_bytes,
        )?;
        gauge(
            e,
            "kinesis_relay_ring_oldest_age_seconds",
            "Age of the oldest record held.",
            &oldest_age,
        )?;
        self.encode_connections(e)?;
        self.encode_catch_up(e)?;
        encode_compression(e)
    }
}

/// What Subscribe response compression did, by encoding.
fn encode_compression(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    type Read = fn(&CompressionCounters) -> &AtomicU64;
    let counters: [(&str, &str, Read); 4] = [
        (
            "kinesis_relay_compressed_pieces_sent",
            "Pieces of record blocks sent compressed in Subscribe responses.",
            |c| &c.pieces_sent,
        ),
        (
            "kinesis_relay_compressed_pieces_compressed",
            "Pieces compressed; the other pieces sent were shared from the cache.",
            |c| &c.pieces_compressed,
        ),
        (
            "kinesis_relay_compression_input_bytes",
            "Bytes of records compressed.",
            |c| &c.bytes_in,
        ),
        (
            "kinesis_relay_compression_output_bytes",
            "Bytes they compressed to.",
            |c| &c.bytes_out,
        ),
    ];
    for (name, help, read) in counters {
        let values: Vec<(Labels, u64)> = ResponseEncoding::ALL
            .iter()
            .map(|encoding| {
                let value = read(encoding.counters()).load(Ordering::Relaxed);
                (vec![("encoding", encoding.name().to_owned())], value)
            })
            .collect();
        counter(e, name, help, &values)?;
    }
    Ok(())
}

impl HubCollector {
    fn encode_catch_up(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Read = fn(&CatchUpCounters) -> &AtomicU64;
        let counters: [(&str, &str, Read); 7] = [
            (
                "kinesis_relay_catch_up_readers_started",
                "Catch-up readers started (GetRecords for positions older than the ring).",
                |c| &c.readers_started,
            ),
            (
                "kinesis_relay_catch_up_calls",
                "GetRecords calls made by catch-up readers.",
                |c| &c.calls,
            ),
            (
                "kinesis_relay_catch_up_bytes",
                "Bytes of records catch-up readers fetched from Kinesis.",
                |c| &c.bytes,
            ),
            (
                "kinesis_relay_catch_up_throttled",
                "Catch-up calls refused as throttled (ProvisionedThroughputExceeded), retried after a backoff.",
                |c| &c.throttled,
            ),
            (
                "kinesis_relay_catch_up_expired_iterators",
                "Shard iterators of catch-up readers that expired and were renewed.",
                |c| &c.expired_iterators,
            ),
            (
                "kinesis_relay_catch_up_handed_over",
                "Catch-up readers that stopped fetching because the ring holds what follows (their subscribers join it).",
                |c| &c.handed_over,
            ),
            (
                "kinesis_relay_catch_up_refused",
                "Subscribers refused a catch-up reader because --catch-up-readers were busy.",
                |c| &c.refused,
            ),
        ];
        let per_stream = |read: Read| -> Vec<(Labels, u64)> {
            self.catch_ups
                .iter()
                .map(|c| {
                    (
                        vec![("stream", c.stream().to_owned())],
                        read(&c.counters).load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        for (name, help, read) in counters {
            counter(e, name, help, &per_stream(read))?;
        }
        let running = per_stream(|c| &c.readers_running);
        let running: Vec<(Labels, i64)> = running
            .into_iter()
            .map(|(labels, value)| (labels, value as i64))
            .collect();
        gauge(
            e,
            "kinesis_relay_catch_up_readers",
            "Catch-up readers running now.",
            &running,
        )
    }

    fn encode_connections(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.connections.stats;
        let limits = self.connections.limits();
        gauge(
            e,
            "kinesis_relay_connections_open",
            "Open gRPC connections.",
            &[(vec![], self.connections.open() as i64)],
        )?;
        gauge(
            e,
            "kinesis_relay_connections_limit",
            "Connection limits in force (--max-connections, lowered to fit the file-descriptor limit, and --max-connections-per-address).",
            &[
                (vec![("limit", "total".to_owned())], limits.max_total as i64),
                (
                    vec![("limit", "per_address".to_owned())],
                    limits.max_per_address as i64,
                ),
            ],
        )?;
        counter(
            e,
            "kinesis_relay_connections_accepted",
            "gRPC connections accepted from the kernel (served or refused).",
            &[(vec![], stats.accepted.load(Ordering::Relaxed))],
        )?;
        counter(
            e,
            "kinesis_relay_accept_errors",
            "Failed accepts on the gRPC listener (e.g. out of file descriptors); the listener goes on.",
            &[(vec![], stats.accept_errors.load(Ordering::Relaxed))],
        )?;
        let closed: Vec<_> = CloseReason::ALL
            .iter()
            .map(|&reason| {
                (
                    vec![("reason", reason.as_str().to_owned())],
                    stats.closed(reason),
                )
            })
            .collect();
        counter(
            e,
            "kinesis_relay_connections_closed",
            "gRPC connections closed, by reason (max_connections and max_connections_per_address: refused at once).",
            &closed,
        )?;
        Ok(())
    }
}

/// A registry with the hub collector.
pub fn registry(
    hubs: Vec<Arc<StreamHub>>,
    connections: Arc<ConnectionTable>,
    catch_ups: Vec<Arc<CatchUp>>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HubCollector {
        hubs,
        connections,
        catch_ups,
    }));
    registry
}
