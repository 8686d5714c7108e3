//! Accepting connections without ever giving up.
//!
//! `accept` fails for reasons that concern one connection (the client reset it before it
//! was taken) and for reasons that concern the process (out of file descriptors, out of
//! kernel buffers). Neither may end a listener: the relay logs the failure (rate-limited),
//! waits a little for the second kind so a full descriptor table does not become a busy
//! loop, and goes on serving the connections it has.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::limits::ConnectionStats;
use crate::log_budget::LogBudget;

/// First wait after a resource error; doubled at each failure in a row.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait between two tries.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// A listener whose `accept` only returns connections.
#[derive(Debug)]
pub struct Acceptor {
    /// The socket.
    listener: TcpListener,
    /// Which listener, for the logs.
    name: &'static str,
    /// Wait before the next try after a resource error (zero after a success).
    backoff: Duration,
    /// Failures are counted here.
    stats: Arc<ConnectionStats>,
    /// Failure lines per second.
    log: LogBudget,
}

impl Acceptor {
    /// Wraps `listener`, counting failures in `stats`.
    pub fn new(listener: TcpListener, name: &'static str, stats: Arc<ConnectionStats>) -> Self {
        Self {
            listener,
            name,
            backoff: Duration::ZERO,
            stats,
            log: LogBudget::new(1),
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection with TCP_NODELAY set (a response must not wait for the
    /// client's delayed ACK). Waits as long as it takes; failures are logged and retried.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = Duration::ZERO;
                    let _ = stream.set_nodelay(true);
                    return (stream, peer);
                }
                Err(err) => {
                    self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let resource = is_resource_error(&err);
                    if resource {
                        self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    }
                    if let Some(left_out) = self.log.admit() {
                        warn!(
                            listener = self.name,
                            cause = %err,
                            retry_in_ms = if resource { self.backoff.as_millis() } else { 0 },
                            similar_lines_left_out = left_out,
                            "accepting a connection failed; serving the open connections and trying again{}",
                            if resource { " (raise the file-descriptor limit, or lower --max-connections, if this persists)" } else { "" }
                        );
                    }
                    if resource {
                        tokio::time::sleep(self.backoff).await;
                    }
                }
            }
        }
    }
}

/// Whether `err` concerns the process (descriptors, memory, buffers) rather than the one
/// connection being accepted.
fn is_resource_error(err: &io::Error) -> bool {
    use rustix::io::Errno;
    match err.raw_os_error().map(Errno::from_raw_os_error) {
        Some(errno) => [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].contains(&errno),
        // Not an OS error: treat as the cautious kind.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_buffer_exhaustion_are_resource_errors() {
        let os = |errno: rustix::io::Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        assert!(is_resource_error(&os(rustix::io::Errno::MFILE)));
        assert!(is_resource_error(&os(rustix::io::Errno::NFILE)));
        assert!(is_resource_error(&os(rustix::io::Errno::NOBUFS)));
        assert!(!is_resource_error(&os(rustix::io::Errno::CONNABORTED)));
        assert!(!is_resource_error(&os(rustix::io::Errno::CONNRESET)));
    }
}
