//! The archive's lock: one object (`_archive/lock.json`) with a lease, so two archivers
//! started on one destination never interleave.
//!
//! It is created with a conditional put (`If-None-Match: *` on S3), renewed with one that
//! names the version it replaces (`If-Match`), and taken over the same way once its lease has
//! expired, or at once when it names a process of this host that no longer runs (an archiver
//! killed with `kill -9` and restarted). An archiver that cannot renew stops before its lease
//! ends; commits are conditional too (see `objects.rs`), so even a paused one that wakes up
//! late cannot overwrite another's.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, path::Path,
};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinHandle};

use crate::{archive::store::StoreUrl, error::Failure, notice};

/// What the lock object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    /// A random id of the archiver run.
    owner: String,
    /// Its host name.
    host: String,
    /// Its process id.
    pid: u32,
    /// When the lease ends, in milliseconds since the Unix epoch.
    expires_at_ms: u64,
}

/// A held lock, renewed in the background until [`Lock::release`].
pub struct Lock {
    /// What the renewal task shares: the version to replace and until when the lease
    /// surely holds.
    state: Arc<Mutex<Held>>,
    /// Tells the renewal task to stop.
    stop: watch::Sender<bool>,
    /// Why the lock was lost, once it was.
    lost: watch::Receiver<Option<String>>,
    /// The renewal task.
    renewer: JoinHandle<()>,
    /// Its store, key and holder, for the release.
    store: Arc<dyn ObjectStore>,
    key: Path,
    holder: Holder,
}

/// The lock as last written.
#[derive(Debug)]
struct Held {
    version: UpdateVersion,
    valid_until: Instant,
}

/// Attempts at taking a lock that others race for.
const ATTEMPTS: usize = 3;

impl Lock {
    /// Takes the lock of the archive at `url`, or says who holds it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        url: &StoreUrl,
        lease: Duration,
    ) -> Result<Self, Failure> {
        let key = url.prefix.clone().join("_archive").join("lock.json");
        let mut holder = Holder {
            owner: uuid::Uuid::new_v4().to_string(),
            host: host_name(),
            pid: std::process::id(),
            expires_at_ms: 0,
        };
        for _ in 0..ATTEMPTS {
            let started = Instant::now();
            holder.expires_at_ms = now_ms() + lease.as_millis() as u64;
            match put(&*store, &key, &holder, PutMode::Create).await {
                Ok(version) => return Ok(Self::start(store, key, holder, version, lease, started)),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(err) => return Err(url.failure(err)),
            }
            let current = match store.get(&key).await {
                Ok(current) => current,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(err) => return Err(url.failure(err)),
            };
            let version = UpdateVersion {
                e_tag: current.meta.e_tag.clone(),
                version: current.meta.version.clone(),
            };
            let bytes = current.bytes().await.map_err(|err| url.failure(err))?;
            let other: Holder =
                serde_json::from_slice(&bytes).map_err(|err| Failure::Destination {
                    destination: url.text.clone(),
                    cause: format!(
                        "the lock object {key} is not an archiver's lock ({err}); delete it if no \
                     archiver runs"
                    ),
                })?;
            let expired = other.expires_at_ms < now_ms();
            let dead = other.host == holder.host
                && !holder.host.is_empty()
                && (other.pid == holder.pid || !process_runs(other.pid));
            if !expired && !dead {
                let left = other.expires_at_ms.saturating_sub(now_ms()) / 1000;
                return Err(Failure::Destination {
                    destination: url.text.clone(),
                    cause: format!(
                        "another archiver holds the lock {key} (process {} on host {}, lease \
                         renewed, {left}s left); stop it first, or start this one once its \
                         lease has expired",
                        other.pid, other.host
                    ),
                });
            }
            holder.expires_at_ms = now_ms() + lease.as_millis() as u64;
            match put(&*store, &key, &holder, PutMode::Update(version)).await {
                Ok(version) => {
                    let why = if expired {
                        "its lease expired"
                    } else {
                        "that process no longer runs"
                    };
                    notice!(
                        "archive: took over the lock of process {} on host {} ({why})",
                        other.pid,
                        other.host
                    );
                    return Ok(Self::start(store, key, holder, version, lease, started));
                }
                Err(object_store::Error::Precondition { .. }) => continue,
                Err(err) => return Err(url.failure(err)),
            }
        }
        Err(Failure::Destination {
            destination: url.text.clone(),
            cause: format!("the lock {key} changed hands {ATTEMPTS} times while taking it"),
        })
    }

    /// Starts renewing a lock just written.
    fn start(
        store: Arc<dyn ObjectStore>,
        key: Path,
        holder: Holder,
        version: UpdateVersion,
        lease: Duration,
        written: Instant,
    ) -> Self {
        let state = Arc::new(Mutex::new(Held {
            version,
            valid_until: written + safe(lease),
        }));
        let (stop, stop_rx) = watch::channel(false);
        let (lost_tx, lost) = watch::channel(None);
        let renewer = tokio::spawn(renew(
            store.clone(),
            key.clone(),
            holder.clone(),
            lease,
            state.clone(),
            stop_rx,
            lost_tx,
        ));
        Self {
            state,
            stop,
            lost,
            renewer,
            store,
            key,
            holder,
        }
    }

    /// Fails when the lease may have ended: nothing may be committed then.
    pub fn check(&self) -> Result<(), String> {
        if let Some(why) = self.lost.borrow().clone() {
            return Err(why);
        }
        let held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() >= held.valid_until {
            return Err("the lock's lease could not be renewed in time".into());
        }
        Ok(())
    }

    /// Resolves when the lock is lost, with why.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The renewal task ended without saying: it was stopped.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops renewing and ends the lease, so the next archiver starts at once.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let _ = self.renewer.await;
        if self.lost.borrow().is_some() {
            return;
        }
        let version = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .version
            .clone();
        let mut holder = self.holder;
        holder.expires_at_ms = 0;
        if let Err(err) = put(&*self.store, &self.key, &holder, PutMode::Update(version)).await {
            notice!("archive: could not release the lock {}: {err}", self.key);
        }
    }
}

