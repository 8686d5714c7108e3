//! The `Relay` service: request handling and each subscriber's response stream.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::Stream;
use kinesis_relay_api::v1;
use tokio::{
    sync::watch,
    time::{Instant, Sleep, sleep_until},
};
use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status};
use tracing::{debug, info};

use kinesis_relay_api::resume::with_cursor;

use super::{encode::EncodedResponse, validate};
use crate::{
    connections::{ConnectionFate, limits::CloseReason},
    hub::{StreamHub, SubscriberGuard, ends::SubscriberEnd},
    log_budget::LogBudget,
    security::{
        auth::{Authorizer, Principal},
        limits::{Admission, SubscriberLimits, Ticket},
    },
    subscription::{LagPolicy, OpenError, Subscription, oldest_cursor, timestamp},
};

/// Settings of the serving side.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Policy for requests that leave `on_lag` unspecified.
    pub default_lag: LagPolicy,
    /// Idle time after which a heartbeat is sent.
    pub heartbeat_interval: Duration,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            default_lag: LagPolicy::Disconnect,
            heartbeat_interval: Duration::from_secs(3),
        }
    }
}

/// Who may do what.
#[derive(Debug, Clone)]
pub struct Access {
    /// Tokens and permissions; `None` lets everyone read every stream.
    pub auth: Option<Arc<Authorizer>>,
    /// Subscriber counts and rates.
    pub admission: Arc<Admission>,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            auth: None,
            admission: Admission::new(SubscriberLimits::default()),
        }
    }
}

/// The service state: the hubs of the streams served.
#[derive(Debug, Clone)]
pub struct RelayService {
    /// Hubs by stream name.
    hubs: Arc<BTreeMap<String, Arc<StreamHub>>>,
    /// Settings.
    settings: ServeSettings,
    /// Authentication and limits.
    access: Access,
    /// Becomes true when the relay shuts down; subscriptions then end with UNAVAILABLE.
    shutdown: watch::Receiver<bool>,
    /// Lines about subscribers starting and ending (a flood must not fill the disk).
    log: Arc<LogBudget>,
}

/// Subscriber log lines per second, starts and ends together.
const SUBSCRIBER_LOG_LINES_PER_SECOND: u32 = 20;

/// The stream of encoded responses of one subscription.
pub type EncodedStream = Pin<Box<dyn Stream<Item = Result<EncodedResponse, Status>> + Send>>;

