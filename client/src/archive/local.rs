//! The archive in a local directory: rotated newline-delimited JSON files.
//!
//! # Layout of the directory
//! - `NNNNNNNNNN-<stream>-<UTC start>.ndjson[.gz|.zst]`: complete files, numbered in order.
//! - `NNNNNNNNNN-<stream>-<UTC start>.cursor`: beside each, the cursor that covers every
//!   record of that file and of the files before it.
//! - `.NNNNNNNNNN-….partial`: the file being written (at most one).
//!
//! # Why a crash loses and repeats nothing
//! A file is completed in three steps, each atomic: the data is synced; the `.cursor` is
//! written (temporary file, sync, rename); the `.partial` is renamed to its final name. On
//! start, `.partial` files and `.cursor` files without their data file (a crash between the
//! last two steps) are deleted, and the archive resumes after the cursor of the highest
//! complete file: the records of the deleted partial file are fetched again, those of
//! complete files are not.

use std::{
    fs::{self, File},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use tokio::time::Instant;

use crate::{
    archive::{Arrival, Cursors, compression::Encoder},
    checkpoint::{sync_dir, write_atomically},
    cli::Compression,
    error::Failure,
    notice,
    output::JsonRecord,
};

/// The archive directory and the file being written.
pub struct LocalArchive {
    /// The directory.
    dir: PathBuf,
    /// How files are compressed.
    compression: Compression,
    /// Number of the next file.
    next_number: u64,
    /// Where it resumed (the cursor of the last complete file) and what it covers.
    pub cursors: Cursors,
    /// The file being written, if any record arrived since the last one was completed.
    current: Option<OpenFile>,
}

/// A file being written.
struct OpenFile {
    /// Final name without extension (`NNNNNNNNNN-stream-time`).
    stem: String,
    /// Where it is written until complete.
    partial: PathBuf,
    /// The writer.
    sink: Encoder<BufWriter<File>>,
    /// JSON bytes written (before compression).
    size: u64,
    /// When it was opened, for `--rotate-interval`.
    opened: Instant,
}

/// Ends the stream (compression trailer) and syncs the file to disk.
fn finish(sink: Encoder<BufWriter<File>>) -> io::Result<()> {
    let buffered = sink.finish()?;
    let file = buffered.into_inner().map_err(|err| err.into_error())?;
    file.sync_all()
}

impl LocalArchive {
    /// Opens (or creates) `dir`, removes what a crash left half-done, and finds where to
    /// resume.
    pub fn open(dir: &Path, compression: Compression) -> Result<Self, Failure> {
        let local = |err: &io::Error| Failure::local("archive directory", dir, err);
        fs::create_dir_all(dir).map_err(|err| local(&err))?;
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|err| local(&err))? {
            let entry = entry.map_err(|err| local(&err))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        let mut max_number = 0;
        let mut last_complete: Option<(u64, String)> = None;
        for name in &names {
            if name.starts_with('.') && (name.ends_with(".partial") || name.contains(".tmp-")) {
                notice!("archive: removing {name}, left unfinished by an earlier run");
                fs::remove_file(dir.join(name)).map_err(|err| local(&err))?;
                continue;
            }
            let Some(number) = leading_number(name) else {
                continue;
            };
            if let Some(stem) = name.strip_suffix(".cursor") {
                let complete = [Compression::None, Compression::Gzip, Compression::Zstd]
                    .iter()
                    .any(|c| names.contains(&format!("{stem}.{}", c.extension())));
                if !complete {
                    notice!("archive: removing {name}, its data file was never completed");
                    fs::remove_file(dir.join(name)).map_err(|err| local(&err))?;
                    continue;
                }
                if last_complete.as_ref().is_none_or(|(n, _)| number > *n) {
                    last_complete = Some((number, stem.to_owned()));
                }
            }
            max_number = max_number.max(number);
        }
        let stored = match &last_complete {
            Some((_, stem)) => {
                let path = dir.join(format!("{stem}.cursor"));
                let text = fs::read_to_string(&path)
                    .map_err(|err| Failure::local("archive cursor", &path, &err))?;
                Some(text.trim().to_owned())
            }
            None => None,
        };
        sync_dir(dir).map_err(|err| local(&err))?;
        Ok(Self {
            dir: dir.to_owned(),
            compression,
            next_number: max_number + 1,
            cursors: Cursors::resumed_at(stored),
            current: None,
        })
    }

    /// When the open file was opened.
    pub fn opened(&self) -> Option<Instant> {
        self.current.as_ref().map(|file| file.opened)
    }

    /// JSON bytes in the open file.
    pub fn current_size(&self) -> u64 {
        self.current.as_ref().map_or(0, |file| file.size)
    }

    /// Appends records as JSON lines, opening a file if none is open.
    pub fn append(&mut self, arrival: Arrival<'_>) -> Result<(), Failure> {
        let (stream, shard_id) = (arrival.stream, arrival.shard_id);
        if !arrival.records.is_empty() {
            let file = match self.current.take() {
                Some(file) => file,
                None => self.create(stream)?,
            };
            let file = self.current.insert(file);
            let mut buffer = Vec::new();
            for record in arrival.records {
                serde_json::to_writer(&mut buffer, &JsonRecord::new(stream, shard_id, record))
                    .map_err(|err| Failure::LocalFile {
                        what: "archive file",
                        path: file.partial.display().to_string(),
                        cause: err.to_string(),
                    })?;
                buffer.push(b'\n');
            }
            file.sink
                .write_all(&buffer)
                .and_then(|()| file.sink.flush())
                .map_err(|err| Failure::local("archive file", &file.partial, &err))?;
            file.size += buffer.len() as u64;
        }
        self.cursors.covered = Some(arrival.cursor);
        Ok(())
    }

    /// Starts the next file.
    fn create(&mut self, stream: &str) -> Result<OpenFile, Failure> {
        let started = time::OffsetDateTime::from(SystemTime::now());
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            started.year(),
            u8::from(started.month()),
            started.day(),
            started.hour(),
            started.minute(),
            started.second()
        );
        let stream = if stream.is_empty() { "stream" } else { stream };
        let stem = format!("{:010}-{stream}-{stamp}", self.next_number);
        self.next_number += 1;
        let partial = self.dir.join(format!(".{stem}.partial"));
        let file =
            File::create(&partial).map_err(|err| Failure::local("archive file", &partial, &err))?;
        let buffered = BufWriter::with_capacity(256 * 1024, file);
        let sink = Encoder::new(self.compression, buffered)
            .map_err(|err| Failure::local("archive file", &partial, &err))?;
        Ok(OpenFile {
            stem,
            partial,
            sink,
            size: 0,
            opened: Instant::now(),
        })
    }

    /// Completes the open file, if any: data synced, cursor stored, then renamed.
    pub fn complete(&mut self) -> Result<(), Failure> {
        let Some(file) = self.current.take() else {
            return Ok(());
        };
        finish(file.sink).map_err(|err| Failure::local("archive file", &file.partial, &err))?;
        let cursor = self.cursors.covered.clone().unwrap_or_default();
        let cursor_path = self.dir.join(format!("{}.cursor", file.stem));
        write_atomically(&cursor_path, format!("{cursor}\n").as_bytes())
            .map_err(|err| Failure::local("archive cursor", &cursor_path, &err))?;
        let final_path = self
            .dir
            .join(format!("{}.{}", file.stem, self.compression.extension()));
        fs::rename(&file.partial, &final_path)
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|err| Failure::local("archive file", &final_path, &err))?;
        tracing::info!(file = %final_path.display(), bytes = file.size, "archive file complete");
        Ok(())
    }
}

