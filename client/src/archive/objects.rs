//! The archive in an object store: data objects laid out by `--prefix-template`, each batch
//! of them committed by one manifest object that holds the cursor covering them.
//!
//! # Layout under the URL's prefix
//! - `<template>/<stream>-<batch>-<n>-<UTC start>.ndjson[.gz|.zst]`: data objects; the
//!   template defaults to `YYYY/MM/DD/HH/` from the arrival time of the object's first record.
//! - `errors/<reason>/YYYY/MM/DD/HH/...`: records that the template could not place.
//! - `_archive/commits/<batch>.json`: a batch's manifest (its objects, their record counts,
//!   the cursor covering them and every batch before).
//! - `_archive/pending/<batch>.json`: the objects of a batch being completed.
//! - `_archive/latest.json`: the last committed batch, a hint so that a start lists only
//!   the manifests after it.
//! - `_archive/lock.json`: the lock (see `lock.rs`).
//!
//! # Why a crash loses and repeats nothing
//! Records stream into multipart uploads, which no reader sees until completed. A batch is
//! completed in three steps: the pending marker names its objects; each upload is completed
//! (atomic: the object appears whole under its final key, or not at all); the manifest is
//! created (conditionally: never over another). On start, the batches of pending markers
//! newer than the last manifest are undone (their objects deleted), and the archive resumes
//! after the last manifest's cursor, so those records are read again and written once more.
//! Uploads a crash left unfinished stay invisible; a bucket lifecycle rule aborting
//! incomplete multipart uploads after a day reclaims their space.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use kinesis_relay_api::v1;
use object_store::{
    ObjectStore,
    path::{Path, PathPart},
};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::{
    archive::{
        Arrival, Cursors,
        columns::DataColumns,
        lock::Lock,
        manifest::{Committed, Manifest, Manifests},
        store::StoreUrl,
        template::{self, Partition, Template},
        upload::OpenObject,
    },
    cli::{ArchiveFormat, Compression},
    error::Failure,
    resume::cursor_after,
};

/// How long aborting the uploads of a batch that failed may take.
const ABORT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Parts of one object in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Which file of a batch a record goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileId {
    /// The file of a partition.
    Data(Partition),
    /// The file of records rejected for a reason.
    Error(&'static str),
}

/// The archive in an object store.
pub struct ObjectArchive {
    /// The store.
    store: Arc<dyn ObjectStore>,
    /// Its URL, for keys and messages.
    url: StoreUrl,
    /// The manifests and pending markers under `_archive/`.
    manifests: Manifests,
    /// The lock, held while running.
    lock: Lock,
    /// Where files go.
    template: Template,
    /// What they are like.
    layout: Layout,
    /// Number of the next batch.
    next_batch: u64,
    /// Where it resumed (the cursor of the last manifest) and what it covers.
    pub cursors: Cursors,
    /// The batch being written.
    batch: Option<Batch>,
}

/// What the files are like and when they are completed.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `--format`.
    pub format: ArchiveFormat,
    /// `--compression`.
    pub compression: Compression,
    /// `--row-group-rows`.
    pub row_group_rows: usize,
    /// `--parquet-data` or `--parquet-schema`.
    pub data_columns: DataColumns,
    /// `--max-open-files`.
    pub max_open: usize,
    /// `--rotate-size`: a file that holds this many bytes completes its batch.
    pub rotate_size: u64,
}

/// The files being written, committed together.
struct Batch {
    /// Its number.
    number: u64,
    /// When its first record arrived here, for `--rotate-interval`.
    opened: Instant,
    /// Its files.
    files: HashMap<FileId, OpenObject>,
}

