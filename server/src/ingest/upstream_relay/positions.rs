//! Where a relay reading another relay resumes: the upstream cursor, kept per shard in the
//! stream's checkpoint file like a Kinesis reader's positions.

use std::{path::Path, time::Duration};

use kinesis_relay_api::cursor::Cursor;
use tokio::time::Instant;
use tracing::warn;

use crate::ingest::{IngestError, IngestSettings, checkpoint::Checkpoints};

/// The upstream cursor, kept in the stream's checkpoint file: at most once per checkpoint
/// interval while reading, and at shutdown.
pub(super) struct Positions {
    /// The stream's checkpoints.
    checkpoints: Checkpoints,
    /// The cursor last written (or loaded), to skip writing the same again.
    pub(super) saved: Option<String>,
    /// When it was written.
    last_save: Instant,
    /// `--checkpoint-interval`.
    interval: Duration,
}

impl Positions {
    /// The positions saved by an earlier run: the checkpoint file, else the cursor file of
    /// relays from before positions were kept there (read once, so that an upgraded relay
    /// resumes where it stopped; the next save writes the checkpoint file).
    pub(super) fn load(settings: &IngestSettings, stream: &str) -> Result<Self, IngestError> {
        let dir = settings.state_dir.as_deref();
        let checkpoints = Checkpoints::load(dir, stream)?;
        let saved = match checkpoints.cursor() {
            Some(cursor) => Some(cursor.encode()),
            None => dir.and_then(|dir| legacy_cursor(dir, stream)),
        };
        Ok(Self {
            checkpoints,
            saved,
            last_save: Instant::now(),
            interval: settings.checkpoint_interval,
        })
    }

    /// Saves `cursor` when the interval has passed since the last save.
    pub(super) fn save_now_and_then(&mut self, cursor: Option<&str>) {
        if self.last_save.elapsed() >= self.interval {
            self.save(cursor);
        }
    }

    /// Saves `cursor` unless it is the one saved last.
    pub(super) fn save(&mut self, cursor: Option<&str>) {
        let Some(cursor) = cursor.filter(|cursor| self.saved.as_deref() != Some(*cursor)) else {
            return;
        };
        match Cursor::decode(cursor) {
            Ok(decoded) => {
                self.checkpoints.record_cursor(&decoded);
                if let Err(err) = self.checkpoints.flush() {
                    warn!(stream = decoded.stream, cause = %err, "writing the upstream position failed");
                }
            }
            // Only a relay of another version sends one; resuming then starts over.
            Err(err) => {
                warn!(cause = %err, "the upstream relay's cursor does not decode; its position is not saved")
            }
        }
        self.saved = Some(cursor.to_owned());
        self.last_save = Instant::now();
    }
}

/// `STREAM.upstream-cursor`, where relays kept the upstream cursor before it went into the
/// checkpoint file.
fn legacy_cursor(dir: &Path, stream: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{stream}.upstream-cursor")))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use kinesis_relay_api::cursor::Position;

    use super::*;

    fn cursor_at(sequence: &str) -> String {
        let mut cursor = Cursor::new("up");
        cursor.shards.insert(
            "shard-1".into(),
            Position::After {
                sequence: sequence.parse().unwrap(),
                sub_sequence: Some(1),
            },
        );
        cursor.shards.insert("shard-2".into(), Position::Start);
        cursor.encode()
    }

    #[test]
    fn positions_survive_a_restart_in_the_checkpoint_file() {
        let dir =
            std::env::temp_dir().join(format!("relay-upstream-positions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let settings = IngestSettings {
            state_dir: Some(dir.clone()),
            checkpoint_interval: Duration::from_secs(3600),
            ..IngestSettings::default()
        };
        // A relay of an earlier version kept the cursor in a file of its own.
        std::fs::write(dir.join("up.upstream-cursor"), cursor_at("10")).unwrap();
        let mut positions = Positions::load(&settings, "up").unwrap();
        assert_eq!(positions.saved, Some(cursor_at("10")));
        // Within the interval nothing is written; at shutdown it is.
        positions.save_now_and_then(Some(&cursor_at("20")));
        assert!(!dir.join("up.checkpoints.json").exists());
        positions.save(Some(&cursor_at("30")));
        let file = std::fs::read_to_string(dir.join("up.checkpoints.json")).unwrap();
        assert!(file.contains("\"last_sequence\": \"30\""), "{file}");
        let restarted = Positions::load(&settings, "up").unwrap();
        assert_eq!(restarted.saved, Some(cursor_at("30")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