/// The number a file name starts with (`0000000012-…`).
fn leading_number(name: &str) -> Option<u64> {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() != 10 {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> kinesis_relay_api::v1::Record {
        kinesis_relay_api::v1::Record {
            sequence_number: n.to_string(),
            data: format!("r{n}").into_bytes().into(),
            ..Default::default()
        }
    }

    /// Records of stream `s`, shard `a`, with `cursor` after them.
    fn arrival(records: &[kinesis_relay_api::v1::Record], cursor: String) -> Arrival<'_> {
        Arrival {
            stream: "s",
            shard_id: "a",
            records,
            cursor,
        }
    }

    #[test]
    fn a_crash_leaves_complete_files_and_the_cursor_of_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = LocalArchive::open(dir.path(), Compression::None).unwrap();
        assert_eq!(archive.cursors.resumed, None);
        archive.append(arrival(&[record(1)], "c1".into())).unwrap();
        archive.complete().unwrap();
        archive.append(arrival(&[record(2)], "c2".into())).unwrap();
        // Crash: the second file stays partial; a cursor from an unfinished completion too.
        fs::write(dir.path().join("0000000099-s-x.cursor"), "c99\n").unwrap();
        drop(archive);
        let reopened = LocalArchive::open(dir.path(), Compression::None).unwrap();
        assert_eq!(reopened.cursors.resumed.as_deref(), Some("c1"));
        assert_eq!(reopened.next_number, 2);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with(".cursor") && names[1].ends_with(".ndjson"));
        let data = fs::read_to_string(dir.path().join(&names[1])).unwrap();
        assert_eq!(data.lines().count(), 1);
        assert!(data.contains("\"data\":\"r1\""));
    }

    #[test]
    fn gzip_files_are_complete_streams() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let mut archive = LocalArchive::open(dir.path(), Compression::Gzip).unwrap();
        archive
            .append(arrival(&[record(1), record(2)], "c".into()))
            .unwrap();
        archive.complete().unwrap();
        let gz = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
            .unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(gz).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn zstd_files_are_complete_streams_found_on_restart() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let mut archive = LocalArchive::open(dir.path(), Compression::Zstd).unwrap();
        archive
            .append(arrival(&[record(1), record(2)], "c2".into()))
            .unwrap();
        archive.complete().unwrap();
        let zst = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".ndjson.zst"))
            .unwrap();
        let mut text = String::new();
        zstd::Decoder::new(File::open(zst).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.lines().count(), 2);
        let reopened = LocalArchive::open(dir.path(), Compression::Zstd).unwrap();
        assert_eq!(reopened.cursors.resumed.as_deref(), Some("c2"));
    }
}
