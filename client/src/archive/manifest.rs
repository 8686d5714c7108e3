//! The bookkeeping objects of an archive in an object store, under `_archive/`: a manifest
//! per committed batch (`commits/<batch>.json`: its objects and the cursor covering them),
//! a pending marker per batch being completed (`pending/<batch>.json`: its objects), and
//! `latest.json`, the last batch committed, so that a start lists only newer manifests.
//! `objects.rs` says why this order of writes loses and repeats nothing.

use std::sync::Arc;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path};
use serde::{Deserialize, Serialize};

use crate::{archive::store::StoreUrl, error::Failure, notice};

/// The manifest of a committed batch.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The batch number.
    pub batch: u64,
    /// The cursor covering every record of this batch and of the batches before.
    pub cursor: String,
    /// The data objects, by key.
    pub objects: Vec<Committed>,
}

/// One object of a manifest.
#[derive(Debug, Serialize, Deserialize)]
pub struct Committed {
    /// Its key in the bucket.
    pub key: String,
    /// Records it holds.
    pub records: u64,
    /// JSON bytes it holds (before compression).
    pub bytes: u64,
}

/// What a pending marker holds: the keys of a batch being completed.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    batch: u64,
    objects: Vec<String>,
}

/// What `_archive/latest.json` holds: the highest committed batch when it was written.
#[derive(Debug, Serialize, Deserialize)]
struct Latest {
    batch: u64,
}

/// The bookkeeping objects of one archive.
pub struct Manifests {
    /// The store.
    store: Arc<dyn ObjectStore>,
    /// The archive's URL: its prefix, and the destination named in messages.
    url: StoreUrl,
}

impl Manifests {
    /// The bookkeeping of the archive at `url`.
    pub fn new(store: Arc<dyn ObjectStore>, url: StoreUrl) -> Self {
        Self { store, url }
    }

    fn meta(&self, dir: &str) -> Path {
        self.url.prefix.clone().join("_archive").join(dir)
    }

    fn numbered(&self, dir: &str, batch: u64) -> Path {
        self.meta(dir).join(format!("{batch:020}.json"))
    }

    /// Numbers of the objects under `_archive/<dir>/`.
    async fn numbers(&self, dir: &str) -> Result<Vec<u64>, Failure> {
        let prefix = self.meta(dir);
        let mut listing = self.store.list(Some(&prefix));
        let mut numbers = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|err| self.url.failure(err))?;
            numbers.extend(number_of(&meta.location));
        }
        Ok(numbers)
    }

    /// The manifest of the highest committed batch.
    pub async fn last_commit(&self) -> Result<Option<Manifest>, Failure> {
        // `_archive/latest.json`, written after each manifest, is never ahead of them: list
        // only the manifests after it, so a start does not list an archive's whole history.
        // Only the highest number is kept while listing: memory stays flat either way.
        let prefix = self.meta("commits");
        let hint = self.latest_hint().await;
        let mut listing = match hint {
            Some(number) => self
                .store
                .list_with_offset(Some(&prefix), &self.numbered("commits", number)),
            None => self.store.list(Some(&prefix)),
        };
        let mut highest = hint;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|err| self.url.failure(err))?;
            highest = highest.max(number_of(&meta.location));
        }
        let Some(number) = highest else {
            return Ok(None);
        };
        let key = self.numbered("commits", number);
        let bytes = match self.store.get(&key).await {
            Ok(result) => result.bytes().await.map_err(|err| self.url.failure(err))?,
            Err(object_store::Error::NotFound { .. }) if hint == Some(number) => {
                // A hint without its manifest: someone removed manifests; trust the listing.
                self.store
                    .delete(&self.meta("latest.json"))
                    .await
                    .map_err(|err| self.url.failure(err))?;
                return Box::pin(self.last_commit()).await;
            }
            Err(err) => return Err(self.url.failure(err)),
        };
        let manifest = serde_json::from_slice(&bytes).map_err(|err| Failure::Destination {
            destination: self.url.text.clone(),
            cause: format!("the manifest {key} is not valid ({err})"),
        })?;
        Ok(Some(manifest))
    }

    /// The batch number in `_archive/latest.json`, if it holds one.
    async fn latest_hint(&self) -> Option<u64> {
        let bytes = self
            .store
            .get(&self.meta("latest.json"))
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let latest: Latest = serde_json::from_slice(&bytes).ok()?;
        Some(latest.batch)
    }

    async fn read(&self, key: &Path) -> Result<bytes::Bytes, Failure> {
        let result = self
            .store
            .get(key)
            .await
            .map_err(|err| self.url.failure(err))?;
        result.bytes().await.map_err(|err| self.url.failure(err))
    }

    /// Deletes the objects of batches completed but never committed, and stale markers.
    pub async fn undo_pending(&self, committed: u64) -> Result<(), Failure> {
        for number in self.numbers("pending").await? {
            let marker = self.numbered("pending", number);
            if number > committed {
                let bytes = self.read(&marker).await?;
                let pending: Pending =
                    serde_json::from_slice(&bytes).map_err(|err| Failure::Destination {
                        destination: self.url.text.clone(),
                        cause: format!("the pending marker {marker} is not valid ({err})"),
                    })?;
                notice!(
                    "archive: removing the {} objects of batch {number}, completed but never \
                     committed by an earlier run; their records are archived again",
                    pending.objects.len()
                );
                for key in pending.objects {
                    self.delete(&Path::from(key)).await?;
                }
            }
            self.delete(&marker).await?;
        }
        Ok(())
    }

    async fn delete(&self, key: &Path) -> Result<(), Failure> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.url.failure(err)),
        }
    }

    /// Names the objects of batch `number` before any of them is completed.
    pub async fn mark_pending(&self, number: u64, objects: Vec<String>) -> anyhow::Result<()> {
        let pending = Pending {
            batch: number,
            objects,
        };
        self.store
            .put(
                &self.numbered("pending", number),
                PutPayload::from(serde_json::to_vec(&pending)?),
            )
            .await
            .map_err(|err| self.url.failure(err))?;
        Ok(())
    }

    /// Creates the manifest of a batch whose objects are complete; never over another.
    pub async fn commit(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let key = self.numbered("commits", manifest.batch);
        let created = self
            .store
            .put_opts(
                &key,
                PutPayload::from(serde_json::to_vec_pretty(manifest)?),
                PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                },
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Failure::Destination {
                destination: self.url.text.clone(),
                cause: format!(
                    "the manifest {key} exists already: another archiver writes to this \
                     destination"
                ),
            }
            .into()),
            Err(err) => Err(self.url.failure(err).into()),
        }
    }

    /// After a commit: the pending marker deleted and the hint moved on (best effort: the
    /// next start deletes markers of committed batches and lists after an older hint).
    pub async fn committed(&self, number: u64) {
        if let Err(err) = self.store.delete(&self.numbered("pending", number)).await {
            tracing::warn!(cause = %err, "deleting a pending marker failed");
        }
        let latest = serde_json::to_vec(&Latest { batch: number }).unwrap_or_default();
        if let Err(err) = self
            .store
            .put(&self.meta("latest.json"), PutPayload::from(latest))
            .await
        {
            tracing::warn!(cause = %err, "writing the latest batch hint failed");
        }
    }
}

/// The batch number of `_archive/<dir>/<number>.json`.
fn number_of(key: &Path) -> Option<u64> {
    key.filename()?.strip_suffix(".json")?.parse().ok()
}