/// Renews the lease every third of it until stopped or lost.
async fn renew(
    store: Arc<dyn ObjectStore>,
    key: Path,
    mut holder: Holder,
    lease: Duration,
    state: Arc<Mutex<Held>>,
    mut stop: watch::Receiver<bool>,
    lost: watch::Sender<Option<String>>,
) {
    let period = lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        holder.expires_at_ms = now_ms() + lease.as_millis() as u64;
        let version = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .version
            .clone();
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(period, put(&*store, &key, &holder, PutMode::Update(version))) => attempt,
            _ = stop.changed() => return,
        };
        match attempt {
            Ok(Ok(version)) => {
                let mut held = state.lock().unwrap_or_else(|e| e.into_inner());
                held.version = version;
                held.valid_until = started + safe(lease);
            }
            Ok(Err(object_store::Error::Precondition { .. })) => {
                let _ = lost.send(Some(format!(
                    "another archiver took over the lock {key}; stopping"
                )));
                return;
            }
            Ok(Err(err)) => {
                tracing::warn!(cause = %err, "renewing the archive's lock failed");
            }
            Err(_) => tracing::warn!("renewing the archive's lock timed out"),
        }
        let valid_until = state.lock().unwrap_or_else(|e| e.into_inner()).valid_until;
        if Instant::now() >= valid_until {
            let _ = lost.send(Some(format!(
                "the lock {key} could not be renewed before its lease ended; stopping"
            )));
            return;
        }
    }
}

/// How long after a write the lease surely holds: three quarters of it, for clock skew
/// between hosts.
fn safe(lease: Duration) -> Duration {
    lease - lease / 4
}

/// Writes the lock object in `mode`; returns the version written.
async fn put(
    store: &dyn ObjectStore,
    key: &Path,
    holder: &Holder,
    mode: PutMode,
) -> object_store::Result<UpdateVersion> {
    let body = serde_json::to_vec(holder).unwrap_or_default();
    let result = store
        .put_opts(
            key,
            PutPayload::from(body),
            PutOptions {
                mode,
                ..PutOptions::default()
            },
        )
        .await?;
    Ok(UpdateVersion {
        e_tag: result.e_tag,
        version: result.version,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This host's name ("" when unknown: then no lock is taken over before its lease ends).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Whether process `pid` of this host runs. Where that cannot be known (no /proc), it is
/// taken to run, so only the lease decides.
fn process_runs(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_far_pid_does_not() {
        assert!(process_runs(std::process::id()));
        if std::path::Path::new("/proc/self").exists() {
            assert!(!process_runs(u32::MAX - 1));
        }
    }
}
