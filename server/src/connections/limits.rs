//! How many connections the relay holds: in total and per client address. A connection
//! past a limit is closed at once and counted, so a flood can neither exhaust the
//! process's file descriptors nor crowd out the clients already served.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections in total (lowered at start to fit the file-descriptor limit).
    pub max_total: usize,
    /// Open connections from one client IP address.
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_total: 16_384,
            max_per_address: 4_096,
        }
    }
}

/// Why a connection ended, or was never served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Over `max_total`.
    RejectedTotal,
    /// Over `max_per_address`.
    RejectedPerAddress,
    /// No TLS handshake, HTTP/2 preface and first request within the setup deadline.
    SetupDeadline,
    /// A keepalive ping went unanswered.
    Keepalive,
    /// The client closed it (or it broke).
    Client,
    /// Still open when the shutdown grace period ended.
    ShutdownGrace,
    /// Closed by the relay's shutdown after its calls ended.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in metric order.
    pub const ALL: [CloseReason; 7] = [
        CloseReason::RejectedTotal,
        CloseReason::RejectedPerAddress,
        CloseReason::SetupDeadline,
        CloseReason::Keepalive,
        CloseReason::Client,
        CloseReason::ShutdownGrace,
        CloseReason::Shutdown,
    ];

    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::RejectedTotal => "max_connections",
            CloseReason::RejectedPerAddress => "max_connections_per_address",
            CloseReason::SetupDeadline => "setup_deadline",
            CloseReason::Keepalive => "keepalive",
            CloseReason::Client => "client",
            CloseReason::ShutdownGrace => "shutdown_grace",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Counters of one listener's connections, read by the metrics collector.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections accepted from the kernel (served or rejected).
    pub accepted: AtomicU64,
    /// Accept calls that failed (out of descriptors, aborted handshakes, ...).
    pub accept_errors: AtomicU64,
    /// Connections that ended, by [`CloseReason`] (same order as [`CloseReason::ALL`]).
    closed: [AtomicU64; CloseReason::ALL.len()],
}

impl ConnectionStats {
    /// Counts a connection that ended for `reason`.
    pub fn count_close(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections that ended for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].load(Ordering::Relaxed)
    }
}

/// Open connections, checked against the limits.
#[derive(Debug)]
pub struct ConnectionTable {
    /// The limits.
    limits: ConnectionLimits,
    /// Open connections in total and per address (addresses with none are removed, so
    /// the map is bounded by the open connections).
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// Counters (shared with the listener's [`super::accept::Acceptor`]).
    pub stats: Arc<ConnectionStats>,
}

/// An open connection's place in the table; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    table: Arc<ConnectionTable>,
    address: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(count) = open.1.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.1.remove(&self.address);
            }
        }
    }
}

impl ConnectionSlot {
    /// Counts the end of this connection.
    pub fn count_close(&self, reason: CloseReason) {
        self.table.stats.count_close(reason);
    }
}

impl ConnectionTable {
    /// An empty table under `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::new((0, HashMap::new())),
            stats: Arc::default(),
        })
    }

    /// A place for a new connection from `address`, or the limit it is over (counted).
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<ConnectionSlot, CloseReason> {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_address) = &mut *open;
        let rejected = if *total >= self.limits.max_total {
            Some(CloseReason::RejectedTotal)
        } else if per_address.get(&address).copied().unwrap_or(0) >= self.limits.max_per_address {
            Some(CloseReason::RejectedPerAddress)
        } else {
            None
        };
        if let Some(reason) = rejected {
            self.stats.count_close(reason);
            return Err(reason);
        }
        *total += 1;
        *per_address.entry(address).or_insert(0) += 1;
        Ok(ConnectionSlot {
            table: self.clone(),
            address,
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_connections_in_total_and_per_address() {
        let table = ConnectionTable::new(ConnectionLimits {
            max_total: 3,
            max_per_address: 2,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = table.admit(a).unwrap();
        let _a2 = table.admit(a).unwrap();
        assert_eq!(table.admit(a).unwrap_err(), CloseReason::RejectedPerAddress);
        let _b1 = table.admit(b).unwrap();
        assert_eq!(table.admit(b).unwrap_err(), CloseReason::RejectedTotal);
        assert_eq!(table.open(), 3);
        drop(a1);
        assert_eq!(table.open(), 2);
        let _b2 = table.admit(b).unwrap();
        assert_eq!(table.stats.accepted.load(Ordering::Relaxed), 6);
        assert_eq!(table.stats.closed(CloseReason::RejectedPerAddress), 1);
        assert_eq!(table.stats.closed(CloseReason::RejectedTotal), 1);
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let table = ConnectionTable::new(ConnectionLimits::default());
        let slots: Vec<_> = (0..100u8)
            .map(|i| table.admit(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        drop(slots);
        assert!(table.open.lock().unwrap().1.is_empty());
    }
}
