//! Who holds a subscription for which consumer and shard, and the takeover rule.
//!
//! A second SubscribeToShard for the same consumer and shard within the takeover window of
//! the previous successful one is refused with ResourceInUseException, whether or not the
//! previous one is still open (AWS counts from the call). After the window the new one takes
//! over and the old one ends with a ResourceInUseException event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::error::KinesisError;

/// How the fault injection ends subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndMode {
    /// Send an `InternalFailure` exception event, then end the event stream.
    ErrorEvent,
    /// Reset the stream and close the connections that carry subscriptions, with no event.
    DropConnection,
}

/// Why a subscription is told to end before its lifetime is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// A newer subscription for the same consumer and shard took over.
    Superseded,
    /// The consumer or its stream was deleted.
    ConsumerDeleted,
    /// Fault injection.
    Fault(EndMode),
}

/// The registry entry of the latest subscription of one consumer and shard.
#[derive(Debug)]
struct Slot {
    /// Tells this subscription apart from a later one of the same key.
    id: u64,
    /// When the SubscribeToShard call succeeded; the takeover window counts from here.
    started: Instant,
    /// Ends the subscription; `None` once it has ended.
    ender: Option<watch::Sender<Option<EndReason>>>,
}

/// A subscription's claim on its consumer and shard.
#[derive(Debug)]
pub(crate) struct Claim {
    /// (consumer ARN, shard id).
    key: (String, String),
    /// The slot id.
    id: u64,
    /// Changes to `Some(reason)` when the subscription must end.
    pub(crate) ended: watch::Receiver<Option<EndReason>>,
}

/// All subscriptions, by (consumer ARN, shard id).
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// The latest subscription of each key, kept after it ends for the takeover window.
    slots: Mutex<HashMap<(String, String), Slot>>,
    /// The next slot id.
    next_id: Mutex<u64>,
}

impl Subscriptions {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new subscription, applying the takeover rule.
    pub(crate) fn claim(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        window: Duration,
    ) -> Result<Claim, KinesisError> {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let now = Instant::now();
        let key = (consumer_arn.to_owned(), shard_id.to_owned());
        let mut slots = self.slots();
        slots.retain(|_, slot| slot.ender.is_some() || now.duration_since(slot.started) < window);
        if let Some(previous) = slots.get(&key)
            && now.duration_since(previous.started) < window
        {
            return Err(KinesisError::ResourceInUse(format!(
                "Another active subscription exists for consumer {consumer_arn} and shard {shard_id}"
            )));
        }
        if let Some(ender) = slots.remove(&key).and_then(|slot| slot.ender) {
            ender.send_replace(Some(EndReason::Superseded));
        }
        let (ender, ended) = watch::channel(None);
        slots.insert(
            key.clone(),
            Slot {
                id,
                started: now,
                ender: Some(ender),
            },
        );
        Ok(Claim { key, id, ended })
    }

    /// Marks a subscription as ended; its slot stays for the takeover window.
    pub(crate) fn release(&self, claim: &Claim) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&claim.key)
            && slot.id == claim.id
        {
            slot.ender = None;
        }
    }

    /// Ends every open subscription.
    pub(crate) fn end_all(&self, reason: EndReason) {
        for slot in self.slots().values() {
            if let Some(ender) = &slot.ender {
                ender.send_replace(Some(reason));
            }
        }
    }

    /// Ends the subscriptions of a deleted consumer and forgets them.
    pub(crate) fn end_consumer(&self, consumer_arn: &str) {
        self.slots().retain(|(arn, _), slot| {
            if arn != consumer_arn {
                return true;
            }
            if let Some(ender) = &slot.ender {
                ender.send_replace(Some(EndReason::ConsumerDeleted));
            }
            false
        });
    }

    /// How many subscriptions are open now.
    pub(crate) fn active(&self) -> usize {
        self.slots().values().filter(|s| s.ender.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_within_the_window_is_refused() {
        let subs = Subscriptions::default();
        let _first = subs.claim("c", "s", Duration::from_secs(60)).unwrap();
        assert!(matches!(
            subs.claim("c", "s", Duration::from_secs(60)),
            Err(KinesisError::ResourceInUse(_))
        ));
        assert!(subs.claim("c", "other", Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn claim_after_the_window_takes_over() {
        let subs = Subscriptions::default();
        let first = subs.claim("c", "s", Duration::ZERO).unwrap();
        let _second = subs.claim("c", "s", Duration::ZERO).unwrap();
        assert_eq!(*first.ended.borrow(), Some(EndReason::Superseded));
        subs.release(&first);
        assert_eq!(subs.active(), 1);
    }
}
