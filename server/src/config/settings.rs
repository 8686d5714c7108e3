//! From flags to the settings of each part of the relay.

use std::time::Duration;

use super::{Cli, OnLag, Switch, expand_consumer_name};
use crate::{
    AdminSettings, SecuritySettings,
    catchup::{CatchUpSettings, budget::Rates},
    connections::limits::ConnectionLimits,
    hub::RingLimits,
    ingest::{IngestSettings, upstream_relay::UpstreamRelay},
    security::{limits::SubscriberLimits, tls::TlsFiles},
    service::{ServeSettings, TransportSettings},
    subscription::LagPolicy,
    web::cors::Cors,
};

impl Cli {
    /// The ingest settings these flags describe.
    pub fn ingest(&self) -> IngestSettings {
        IngestSettings {
            consumer_name: expand_consumer_name(&self.consumer_name),
            initial_position: self.starting_position.clone(),
            state_dir: self.state_dir.clone(),
            checkpoint_interval: self.checkpoint_interval,
            watchdog: self.watchdog_timeout,
            list_shards_interval: self.list_shards_interval,
            consumer_deadline: self.consumer_timeout,
            deregister_on_exit: self.deregister_on_exit,
            upstream: self.upstream_relay.as_ref().map(|url| UpstreamRelay {
                url: url.clone(),
                token: self.upstream_token.clone(),
                ca_cert: self.upstream_ca_cert.clone(),
            }),
            ..IngestSettings::default()
        }
    }

    /// Catch-up from Kinesis.
    pub fn catch_up(&self) -> CatchUpSettings {
        CatchUpSettings {
            max_readers: self.catch_up_readers as usize,
            rates: Rates {
                calls: self.catch_up_calls_per_shard,
                bytes: self.catch_up_bytes_per_shard as f64,
            },
            buffer_bytes: self.catch_up_buffer.max(1 << 20),
            ..CatchUpSettings::default()
        }
    }

    /// The ring limits.
    pub fn rings(&self) -> RingLimits {
        RingLimits {
            max_bytes: self.ring_max_bytes,
            max_age: self.ring_max_age,
        }
    }

    /// The serving settings.
    pub fn serve(&self) -> ServeSettings {
        ServeSettings {
            default_lag: match self.on_lag {
                OnLag::Disconnect => LagPolicy::Disconnect,
                OnLag::Skip => LagPolicy::Skip,
                OnLag::CatchUp => LagPolicy::CatchUp,
            },
            heartbeat_interval: self.heartbeat_interval,
            starting_wait: self.starting_wait,
        }
    }

    /// The transport settings.
    pub fn transport(&self) -> TransportSettings {
        TransportSettings {
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            max_concurrent_streams: self.max_streams_per_connection,
            max_request_bytes: self.max_request_bytes,
            max_pending_accept_reset_streams: self.http2_max_pending_accept_reset_streams,
            max_local_error_reset_streams: self.http2_max_local_error_reset_streams,
            setup_timeout: self.connection_setup_timeout,
            limits: ConnectionLimits {
                max_total: self.max_connections,
                max_per_address: self.max_connections_per_address,
            },
            max_header_list_bytes: self.max_header_list_bytes,
            shutdown_grace: self.shutdown_grace,
            compress_responses: self.response_compression == Switch::On,
            compression_level: self.response_compression_level,
            coalesce_writes: self.coalesce_writes == Switch::On,
            cors: Cors::new(&self.cors_allowed_origins),
            console: self.console == Switch::On,
        }
    }

    /// How long the embedded emulator keeps records.
    pub fn embedded_retention(&self) -> Duration {
        self.embedded_retention.unwrap_or(self.ring_max_age)
    }

    /// Metrics and health.
    pub fn admin(&self) -> AdminSettings {
        AdminSettings {
            metrics_listen: self.metrics_listen,
            health_threshold: self.health_threshold,
        }
    }

    /// TLS, tokens and limits.
    pub fn security(&self) -> SecuritySettings {
        SecuritySettings {
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                }),
                _ => None,
            },
            auth_tokens: self.auth_tokens.clone(),
            limits: SubscriberLimits {
                max_subscribers: self.max_subscribers,
                max_per_principal: self.max_subscribers_per_token,
                subscribe_rate: self.subscribe_rate,
            },
        }
    }
}
