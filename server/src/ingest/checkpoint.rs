//! Checkpoints: per shard, where a restarted relay resumes, whatever its source.
//!
//! One JSON file per stream under `--state-dir` (`STREAM.checkpoints.json`), replaced
//! atomically (written to a temporary file, synced, renamed), at a bounded interval and on
//! shutdown. Both sources keep their positions in it: a Kinesis reader resumes after the
//! continuation number, a relay reading another relay after the cursor the per-shard last
//! records make ([`Checkpoints::cursor`]). Records are repeated only within the last
//! interval (and dropped by the hub as duplicates).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use kinesis_relay_api::{
    atomic_file::write_atomically,
    cursor::{Cursor, Position},
};
use serde::{Deserialize, Serialize};

/// Why the checkpoint file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// It exists but cannot be read.
    #[error("reading checkpoints {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It is not a checkpoint file.
    #[error(
        "checkpoint file {} is corrupt; move it away to start from --starting-position: {source}",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// It cannot be written.
    #[error("writing the checkpoint {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What is stored of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// Continuation sequence number to resume after (AFTER_SEQUENCE_NUMBER).
    pub continuation: Option<String>,
    /// Sequence number of the last record handed to the hub (the hub's floor on restart).
    pub last_sequence: Option<String>,
    /// Sub-sequence number of the last user record handed to the hub.
    pub last_sub_sequence: Option<u64>,
    /// The shard was read to its end.
    pub finished: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointFile {
    stream: String,
    shards: BTreeMap<String, ShardCheckpoint>,
}

/// The checkpoints of one stream, shared by its readers.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    /// File path; `None` when no state dir is configured (nothing is persisted).
    path: Option<PathBuf>,
    /// Stream name, written into the file.
    stream: String,
    /// Current values and whether they changed since the last write.
    inner: Arc<Mutex<(BTreeMap<String, ShardCheckpoint>, bool)>>,
}

impl Checkpoints {
    /// Loads the checkpoints of `stream` from `state_dir` (an absent file is empty).
    pub fn load(state_dir: Option<&Path>, stream: &str) -> Result<Self, CheckpointError> {
        let path = state_dir.map(|dir| dir.join(format!("{stream}.checkpoints.json")));
        let shards = match &path {
            Some(path) if path.exists() => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| CheckpointError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let file: CheckpointFile =
                    serde_json::from_str(&text).map_err(|source| CheckpointError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                file.shards
            }
            _ => BTreeMap::new(),
        };
        Ok(Self {
            path,
            stream: stream.to_owned(),
            inner: Arc::new(Mutex::new((shards, false))),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<String, ShardCheckpoint>, bool)> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The checkpoint of a shard.
    pub fn get(&self, shard_id: &str) -> Option<ShardCheckpoint> {
        self.lock().0.get(shard_id).cloned()
    }

    /// Updates a shard.
    pub fn update(&self, shard_id: &str, update: impl FnOnce(&mut ShardCheckpoint)) {
        let mut guard = self.lock();
        update(guard.0.entry(shard_id.to_owned()).or_default());
        guard.1 = true;
    }

    /// The positions as a cursor of the stream, for a source that resumes from one (a relay
    /// reading another relay): every shard after its last record handed to the hub, or
    /// from its start. `None` when no shard has a checkpoint.
    pub fn cursor(&self) -> Option<Cursor> {
        let guard = self.lock();
        if guard.0.is_empty() {
            return None;
        }
        let mut cursor = Cursor::new(self.stream.clone());
        for (shard_id, checkpoint) in &guard.0 {
            let last = position(
                checkpoint.last_sequence.as_deref(),
                checkpoint.last_sub_sequence,
            );
            cursor
                .shards
                .insert(shard_id.clone(), last.unwrap_or(Position::Start));
        }
        Some(cursor)
    }

    /// Records the positions of `cursor` as the last records handed to the hub, the inverse
    /// of [`Self::cursor`].
    pub fn record_cursor(&self, cursor: &Cursor) {
        let mut guard = self.lock();
        for (shard_id, at) in &cursor.shards {
            let checkpoint = guard.0.entry(shard_id.clone()).or_default();
            (checkpoint.last_sequence, checkpoint.last_sub_sequence) = match at {
                Position::Start => (None, None),
                Position::After {
                    sequence,
                    sub_sequence,
                } => (Some(sequence.to_string()), *sub_sequence),
            };
        }
        guard.1 = true;
    }

    /// Writes the file if anything changed.
    pub fn flush(&self) -> Result<(), CheckpointError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let snapshot = {
            let mut guard = self.lock();
            if !guard.1 {
                return Ok(());
            }
            guard.1 = false;
            guard.0.clone()
        };
        let file = CheckpointFile {
            stream: self.stream.clone(),
            shards: snapshot,
        };
        // Plain strings and numbers: serialising cannot fail.
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        write_atomically(path, text.as_bytes()).map_err(|source| CheckpointError::Write {
            path: path.clone(),
            source,
        })
    }
}

/// The position after a record a checkpoint names (its sequence number, and sub-sequence
/// number for a user record of an aggregate); `None` when it names none.
pub fn position(sequence: Option<&str>, sub_sequence: Option<u64>) -> Option<Position> {
    let sequence = sequence?.parse().ok()?;
    Some(Position::After {
        sequence,
        sub_sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload() {
        let dir =
            std::env::temp_dir().join(format!("relay-checkpoint-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let checkpoints = Checkpoints::load(Some(&dir), "s").unwrap();
        checkpoints.update("shard-1", |c| {
            c.continuation = Some("42".into());
            c.last_sequence = Some("41".into());
        });
        checkpoints.flush().unwrap();
        let reloaded = Checkpoints::load(Some(&dir), "s").unwrap();
        assert_eq!(
            reloaded.get("shard-1").unwrap().continuation.as_deref(),
            Some("42")
        );
        std::fs::write(dir.join("s.checkpoints.json"), "{not json").unwrap();
        let err = Checkpoints::load(Some(&dir), "s").unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cursor_is_kept_per_shard_and_comes_back_whole() {
        let checkpoints = Checkpoints::load(None, "s").unwrap();
        assert_eq!(checkpoints.cursor(), None);
        let mut cursor = Cursor::new("s");
        cursor.shards.insert("a".into(), Position::Start);
        cursor.shards.insert(
            "b".into(),
            Position::After {
                sequence: "495903382714902566085596925383615710".parse().unwrap(),
                sub_sequence: Some(2),
            },
        );
        checkpoints.record_cursor(&cursor);
        assert_eq!(checkpoints.cursor(), Some(cursor));
        let b = checkpoints.get("b").unwrap();
        assert_eq!(
            b.last_sequence.as_deref(),
            Some("495903382714902566085596925383615710")
        );
        assert_eq!(b.last_sub_sequence, Some(2));
    }
}
