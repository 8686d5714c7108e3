//! Catching-up subscribers read in turns, so that live ones never queue behind them all.
//!
//! Why: one GetRecords answer wakes every subscriber attached to its reader at once. With
//! 100 of them, each read a 64 KiB batch and its connection wrote it before a live
//! subscriber, woken by a new record a moment later, got to run: the catch-up benchmark's
//! live p99 went from 3 to 25 ms. A catching-up subscriber now takes a turn before it
//! reads, and gives it back only after it has let the scheduler run what was queued
//! meanwhile (live subscribers, the connection writing the previous batch). The others
//! wait for their turn outside the scheduler's queue, so a live subscriber finds at most a
//! few catch-up batches ahead of it, however many subscribers catch up.
//!
//! A turn is never held while the subscriber waits for its client (flow control), only
//! around one read and one yield: a stalled client cannot stop the others.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Turns to read catch-up batches, shared by the relay's catching-up subscribers.
#[derive(Debug, Clone)]
pub struct Turns {
    semaphore: Arc<Semaphore>,
}

/// A turn, given back when dropped.
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl Turns {
    /// `at_once` turns at a time: the number of async workers, so that every worker can
    /// serve one catching-up subscriber while live ones still find it soon.
    pub fn new(at_once: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(at_once.max(1))),
        }
    }

    /// Waits for a turn (first come, first served).
    pub async fn take(&self) -> Turn {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the turns' semaphore is never closed");
        Turn { _permit: permit }
    }

    /// Turns as many as the current runtime has workers.
    pub fn per_worker() -> Self {
        Self::new(tokio::runtime::Handle::current().metrics().num_workers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_is_given_back_when_dropped_and_turns_come_in_order() {
        let turns = Turns::new(1);
        let first = turns.take().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..3 {
            let turns = turns.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _turn = turns.take().await;
                let _ = tx.send(n);
            });
            // Each waiter queues before the next is spawned.
            tokio::task::yield_now().await;
        }
        assert!(rx.try_recv().is_err(), "nobody runs while the turn is held");
        drop(first);
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(rx.recv().await.expect("every waiter gets a turn"));
        }
        assert_eq!(order, vec![0, 1, 2]);
    }
}
