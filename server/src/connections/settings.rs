//! The gRPC listener's settings.

use std::time::Duration;

use super::limits::ConnectionLimits;
use crate::web::cors::Cors;

/// Transport settings of the gRPC listener.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Interval of HTTP/2 keepalive pings.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Concurrent streams (calls) per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Largest request message accepted.
    pub max_request_bytes: usize,
    /// Streams a client may reset before they are accepted (h2's rapid-reset protection).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset for protocol errors before it closes the connection
    /// (h2's flood protection; tonic leaves it unset).
    pub max_local_error_reset_streams: usize,
    /// Time a new connection has to finish its TLS handshake, send the HTTP/2 preface and
    /// start its first call; past it the connection is closed (silent connections would
    /// otherwise hold a descriptor forever).
    pub setup_timeout: Duration,
    /// Open connections in total and per client address.
    pub limits: ConnectionLimits,
    /// Largest request metadata (header list) a call may carry; larger gets
    /// RESOURCE_EXHAUSTED for that call alone.
    pub max_header_list_bytes: usize,
    /// At shutdown, time the calls get to end before their connections are closed.
    pub shutdown_grace: Duration,
    /// Whether responses may be compressed (gzip, zstd) for clients that accept it.
    pub compress_responses: bool,
    /// Compression level of Subscribe responses (1, fastest, to 9).
    pub compression_level: u32,
    /// Whether the frames h2 writes in one poll go out in one system call
    /// ([`coalesce::Coalescing`]); off writes each frame on its own, as h2 does.
    pub coalesce_writes: bool,
    /// Whether the web console is served at `/console/` (`crate::web::console`).
    pub console: bool,
    /// Origins whose browser pages may call gRPC-Web and the HTTP endpoints (none by
    /// default).
    pub cors: Cors,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 100,
            max_request_bytes: 1 << 20,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            setup_timeout: Duration::from_secs(10),
            limits: ConnectionLimits::default(),
            max_header_list_bytes: 16 << 10,
            shutdown_grace: Duration::from_secs(5),
            compress_responses: true,
            compression_level: 3,
            coalesce_writes: true,
            console: true,
            cors: Cors::default(),
        }
    }
}

impl TransportSettings {
    /// The header list size HTTP/2 itself accepts. Larger than the gRPC limit on purpose:
    /// h2 answers a header list over its own limit with a bare HTTP 431 (no gRPC status),
    /// and a header block spread over more CONTINUATION frames than that limit needs with
    /// GOAWAY, ending every call on the connection. Up to this size (2 MiB by default) the
    /// call gets a gRPC status naming `--max-header-list-bytes` instead.
    pub(super) fn http2_header_list_size(&self) -> u32 {
        let bytes = self.max_header_list_bytes.max(1 << 20).saturating_mul(2);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_accepts_more_than_the_grpc_limit_so_calls_get_a_status() {
        let settings = TransportSettings::default();
        assert!(settings.http2_header_list_size() as usize >= 2 * (1 << 20));
        let large = TransportSettings {
            max_header_list_bytes: 4 << 20,
            ..TransportSettings::default()
        };
        assert_eq!(large.http2_header_list_size(), 8 << 20);
    }
}
