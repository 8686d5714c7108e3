//! Waiting on a condition with a deadline.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// Upper bound for any wait in a test. Generous on purpose: it only bounds how long a broken
/// test takes to fail, and a passing one never waits it out, while two cores running a whole
/// suite (child processes, S3 uploads, many relays) can make a healthy wait take tens of
/// seconds.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often [`eventually`] checks again: short, so that tests are not slowed by it.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` holds, checking every 20 ms, or panics after [`DEADLINE`] naming
/// `what` was waited for.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}
