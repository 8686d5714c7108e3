//! `--checkpoint FILE`: the last cursor, stored atomically so a crash leaves either the old
//! or the new cursor, never a torn one.
//!
//! The file holds the cursor text and a newline, nothing else, so that
//! `--from cursor:$(cat FILE)` works too.

use std::{
    fs, io,
    path::PathBuf,
    time::{Duration, Instant},
};

pub use kinesis_relay_api::atomic_file::{sync_dir, write_atomically};

use crate::error::Failure;

/// A checkpoint file and when it was last written.
#[derive(Debug)]
pub struct Checkpoint {
    /// Where the cursor lives.
    path: PathBuf,
    /// Least time between two writes while running (exit always writes).
    interval: Duration,
    /// When the file was last written.
    written_at: Option<Instant>,
    /// The cursor in the file, to skip writes that change nothing.
    stored: Option<String>,
}

impl Checkpoint {
    /// A checkpoint at `path`, written at most every `interval`.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self {
            path,
            interval,
            written_at: None,
            stored: None,
        }
    }

    /// The stored cursor, or `None` when the file does not exist yet.
    pub fn load(&mut self) -> Result<Option<String>, Failure> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                let cursor = text.trim();
                if cursor.is_empty() {
                    return Ok(None);
                }
                self.stored = Some(cursor.to_owned());
                Ok(self.stored.clone())
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Failure::local("checkpoint", &self.path, &err)),
        }
    }

    /// Stores `cursor` if the interval has passed since the last write.
    pub fn maybe_store(&mut self, cursor: &str) -> Result<(), Failure> {
        let due = self
            .written_at
            .is_none_or(|at| at.elapsed() >= self.interval);
        if due {
            self.store(cursor)?;
        }
        Ok(())
    }

    /// Stores `cursor` now (unless it is already what the file holds).
    pub fn store(&mut self, cursor: &str) -> Result<(), Failure> {
        if cursor.is_empty() || self.stored.as_deref() == Some(cursor) {
            return Ok(());
        }
        write_atomically(&self.path, format!("{cursor}\n").as_bytes())
            .map_err(|err| Failure::local("checkpoint", &self.path, &err))?;
        self.stored = Some(cursor.to_owned());
        self.written_at = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let mut checkpoint = Checkpoint::new(path.clone(), Duration::from_secs(3600));
        assert_eq!(checkpoint.load().unwrap(), None);
        checkpoint.maybe_store("abc").unwrap();
        // Within the interval: not written.
        checkpoint.maybe_store("def").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "abc\n");
        checkpoint.store("def").unwrap();
        let mut again = Checkpoint::new(path, Duration::ZERO);
        assert_eq!(again.load().unwrap().as_deref(), Some("def"));
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn unreadable_checkpoint_is_a_local_file_failure() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where a file is expected.
        let mut checkpoint = Checkpoint::new(dir.path().to_owned(), Duration::ZERO);
        let err = checkpoint.load().unwrap_err();
        assert_eq!(
            err.exit_code(),
            crate::exit_code::ExitCode::LocalFile,
            "{err}"
        );
    }
}
