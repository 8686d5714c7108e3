//! The process's file-descriptor limit: raised to the hard limit at start, and what the
//! connection limit must leave free under it.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tracing::{info, warn};

/// Descriptors kept free of client connections, for the upstream (Kinesis or the
/// embedded emulator), checkpoint files, the admin listener and the listeners: a quarter of
/// the limit, between 64 and 1,024.
pub fn reserved(limit: u64) -> u64 {
    (limit / 4).clamp(64, 1024)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and logs both. Returns the soft limit
/// now in force (`None` when it is unlimited or cannot be read).
pub fn raise_to_hard_limit() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let before = current?;
    let mut now = before;
    if maximum.is_none_or(|hard| hard > before) {
        // An unlimited hard limit is not a valid soft limit on Linux; nr_open (1 << 20 by
        // default) is the usual ceiling.
        let target = maximum.unwrap_or(1 << 20);
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum,
            },
        ) {
            Ok(()) => now = target,
            Err(err) => {
                warn!(soft = before, hard = ?maximum, cause = %err, "could not raise the file-descriptor limit")
            }
        }
    }
    info!(
        soft = now,
        soft_at_start = before,
        hard = ?maximum,
        "file-descriptor limit"
    );
    Some(now)
}

/// `wanted` connections, lowered so that they and [`reserved`] descriptors fit under
/// `limit`.
pub fn connections_within(wanted: usize, limit: Option<u64>) -> usize {
    match limit {
        Some(limit) => {
            let room = limit.saturating_sub(reserved(limit)).max(1);
            wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_the_relay_itself() {
        assert_eq!(connections_within(16_384, Some(256)), 192);
        assert_eq!(connections_within(16_384, Some(1 << 20)), 16_384);
        assert_eq!(connections_within(16_384, Some(4096)), 3072);
        assert_eq!(connections_within(100, None), 100);
        assert_eq!(connections_within(100, Some(10)), 1);
    }
}
