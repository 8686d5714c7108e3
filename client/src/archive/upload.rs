//! A data object of the object store archive while it is written: its records encoded
//! (JSON lines, compressed, or Parquet) into a multipart upload that no reader sees until
//! its batch completes it.

use std::io::Write;

use kinesis_relay_api::v1;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart, path::Path};
use serde::Serialize;

use crate::{
    archive::{compression::Encoder, objects::Layout, parquet::ParquetFile, store::StoreUrl},
    error::Failure,
    output::JsonRecord,
};

/// Size of each uploaded part (S3's smallest but the last is 5 MiB).
const PART_SIZE: usize = 5 * 1024 * 1024;

/// A data object being uploaded.
pub(super) struct OpenObject {
    /// Its final key.
    pub(super) key: Path,
    /// Encodes into a buffer that is handed to the upload after each append.
    pub(super) body: Body,
    /// The multipart upload.
    pub(super) upload: WriteMultipart,
    /// Records written.
    pub(super) records: u64,
    /// JSON bytes written (before compression).
    pub(super) size: u64,
}

/// How a file's records are encoded.
pub(super) enum Body {
    /// JSON lines, compressed.
    Ndjson(Encoder<Vec<u8>>),
    /// Parquet.
    Parquet(Box<ParquetFile>),
}

impl Body {
    /// Encodes a record; returns the bytes it counts for `--rotate-size`.
    pub(super) fn append(
        &mut self,
        stream: &str,
        shard_id: &str,
        record: &v1::Record,
        rejected: Option<&str>,
        json_row: Option<arrow_array::RecordBatch>,
    ) -> anyhow::Result<u64> {
        match self {
            Self::Ndjson(encoder) => {
                let mut line = Vec::new();
                let json_record = JsonRecord::new(stream, shard_id, record);
                match rejected {
                    None => serde_json::to_writer(&mut line, &json_record),
                    Some(error) => serde_json::to_writer(
                        &mut line,
                        &ErrorLine {
                            record: json_record,
                            error,
                        },
                    ),
                }?;
                line.push(b'\n');
                encoder.write_all(&line)?;
                Ok(line.len() as u64)
            }
            Self::Parquet(file) => Ok(file.append(stream, shard_id, record, json_row)?),
        }
    }

    /// The bytes encoded so far and not yet taken.
    pub(super) fn take_output(&mut self) -> Vec<u8> {
        match self {
            Self::Ndjson(encoder) => std::mem::take(encoder.get_mut()),
            Self::Parquet(file) => file.take_output(),
        }
    }

    /// Ends the file; returns its last bytes.
    pub(super) fn finish(self) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Self::Ndjson(encoder) => encoder.finish()?,
            Self::Parquet(file) => file.finish()?,
        })
    }
}

/// A rejected record's line: the record and why it is there.
#[derive(Serialize)]
struct ErrorLine<'a> {
    #[serde(flatten)]
    record: JsonRecord<'a>,
    /// Why the record is not under its partition.
    error: &'a str,
}

impl OpenObject {
    /// Starts the multipart upload of `key` and its encoder: Parquet when `parquet`,
    /// otherwise JSON lines compressed as `layout` says.
    pub(super) async fn start(
        store: &dyn ObjectStore,
        url: &StoreUrl,
        key: Path,
        parquet: bool,
        layout: &Layout,
    ) -> Result<Self, Failure> {
        let upload = store
            .put_multipart(&key)
            .await
            .map_err(|err| url.failure(err))?;
        let starting = |err: String| Failure::Destination {
            destination: url.text.clone(),
            cause: format!("starting a file: {err}"),
        };
        let body = if parquet {
            let file = ParquetFile::new(
                layout.compression,
                layout.data_columns.clone(),
                layout.row_group_rows,
            )
            .map_err(|err| starting(err.to_string()))?;
            Body::Parquet(Box::new(file))
        } else {
            let encoder = Encoder::new(layout.compression, Vec::new())
                .map_err(|err| starting(err.to_string()))?;
            Body::Ndjson(encoder)
        };
        Ok(Self {
            key,
            body,
            upload: WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
            records: 0,
            size: 0,
        })
    }
}
