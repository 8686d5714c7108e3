//! Admission of subscribers: a total cap, a cap per principal, and a subscribe-call rate per
//! principal. Beyond a limit the caller gets RESOURCE_EXHAUSTED; everyone else is served.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use tonic::Status;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct SubscriberLimits {
    /// Live subscriptions in total.
    pub max_subscribers: usize,
    /// Live subscriptions per principal (per client address for anonymous clients).
    pub max_per_principal: usize,
    /// Subscribe calls per principal (or anonymous client address) per second, in bursts
    /// of twice as many.
    pub subscribe_rate: f64,
}

impl Default for SubscriberLimits {
    fn default() -> Self {
        Self {
            max_subscribers: 10_000,
            max_per_principal: 2_000,
            subscribe_rate: 200.0,
        }
    }
}

#[derive(Debug)]
struct PrincipalState {
    live: usize,
    tokens: f64,
    refilled: Instant,
}

/// Counts live subscribers and rates.
#[derive(Debug)]
pub struct Admission {
    /// The limits.
    limits: SubscriberLimits,
    /// Live subscribers in total and per principal, and each principal's rate bucket.
    state: Mutex<(usize, HashMap<String, PrincipalState>)>,
}

/// A live subscription's place; released on drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    principal: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
        if let Some(entry) = state.1.get_mut(&self.principal) {
            entry.live = entry.live.saturating_sub(1);
        }
    }
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: SubscriberLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new((0, HashMap::new())),
        })
    }

    /// Admits a subscriber of `principal`, or says which limit it hit.
    pub fn admit(self: &Arc<Self>, principal: &str) -> Result<Ticket, Status> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *guard;
        let burst = (self.limits.subscribe_rate * 2.0).max(1.0);
        let now = Instant::now();
        // Forget idle principals so the map stays bounded by the live ones.
        if per.len() > 10_000 {
            per.retain(|_, state| state.live > 0);
        }
        let state = per.entry(principal.to_owned()).or_insert(PrincipalState {
            live: 0,
            tokens: burst,
            refilled: now,
        });
        state.tokens = (state.tokens
            + now.duration_since(state.refilled).as_secs_f64() * self.limits.subscribe_rate)
            .min(burst);
        state.refilled = now;
        if state.tokens < 1.0 {
            return Err(Status::resource_exhausted(format!(
                "too many Subscribe calls: at most {} per second for {principal:?}; retry with backoff",
                self.limits.subscribe_rate
            )));
        }
        if *total >= self.limits.max_subscribers {
            return Err(Status::resource_exhausted(format!(
                "the relay serves its maximum of {} subscribers; retry later or use another relay",
                self.limits.max_subscribers
            )));
        }
        if state.live >= self.limits.max_per_principal {
            return Err(Status::resource_exhausted(format!(
                "{principal:?} already has its maximum of {} live subscriptions; close some first",
                self.limits.max_per_principal
            )));
        }
        state.tokens -= 1.0;
        state.live += 1;
        *total += 1;
        Ok(Ticket {
            admission: self.clone(),
            principal: principal.to_owned(),
        })
    }

    /// Live subscribers in total.
    pub fn live(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_totals_per_principal_and_rates() {
        let admission = Admission::new(SubscriberLimits {
            max_subscribers: 3,
            max_per_principal: 2,
            subscribe_rate: 1000.0,
        });
        let a1 = admission.admit("a").unwrap();
        let _a2 = admission.admit("a").unwrap();
        let err = admission.admit("a").unwrap_err();
        assert!(err.message().contains("maximum of 2"));
        let _b1 = admission.admit("b").unwrap();
        let err = admission.admit("b").unwrap_err();
        assert!(err.message().contains("maximum of 3 subscribers"));
        drop(a1);
        assert_eq!(admission.live(), 2);
        admission.admit("b").unwrap();

        let slow = Admission::new(SubscriberLimits {
            subscribe_rate: 1.0,
            ..SubscriberLimits::default()
        });
        let _t1 = slow.admit("x").unwrap();
        let _t2 = slow.admit("x").unwrap();
        let err = slow.admit("x").unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("per second"));
    }
}