impl RelayService {
    /// A service over `hubs`.
    pub fn new(
        hubs: impl IntoIterator<Item = Arc<StreamHub>>,
        settings: ServeSettings,
        access: Access,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            hubs: Arc::new(
                hubs.into_iter()
                    .map(|hub| (hub.name().to_owned(), hub))
                    .collect(),
            ),
            settings,
            access,
            shutdown,
            log: Arc::new(LogBudget::new(SUBSCRIBER_LOG_LINES_PER_SECOND)),
        }
    }

    /// The key subscriber limits count under: the principal's name, or for a relay
    /// without tokens the client's address, so that one busy client does not use up the
    /// budget of every other anonymous client.
    fn admission_key(&self, principal: &Principal, peer: Option<SocketAddr>) -> String {
        match (&self.access.auth, peer) {
            (None, Some(peer)) => format!("{}@{}", principal.name, peer.ip()),
            _ => principal.name.clone(),
        }
    }

    /// Who sent `request`.
    fn principal<T>(&self, request: &Request<T>) -> Result<Arc<Principal>, Status> {
        match &self.access.auth {
            None => Ok(Arc::new(Principal::anonymous())),
            Some(auth) => {
                let certs = request.peer_certs();
                auth.authenticate(request.metadata(), certs.as_deref().map(|v| v.as_slice()))
            }
        }
    }

    /// Resolves the stream a request names (or the only one served) and checks that
    /// `principal` may read it. Messages name only streams the principal may read.
    fn hub(&self, stream: &str, principal: &Principal) -> Result<Arc<StreamHub>, Status> {
        let served = || {
            self.hubs
                .keys()
                .filter(|name| principal.may_read(name))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        if stream.is_empty() {
            if self.hubs.len() == 1 {
                let hub = self.hubs.values().next().cloned().expect("one hub");
                return self.permit(hub, principal);
            }
            return Err(Status::invalid_argument(format!(
                "stream: required because this relay serves several streams: {}",
                served()
            )));
        }
        validate::stream_name(stream)?;
        let hub = self.hubs.get(stream).cloned().ok_or_else(|| {
            Status::not_found(format!(
                "stream {stream:?} is not served by this relay; it serves: {}",
                served()
            ))
        })?;
        self.permit(hub, principal)
    }

    fn permit(&self, hub: Arc<StreamHub>, principal: &Principal) -> Result<Arc<StreamHub>, Status> {
        if principal.may_read(hub.name()) {
            Ok(hub)
        } else {
            Err(Status::permission_denied(format!(
                "{:?} may not read stream {:?}; ask the relay's operator to add it to its streams",
                principal.name,
                hub.name()
            )))
        }
    }

    /// Starts a subscription and returns its response stream.
    pub fn subscribe_encoded(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<EncodedStream, Status> {
        let principal = self.principal(&request)?;
        let peer = request.remote_addr();
        let fate = request.extensions().get::<ConnectionFate>().cloned();
        let deadline = validate::grpc_timeout(request.metadata())?.map(|t| Instant::now() + t);
        let request = request.into_inner();
        let hub = self.hub(&request.stream, &principal)?;
        let spec = validate::subscribe_request(&request, self.settings.default_lag)?;
        let key = self.admission_key(&principal, peer);
        let ticket = self.access.admission.admit(&key)?;
        let subscription = Subscription::open(&hub, spec).map_err(|err| {
            let code = match err {
                OpenError::Starting { .. } => Code::Unavailable,
                OpenError::UnknownShard { .. } => Code::NotFound,
                OpenError::WrongStream { .. } => Code::InvalidArgument,
                OpenError::OutOfRange { .. } => Code::OutOfRange,
            };
            Status::new(code, err.to_string())
        })?;
        let feed = Feed {
            _guard: hub.add_subscriber(),
            changes: hub.changes(),
            hub,
            _ticket: ticket,
            subscription,
            pending: VecDeque::new(),
            read: Vec::new(),
            heartbeat_interval: self.settings.heartbeat_interval,
            heartbeat: Box::pin(sleep_until(
                Instant::now() + self.settings.heartbeat_interval,
            )),
            last_sent: Instant::now(),
            shutdown: self.shutdown.clone(),
            done: false,
            just_sent: false,
            deadline,
            deadline_timer: deadline.map(|at| Box::pin(sleep_until(at))),
            log: Log {
                peer,
                principal: principal.name.clone(),
                started: Instant::now(),
                fate,
                end: None,
                budget: self.log.clone(),
            },
        };
        if let Some(left_out) = self.log.admit() {
            info!(
                stream = feed.hub.name(),
                peer = ?peer,
                principal = %principal.name,
                similar_lines_left_out = left_out,
                "subscriber connected"
            );
        }
        // Polled by the HTTP/2 stream's own task: no task and no queue of ours between the
        // ring and the stream (a spawned task and a channel per subscriber cost a wake-up
        // and a hand-over per response; 1,000 subscribers got 1.2 to 1.4 times more records
        // per second without them).
        Ok(Box::pin(futures::stream::unfold(feed, |mut feed| async {
            let item = feed.next().await?;
            Some((item, feed))
        })))
    }
}

/// One subscription's source of responses.
struct Feed {
    hub: Arc<StreamHub>,
    /// Holds the subscriber's place in the limits until the stream is dropped.
    _ticket: Ticket,
    /// Counts the subscriber in the hub until the stream is dropped.
    _guard: SubscriberGuard,
    subscription: Subscription,
    /// Ticks whenever the hub changes.
    changes: watch::Receiver<u64>,
    /// Responses read from the ring, not yet handed to the transport.
    pending: VecDeque<EncodedResponse>,
    /// Where a read of the ring puts its responses (kept to reuse its allocation).
    read: Vec<EncodedResponse>,
    heartbeat_interval: Duration,
    /// Fires at the earliest time a heartbeat may be due. Moved only when it fires, not at
    /// every response: arming a timer per wait cost more than the rare early wake-up.
    heartbeat: Pin<Box<Sleep>>,
    last_sent: Instant,
    shutdown: watch::Receiver<bool>,
    /// Set once the stream has ended with a status.
    done: bool,
    /// A response was just handed over; see [`Feed::next`].
    just_sent: bool,
    /// When the call's `grpc-timeout` passes.
    deadline: Option<Instant>,
    /// Fires at `deadline`, while the subscriber waits for records.
    deadline_timer: Option<Pin<Box<Sleep>>>,
    /// Who it is, and why it ended, for the log line and counter at its end.
    log: Log,
}

/// What the line logged at a subscriber's end says.
struct Log {
    peer: Option<SocketAddr>,
    principal: String,
    started: Instant,
    /// How the connection ended, read when the client went away without a status.
    fate: Option<ConnectionFate>,
    /// Set when the relay ended the call with a status.
    end: Option<SubscriberEnd>,
    budget: Arc<LogBudget>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        let log = &self.log;
        let end = log
            .end
            .unwrap_or_else(|| match log.fate.as_ref().and_then(|f| f.reason()) {
                Some(CloseReason::Keepalive) => SubscriberEnd::Keepalive,
                Some(CloseReason::Shutdown | CloseReason::ShutdownGrace) => SubscriberEnd::Shutdown,
                _ => SubscriberEnd::ClientCancel,
            });
        self.hub.counters.subscriber_ends.count(end);
        if let Some(left_out) = log.budget.admit() {
            info!(
                stream = self.hub.name(),
                peer = ?log.peer,
                principal = %log.principal,
                reason = end.as_str(),
                duration_ms = log.started.elapsed().as_millis() as u64,
                similar_lines_left_out = left_out,
                "subscriber ended"
            );
        }
    }
}

