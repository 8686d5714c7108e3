//! The thread catch-up readers run on, below the priority of the relay's async workers.
//!
//! Why a thread of its own: a GetRecords answer is parsed inside the SDK call (JSON,
//! base64, about 15 ms for 1,000 records of 1 KiB), and on the async workers that stalled
//! every live subscriber behind it (the catch-up benchmark's live p99 tripled with one
//! subscriber catching up). On a thread with the lowest scheduling priority (nice 19), the
//! kernel runs the readers only when the workers leave the CPU to them: catch-up takes
//! what live delivery does not use, which is the promise "catch-up never slows live
//! subscribers", and on a busy relay it slows down rather than the other way round.
//!
//! The readers use a Kinesis client of their own (same configuration, its own connection
//! pool): a connection opened on this thread is driven by it, and must never carry the
//! ingest's calls.

use std::io;

use tokio::{runtime::Handle, sync::watch};
use tracing::warn;

/// Nice value of the catch-up thread: the lowest priority.
const NICE: i32 = 19;

/// Starts the catch-up thread and returns a handle to spawn readers on. The thread runs
/// until `shutdown` turns true (or its sender is dropped); readers still running then are
/// dropped with it.
pub fn start(shutdown: watch::Receiver<bool>) -> io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("catch-up")
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("catch-up".into())
        .spawn(move || {
            lower_priority();
            let mut shutdown = shutdown;
            runtime.block_on(crate::stopped(&mut shutdown));
        })?;
    Ok(handle)
}

/// Lowers the calling thread's priority (on Linux, `setpriority` on a thread id applies to
/// that thread alone). Failing is not fatal: catch-up then competes with live delivery on
/// equal terms, as it would on the async workers.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(err) = rustix::process::setpriority_process(Some(thread), NICE) {
            warn!(error = %err, "could not lower the catch-up thread's priority; catch-up may delay live subscribers");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_at_the_lowest_priority_until_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let handle = start(shutdown).expect("thread starts");
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            let _ = tx.send(nice.ok());
        });
        let nice = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the task ran");
        assert_eq!(nice, Some(NICE));
        stop.send_replace(true);
    }
}
