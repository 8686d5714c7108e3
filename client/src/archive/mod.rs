//! `archive`: records to rotated newline-delimited JSON files, exactly once, in a local
//! directory or an object store: Kinesis Data Firehose's delivery without its duplicates.
//!
//! # Layout
//! - [`store`]: `--to` parsed; the object store built, its credentials and bucket checked.
//! - [`template`]: `--prefix-template`: keys from time, stream and partition values.
//! - [`compression`]: `--compression` (none, gzip, zstd) for both kinds of destination.
//! - [`parquet`]: `--format parquet`: the in-memory writer of Parquet files.
//! - [`columns`]: their columns (`--parquet-data`, `--parquet-schema`).
//! - [`local`]: the archive in a directory (files, `.cursor` files, renames).
//! - [`objects`]: the archive in an object store (batches of objects, committed together).
//! - `upload`: one of its data objects while written (encoder, multipart upload).
//! - [`manifest`]: its manifests, pending markers and latest-batch hint.
//! - [`lock`]: the object store archive's lock with a lease.
//!
//! This file holds the loop both kinds share: read, append, rotate by size and interval,
//! complete on exit.

pub mod columns;
pub mod compression;
pub mod local;
pub mod lock;
pub mod manifest;
pub mod objects;
pub mod parquet;
pub mod store;
pub mod template;
mod upload;

use std::time::Duration;

use kinesis_relay_api::v1;
use tokio::time::{Instant, sleep_until};

use crate::{
    archive::{
        columns::DataColumns,
        local::LocalArchive,
        lock::Lock,
        objects::{Layout, ObjectArchive},
        store::Destination,
        template::Template,
    },
    cli::{ArchiveArgs, ArchiveFormat, Compression, StartFrom},
    connect::Connector,
    error::Failure,
    exit_code::ExitCode,
    notice,
    resume::{Delivery, Resuming},
    shutdown::Signals,
};

/// One delivery's records, as a target appends them.
pub struct Arrival<'a> {
    /// The stream they were read from.
    pub stream: &'a str,
    /// The shard they were read from.
    pub shard_id: &'a str,
    /// The records, in shard order.
    pub records: &'a [v1::Record],
    /// The cursor covering these records and every record delivered before them.
    pub cursor: String,
}

/// How far a target has come: where it resumed and what its appended records cover.
#[derive(Debug, Default)]
pub struct Cursors {
    /// The cursor stored with the last complete file (or batch) found on start.
    pub resumed: Option<String>,
    /// The cursor covering every record appended so far: stored when the open file or
    /// batch completes.
    pub covered: Option<String>,
}

impl Cursors {
    /// Cursors of a target that found `stored` on start (empty counts as none).
    pub fn resumed_at(stored: Option<String>) -> Self {
        let resumed = stored.filter(|cursor| !cursor.is_empty());
        Self {
            covered: resumed.clone(),
            resumed,
        }
    }
}

/// Shortest `--lock-lease` accepted: the lease is renewed every third of it.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// Runs `archive`.
pub async fn run(
    connector: Connector,
    args: ArchiveArgs,
    mut signals: Signals,
) -> anyhow::Result<ExitCode> {
    let mut target = Target::open(&connector, &args).await?;
    let (start, origin) = match target.cursors().resumed.clone() {
        Some(cursor) => (
            StartFrom::Cursor(cursor),
            Some(format!("archive {}", args.to)),
        ),
        None => (args.from.clone(), None),
    };
    let mut subscription = Resuming::new(connector, &args.selection, start, origin);
    let outcome: anyhow::Result<ExitCode> = loop {
        let rotate_at = target.opened().map(|opened| opened + args.rotate_interval);
        let step = tokio::select! {
            delivery = subscription.next() => Step::Delivery(delivery),
            _ = sleep_until(rotate_at.unwrap_or_else(Instant::now)), if rotate_at.is_some() => {
                Step::Rotate
            }
            _ = signals.recv() => Step::Stop,
            why = target.lost() => Step::Lost(why),
        };
        let result = match step {
            Step::Rotate => target.complete().await,
            Step::Stop => break Ok(ExitCode::Interrupted),
            Step::Lost(why) => {
                break Err(Failure::Destination {
                    destination: args.to.clone(),
                    cause: why,
                }
                .into());
            }
            Step::Delivery(Err(err)) => break Err(err),
            Step::Delivery(Ok(Delivery::Progress { cursor })) => {
                target.cursors().covered = Some(cursor);
                Ok(())
            }
            Step::Delivery(Ok(Delivery::Records {
                shard_id,
                records,
                cursor,
            })) => {
                let arrival = Arrival {
                    stream: subscription.stream_name(),
                    shard_id: &shard_id,
                    records: &records,
                    cursor,
                };
                let appended = target.append(arrival).await;
                match appended {
                    Ok(()) if target.size() >= args.rotate_size => target.complete().await,
                    other => other,
                }
            }
        };
        if let Err(err) = result {
            break Err(err);
        }
    };
    // The records written so far are good whatever ended the run: complete the file.
    if let Err(err) = target.complete().await {
        match &outcome {
            Ok(_) => return Err(err),
            Err(_) => notice!("{err:#}"),
        }
    }
    target.close().await;
    outcome
}