impl Feed {
    /// The next response, or the status that ends the stream: the client lagged under
    /// DISCONNECT or the relay shuts down. `None` after that.
    async fn next(&mut self) -> Option<Result<EncodedResponse, Status>> {
        if self.done {
            return None;
        }
        loop {
            if *self.shutdown.borrow() {
                return Some(Err(self.shutdown_status()));
            }
            if self.deadline.is_some_and(|at| Instant::now() >= at) {
                return Some(Err(self.deadline_status()));
            }
            if let Some(response) = self.pending.pop_front() {
                let counters = &self.hub.counters;
                counters
                    .records_out
                    .fetch_add(response.records as u64, Ordering::Relaxed);
                counters
                    .bytes_out
                    .fetch_add(response.len() as u64, Ordering::Relaxed);
                self.last_sent = Instant::now();
                if let Some(oldest) = response.oldest {
                    counters.delivery_delay.observe(
                        self.last_sent.into_std().saturating_duration_since(oldest),
                        response.records as u64,
                    );
                }
                self.just_sent = true;
                return Some(Ok(response));
            }
            // hyper asks for the next response as soon as it has queued the last one, long
            // before that one is written. Letting the connections write first means that
            // what arrives meanwhile joins this subscriber's next batch: fewer, larger
            // writes under load, and no delay when there is nothing else to run.
            if std::mem::take(&mut self.just_sent) {
                tokio::task::yield_now().await;
                continue;
            }
            // Mark the version seen before reading, so that an append after the read wakes
            // the wait below.
            self.changes.borrow_and_update();
            match self.subscription.poll(&self.hub, &mut self.read) {
                Err(lagged) => {
                    self.hub
                        .counters
                        .lag_disconnects
                        .fetch_add(1, Ordering::Relaxed);
                    debug!(stream = self.hub.name(), shard = %lagged.shard, "subscriber too slow, disconnecting");
                    self.done = true;
                    self.log.end = Some(SubscriberEnd::LagPolicy);
                    return Some(Err(with_cursor(
                        Code::ResourceExhausted,
                        format!(
                            "this subscriber read too slowly and fell behind the oldest record the relay holds in shard {}; resume with the cursor in the status details (trailer kinesis-relay-cursor), read faster, or subscribe with on_lag LAG_POLICY_SKIP",
                            lagged.shard
                        ),
                        &lagged.cursor,
                    )));
                }
                Ok(progressed) => {
                    self.pending.extend(self.read.drain(..));
                    if progressed || !self.pending.is_empty() {
                        continue;
                    }
                }
            }
            let deadline_timer = &mut self.deadline_timer;
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() { return None },
                () = async {
                    match deadline_timer {
                        Some(timer) => timer.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => return Some(Err(self.deadline_status())),
                () = &mut self.heartbeat => {
                    let due = self.last_sent + self.heartbeat_interval;
                    let now = Instant::now();
                    if now < due {
                        self.heartbeat.as_mut().reset(due);
                        continue;
                    }
                    self.heartbeat.as_mut().reset(now + self.heartbeat_interval);
                    self.last_sent = now;
                    return Some(Ok(self.subscription.heartbeat(&self.hub)));
                }
                // Also when the shutdown sender is gone: the relay is going away either way.
                _ = crate::stopped(&mut self.shutdown) => return Some(Err(self.shutdown_status())),
            }
        }
    }

    /// Ends the stream: the relay shuts down.
    fn shutdown_status(&mut self) -> Status {
        self.end_with(
            SubscriberEnd::Shutdown,
            Code::Unavailable,
            "the relay is shutting down; resume on another relay (or this one when it is back)",
        )
    }

    /// Ends the stream: the call's deadline passed.
    fn deadline_status(&mut self) -> Status {
        self.end_with(
            SubscriberEnd::Deadline,
            Code::DeadlineExceeded,
            "the call's deadline (grpc-timeout) passed; resume",
        )
    }

    /// Marks the stream ended for `end` and builds its status, which carries the cursor.
    fn end_with(&mut self, end: SubscriberEnd, code: Code, what: &str) -> Status {
        self.done = true;
        self.log.end = Some(end);
        with_cursor(
            code,
            format!("{what} with the cursor in the status details (trailer kinesis-relay-cursor)"),
            &self.subscription.encoded_cursor(),
        )
    }
}

#[tonic::async_trait]
impl v1::relay_server::Relay for RelayService {
    type SubscribeStream =
        Pin<Box<dyn Stream<Item = Result<v1::SubscribeResponse, Status>> + Send>>;

