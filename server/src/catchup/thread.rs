//! The thread catch-up readers run on, below the priority of the relay's async workers.
//!
//! Why a thread of its own: a GetRecords answer is parsed inside the SDK call (JSON,
//! base64, about 15 ms for 1,000 records of 1 KiB), and on the async workers that stalled
//! every live subscriber behind it (the catch-up benchmark's live p99 tripled with one
//! subscriber catching up). On a thread of Linux's `SCHED_IDLE` policy, the kernel runs the
//! readers only when the workers leave the CPU to them, and a worker that wakes takes the
//! CPU back at once: catch-up takes what live delivery does not use, which is the promise
//! "catch-up never slows live subscribers", and on a busy relay it slows down rather than
//! the other way round. (Nice 19 alone was not enough: the kernel lets a running thread
//! finish its time slice, about a millisecond, before a woken one runs, and the benchmark's
//! live p99 showed it.)
//!
//! The readers use a Kinesis client of their own (same configuration, its own connection
//! pool): a connection opened on this thread is driven by it, and must never carry the
//! ingest's calls.

use std::io;

use tokio::{runtime::Handle, sync::watch};
use tracing::warn;

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
            if let Err(err) = lowest_priority() {
                warn!(error = %err, "could not lower the catch-up thread's priority; catch-up may delay live subscribers");
            }
            let mut shutdown = shutdown;
            runtime.block_on(crate::stopped(&mut shutdown));
        })?;
    Ok(handle)
}

/// Gives the calling thread the lowest priority: `SCHED_IDLE` (and the lowest nice value)
/// where the platform has it, else the lowest nice value. Failing is not fatal: catch-up
/// then competes with live delivery on equal terms, as it would on the async workers.
pub fn lowest_priority() -> Result<(), String> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let policy = NormalThreadSchedulePolicy::Idle;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let policy = NormalThreadSchedulePolicy::Other;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(policy),
    )
    .map_err(|err| format!("{err:?}"))
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
            let _ = tx.send(thread_priority::thread_schedule_policy().ok());
        });
        let policy = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the task ran");
        assert_eq!(
            policy,
            Some(thread_priority::ThreadSchedulePolicy::Normal(
                thread_priority::NormalThreadSchedulePolicy::Idle
            ))
        );
        stop.send_replace(true);
    }
}