/// What woke the loop.
enum Step {
    Delivery(anyhow::Result<Delivery>),
    Rotate,
    Stop,
    Lost(String),
}

/// The archive, in a directory or an object store.
enum Target {
    Local(Box<LocalArchive>),
    Objects(Box<ObjectArchive>),
}

impl Target {
    /// Checks every flag and the destination, takes the lock of an object store, cleans up
    /// after a crash: everything that can fail does so before a record is read.
    async fn open(connector: &Connector, args: &ArchiveArgs) -> anyhow::Result<Self> {
        let compression = args.compression();
        match Destination::parse(&args.to)? {
            Destination::Local(dir) => {
                if args.format == ArchiveFormat::Parquet {
                    return Err(Failure::Usage(
                        "--format parquet is written to object stores (s3://, gs://, az://) \
                         only"
                            .into(),
                    )
                    .into());
                }
                if args.prefix_template.is_some() {
                    return Err(Failure::Usage(
                        "--prefix-template applies to object stores (s3://, gs://, az://), \
                         not to a directory"
                            .into(),
                    )
                    .into());
                }
                Ok(Self::Local(Box::new(LocalArchive::open(
                    &dir,
                    compression,
                )?)))
            }
            Destination::Store(url) => {
                let template =
                    Template::parse(args.prefix_template.as_deref().unwrap_or(template::DEFAULT))
                        .map_err(Failure::Usage)?;
                if args.format == ArchiveFormat::Parquet && compression == Compression::Gzip {
                    return Err(Failure::Usage(
                        "--format parquet takes --compression zstd or none".into(),
                    )
                    .into());
                }
                let data_columns = match &args.parquet_schema {
                    None => DataColumns::Data(args.parquet_data),
                    Some(_) if args.format != ArchiveFormat::Parquet => {
                        return Err(Failure::Usage(
                            "--parquet-schema goes with --format parquet".into(),
                        )
                        .into());
                    }
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|err| Failure::local("--parquet-schema file", path, &err))?;
                        DataColumns::parse(&text).map_err(|err| {
                            Failure::Usage(format!("--parquet-schema {}: {err}", path.display()))
                        })?
                    }
                };
                if args.lock_lease < MIN_LEASE {
                    return Err(Failure::Usage(format!(
                        "--lock-lease must be at least {MIN_LEASE:?}"
                    ))
                    .into());
                }
                let store = url.open(connector.timeout()).await?;
                url.probe(&*store, connector.timeout()).await?;
                let lock = Lock::acquire(store.clone(), &url, args.lock_lease).await?;
                let archive = ObjectArchive::open(
                    store,
                    url,
                    lock,
                    template,
                    Layout {
                        format: args.format,
                        compression,
                        row_group_rows: args.row_group_rows as usize,
                        data_columns,
                        max_open: usize::from(args.max_open_files),
                        rotate_size: args.rotate_size,
                    },
                )
                .await?;
                Ok(Self::Objects(Box::new(archive)))
            }
        }
    }

    fn cursors(&mut self) -> &mut Cursors {
        match self {
            Self::Local(archive) => &mut archive.cursors,
            Self::Objects(archive) => &mut archive.cursors,
        }
    }

    /// When the open file (or batch) was started.
    fn opened(&self) -> Option<Instant> {
        match self {
            Self::Local(archive) => archive.opened(),
            Self::Objects(archive) => archive.opened(),
        }
    }

    /// JSON bytes of the largest open file.
    fn size(&self) -> u64 {
        match self {
            Self::Local(archive) => archive.current_size(),
            Self::Objects(archive) => archive.largest(),
        }
    }

    async fn append(&mut self, arrival: Arrival<'_>) -> anyhow::Result<()> {
        match self {
            Self::Local(archive) => Ok(archive.append(arrival)?),
            Self::Objects(archive) => archive.append(arrival).await,
        }
    }

    async fn complete(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Local(archive) => Ok(archive.complete()?),
            Self::Objects(archive) => archive.complete().await,
        }
    }

    /// Resolves when the destination's lock is lost (never for a directory).
    async fn lost(&self) -> String {
        match self {
            Self::Local(_) => std::future::pending().await,
            Self::Objects(archive) => archive.lost().await,
        }
    }

    async fn close(self) {
        if let Self::Objects(archive) = self {
            archive.close().await;
        }
    }
}