impl ObjectArchive {
    /// Takes the lock, undoes what a crash left half-done and finds where to resume.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        url: StoreUrl,
        lock: Lock,
        template: Template,
        layout: Layout,
    ) -> Result<Self, Failure> {
        let mut archive = Self {
            manifests: Manifests::new(store.clone(), url.clone()),
            store,
            url,
            lock,
            template,
            layout,
            next_batch: 1,
            cursors: Cursors::default(),
            batch: None,
        };
        let last = archive.manifests.last_commit().await?;
        archive
            .manifests
            .undo_pending(last.as_ref().map_or(0, |m| m.batch))
            .await?;
        if let Some(manifest) = last {
            archive.next_batch = manifest.batch + 1;
            archive.cursors = Cursors::resumed_at(Some(manifest.cursor.clone()));
        }
        Ok(archive)
    }

    /// Size of the largest open file (JSON bytes), for `--rotate-size`.
    pub fn largest(&self) -> u64 {
        self.batch
            .as_ref()
            .and_then(|batch| batch.files.values().map(|file| file.size).max())
            .unwrap_or(0)
    }

    /// When the open batch started.
    pub fn opened(&self) -> Option<Instant> {
        self.batch.as_ref().map(|batch| batch.opened)
    }

    /// Resolves when the lock is lost.
    pub async fn lost(&self) -> String {
        self.lock.lost().await
    }

    /// Appends records, each to the file of its partition.
    pub async fn append(&mut self, arrival: Arrival<'_>) -> anyhow::Result<()> {
        let Arrival {
            stream,
            shard_id,
            records,
            cursor,
        } = arrival;
        let rotate_size = self.layout.rotate_size;
        for (index, record) in records.iter().enumerate() {
            let json = self
                .template
                .needs_json()
                .then(|| template::parse_json(&record.data));
            let (unfit, json_row) = match self.layout.format {
                ArchiveFormat::Parquet => match self.layout.data_columns.accept(record) {
                    Ok(row) => (None, row),
                    Err(unfit) => (Some(unfit), None),
                },
                ArchiveFormat::Ndjson => (None, None),
            };
            let (id, rejected) = match (
                unfit,
                self.template.partition(stream, record, json.as_ref()),
            ) {
                (Some((reason, detail)), _) => (FileId::Error(reason), Some(detail)),
                (None, Ok(partition)) => (FileId::Data(partition), None),
                (None, Err(rejected)) => (FileId::Error(rejected.reason), Some(rejected.detail)),
            };
            let full = self.batch.as_ref().is_some_and(|batch| {
                !batch.files.contains_key(&id) && batch.files.len() >= self.layout.max_open
            });
            if full {
                // Complete what is open first; its cursor covers the records before this
                // one of the batch, not the rest.
                if let Some(before) = index.checked_sub(1).map(|i| &records[i]) {
                    self.cursors.covered = Some(cursor_after(&cursor, shard_id, before)?);
                }
                self.complete().await?;
            }
            let file = self.file(stream, id, record).await?;
            file.size +=
                file.body
                    .append(stream, shard_id, record, rejected.as_deref(), json_row)?;
            file.records += 1;
            let encoded = file.body.take_output();
            file.upload.write(&encoded);
            let full = file.size >= rotate_size;
            file.upload
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|err| self.url.failure(err))?;
            if full {
                // Rotated on the record that filled the file, so files keep to the size
                // even when a batch of the relay holds thousands of records.
                self.cursors.covered = Some(cursor_after(&cursor, shard_id, record)?);
                self.complete().await?;
            }
        }
        self.cursors.covered = Some(cursor);
        Ok(())
    }

    /// The open file of `id`, started with `record` as its first record when none is.
    async fn file(
        &mut self,
        stream: &str,
        id: FileId,
        record: &v1::Record,
    ) -> Result<&mut OpenObject, Failure> {
        let next_batch = self.next_batch;
        let batch = self.batch.get_or_insert_with(|| Batch {
            number: next_batch,
            opened: Instant::now(),
            files: HashMap::new(),
        });
        if !batch.files.contains_key(&id) {
            let arrived = record
                .approximate_arrival_timestamp
                .as_ref()
                .and_then(|at| {
                    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
                    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
                })
                .unwrap_or_else(|| OffsetDateTime::from(SystemTime::now()));
            let dir = match &id {
                FileId::Data(partition) => self.template.render(partition, arrived),
                FileId::Error(reason) => template::error_prefix(reason, arrived),
            };
            let stream = if stream.is_empty() { "stream" } else { stream };
            // Rejected records stay JSON lines whatever the format, as with Firehose.
            let parquet =
                matches!(id, FileId::Data(_)) && self.layout.format == ArchiveFormat::Parquet;
            let extension = if parquet {
                "parquet"
            } else {
                self.layout.compression.extension()
            };
            let name = format!(
                "{stream}-{:010}-{:04}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.{}",
                batch.number,
                batch.files.len() + 1,
                arrived.year(),
                u8::from(arrived.month()),
                arrived.day(),
                arrived.hour(),
                arrived.minute(),
                arrived.second(),
                extension
            );
            let key: Path = self
                .url
                .prefix
                .parts()
                .chain(dir.parts())
                .chain(std::iter::once(PathPart::from(name)))
                .collect();
            let file =
                OpenObject::start(&*self.store, &self.url, key, parquet, &self.layout).await?;
            batch.files.insert(id.clone(), file);
        }
        batch
            .files
            .get_mut(&id)
            .ok_or_else(|| Failure::Destination {
                destination: self.url.text.clone(),
                cause: "an open file vanished".into(),
            })
    }

    /// Completes the open batch, if any: pending marker, uploads completed, manifest.
    pub async fn complete(&mut self) -> anyhow::Result<()> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let mut files: Vec<OpenObject> = batch.files.into_values().collect();
        // Taken from the end, so completed in key order.
        files.sort_by(|a, b| b.key.cmp(&a.key));
        let committed = self.commit(batch.number, &mut files).await;
        if committed.is_err() && !files.is_empty() {
            // Uploads never completed hold their parts until aborted: abort what is left
            // (best effort, within a deadline; a lifecycle rule catches the rest).
            let aborts = futures::future::join_all(files.into_iter().map(|f| f.upload.abort()));
            let _ = tokio::time::timeout(ABORT_DEADLINE, aborts).await;
        }
        committed
    }

    /// Completes the uploads of batch `number` (taking them out of `files`) and writes its
    /// manifest.
    async fn commit(&mut self, number: u64, files: &mut Vec<OpenObject>) -> anyhow::Result<()> {
        let lost = |why: String| Failure::Destination {
            destination: self.url.text.clone(),
            cause: format!("{why}; batch {number} was not committed"),
        };
        self.lock.check().map_err(lost)?;
        let keys = files
            .iter()
            .rev()
            .map(|file| file.key.to_string())
            .collect();
        self.manifests.mark_pending(number, keys).await?;
        let mut objects = Vec::with_capacity(files.len());
        while let Some(file) = files.pop() {
            let rest = file.body.finish()?;
            let mut upload = file.upload;
            upload.write(&rest);
            upload.finish().await.map_err(|err| self.url.failure(err))?;
            objects.push(Committed {
                key: file.key.to_string(),
                records: file.records,
                bytes: file.size,
            });
        }
        self.lock.check().map_err(lost)?;
        let manifest = Manifest {
            batch: number,
            cursor: self.cursors.covered.clone().unwrap_or_default(),
            objects,
        };
        self.manifests.commit(&manifest).await?;
        self.next_batch = number + 1;
        self.manifests.committed(number).await;
        tracing::info!(
            batch = number,
            objects = manifest.objects.len(),
            "archive batch committed"
        );
        Ok(())
    }

    /// Releases the lock.
    pub async fn close(self) {
        self.lock.release().await;
    }
}