    /// The generic path (decodes what the encode-once path writes as is); the server mounts
    /// [`super::RelayGrpc`], which routes Subscribe to the encode-once codec instead.
    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let stream = self.subscribe_encoded(request)?;
        Ok(Response::new(Box::pin(stream.map(|item| {
            item.and_then(|encoded| {
                encoded
                    .decode()
                    .map_err(|err| Status::internal(format!("response encoding: {err}")))
            })
        }))))
    }

    async fn list_streams(
        &self,
        request: Request<v1::ListStreamsRequest>,
    ) -> Result<Response<v1::ListStreamsResponse>, Status> {
        let principal = self.principal(&request)?;
        let streams = self
            .hubs
            .values()
            .filter(|hub| principal.may_read(hub.name()))
            .map(|hub| {
                let state = hub.read();
                v1::StreamSummary {
                    name: hub.name().to_owned(),
                    shard_count: state.open_shards() as u32,
                    status: state.status().into(),
                }
            })
            .collect();
        Ok(Response::new(v1::ListStreamsResponse { streams }))
    }

    async fn describe_stream(
        &self,
        request: Request<v1::DescribeStreamRequest>,
    ) -> Result<Response<v1::DescribeStreamResponse>, Status> {
        let principal = self.principal(&request)?;
        let hub = self.hub(&request.get_ref().stream, &principal)?;
        let state = hub.read();
        let shards = state
            .shards
            .values()
            .map(|slot| v1::Shard {
                shard_id: slot.meta.shard_id.clone(),
                parent_shard_id: slot.meta.parents.first().cloned().unwrap_or_default(),
                adjacent_parent_shard_id: slot.meta.parents.get(1).cloned().unwrap_or_default(),
                hash_key_range: Some(v1::HashKeyRange {
                    starting_hash_key: slot.meta.hash_key_range.0.clone(),
                    ending_hash_key: slot.meta.hash_key_range.1.clone(),
                }),
                state: v1::ShardState::from(slot.state).into(),
                last_sequence_number: slot
                    .last_sequence()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                millis_behind_latest: slot.millis_behind,
                oldest_sequence_number: slot
                    .ring
                    .front()
                    .map(|entry| entry.sequence.to_string())
                    .unwrap_or_default(),
                records_held: slot.ring.len() as u64,
                bytes_held: slot.ring.bytes() as u64,
            })
            .collect();
        let response = v1::DescribeStreamResponse {
            stream: hub.name().to_owned(),
            status: state.status().into(),
            consumer: Some(v1::Consumer {
                name: state.consumer.name.clone(),
                arn: state.consumer.arn.clone(),
                status: state.consumer.status.clone(),
            }),
            shards,
            subscriber_count: hub.subscriber_count() as u32,
            oldest_cursor: oldest_cursor(hub.name(), &state),
            oldest_timestamp: state.oldest_arrival().map(timestamp),
        };
        Ok(Response::new(response))
    }
}
