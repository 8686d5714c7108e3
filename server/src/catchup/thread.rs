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

use tokio::{
    runtime::Handle,
    sync::{oneshot, watch},
};
use tracing::warn;

/// The running catch-up thread.
#[derive(Debug)]
pub struct CatchUpThread {
    /// Where readers are spawned.
    pub handle: Handle,
    /// Resolves once the thread has ended and dropped the readers still running on it (an
    /// error if it panicked), so that shutdown can wait for it as for the relay's tasks.
    pub ended: oneshot::Receiver<()>,
}

/// Starts the catch-up thread. The thread runs until `shutdown` turns true (or its sender
/// is dropped); readers still running then are dropped with its runtime.
pub fn start(shutdown: watch::Receiver<bool>) -> io::Result<CatchUpThread> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("catch-up")
        .build()?;
    let handle = runtime.handle().clone();
    let (ended_tx, ended) = oneshot::channel();
    std::thread::Builder::new()
        .name("catch-up".into())
        .spawn(move || {
            if let Err(err) = lowest_priority() {
                warn!(error = %err, "could not lower the catch-up thread's priority; catch-up may delay live subscribers");
            }
            let mut shutdown = shutdown;
            runtime.block_on(crate::stopped(&mut shutdown));
            drop(runtime);
            let _ = ended_tx.send(());
        })?;
    Ok(CatchUpThread { handle, ended })
}

/// Resolves once the catch-up thread has ended (`ended`, from [`start`]): at shutdown, its
/// readers dropped. The relay runs it in its task set, so that shutdown waits for the
/// thread like any task. A thread that panicked is logged and this waits for shutdown
/// anyway: the relay's tasks end only then, and live subscribers do not need the thread.
pub async fn wait_ended(ended: oneshot::Receiver<()>, mut shutdown: watch::Receiver<bool>) {
    if ended.await.is_err() {
        tracing::error!(
            "the catch-up thread panicked: old positions can no longer be read from Kinesis"
        );
        crate::stopped(&mut shutdown).await;
    }
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
    use std::time::Duration;

    use super::*;

    #[test]
    fn runs_tasks_at_the_lowest_priority_until_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let CatchUpThread { handle, ended } = start(shutdown).expect("thread starts");
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
        // It ends at shutdown, its readers dropped with it.
        ended
            .blocking_recv()
            .expect("the thread ends without panicking");
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_thread_and_its_readers() {
        let (stop, shutdown) = watch::channel(false);
        let CatchUpThread { handle, ended } = start(shutdown.clone()).expect("thread starts");
        // A reader that never ends by itself, holding `alive` open.
        let (alive, mut reader_gone) = oneshot::channel::<()>();
        handle.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await;
        });
        let mut waiting = tokio::spawn(wait_ended(ended, shutdown));
        let early = tokio::time::timeout(Duration::from_millis(100), &mut waiting).await;
        assert!(early.is_err(), "the thread runs until shutdown");
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the thread ends at shutdown")
            .expect("no panic");
        assert_eq!(
            reader_gone.try_recv(),
            Err(oneshot::error::TryRecvError::Closed),
            "the readers were dropped before the wait ended"
        );
    }

    #[tokio::test]
    async fn a_thread_that_died_early_is_waited_for_until_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        // Its sender dropped unsent, as when the thread panics.
        let (died, ended) = oneshot::channel::<()>();
        drop(died);
        let mut waiting = tokio::spawn(wait_ended(ended, shutdown));
        let early = tokio::time::timeout(Duration::from_millis(100), &mut waiting).await;
        assert!(early.is_err(), "ending early would stop the relay");
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("it ends at shutdown")
            .expect("no panic");
    }
}
