//! Checkpoints: per shard, where a restarted relay resumes.
//!
//! One JSON file per stream under `--state-dir`, replaced atomically (written to a temporary
//! file, synced, renamed), at a bounded interval and on shutdown. A restart resumes after
//! the continuation number, so records are repeated only within the last interval.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context;
use kinesis_relay_api::atomic_file::write_atomically;
use serde::{Deserialize, Serialize};

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
    pub fn load(state_dir: Option<&Path>, stream: &str) -> anyhow::Result<Self> {
        let path = state_dir.map(|dir| dir.join(format!("{stream}.checkpoints.json")));
        let shards = match &path {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading checkpoints {}", path.display()))?;
                let file: CheckpointFile = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "checkpoint file {} is corrupt; move it away to start from --starting-position",
                        path.display()
                    )
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

    /// Writes the file if anything changed.
    pub fn flush(&self) -> anyhow::Result<()> {
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
        write_atomically(path, serde_json::to_string_pretty(&file)?.as_bytes())
            .with_context(|| format!("writing the checkpoint {}", path.display()))?;
        Ok(())
    }
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
}
