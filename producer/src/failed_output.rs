//! The `--failed-output` file: every record that was not written, so nothing is lost.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kinesis_relay_api::kpl::UserRecord;
use serde::Serialize;

/// One line of the file.
#[derive(Debug, Serialize)]
struct Line<'a> {
    partition_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<&'a str>,
    /// Base64, since records are arbitrary bytes.
    data: String,
    error: &'a str,
    message: &'a str,
}

/// Writes failed records as JSON lines (or only counts them without a file).
#[derive(Debug)]
pub struct FailedOutput {
    /// The open file, if --failed-output was given.
    file: Option<BufWriter<File>>,
}

impl FailedOutput {
    /// Opens (truncates) `path`, or writes nowhere.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let file = match path {
            Some(path) => Some(BufWriter::new(File::create(path).map_err(|err| {
                anyhow::anyhow!("cannot create --failed-output {}: {err}", path.display())
            })?)),
            None => None,
        };
        Ok(FailedOutput { file })
    }

    /// Records one failed user record.
    pub fn write(&mut self, record: &UserRecord, error: &str, message: &str) -> anyhow::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let line = Line {
            partition_key: &record.partition_key,
            explicit_hash_key: record.explicit_hash_key.as_deref(),
            data: STANDARD.encode(&record.data),
            error,
            message,
        };
        serde_json::to_writer(&mut *file, &line)?;
        file.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes to disk.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(file) = &mut self.file {
            file.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn writes_json_lines_with_base64() {
        let dir = std::env::temp_dir().join(format!("failed-output-{}", std::process::id()));
        let mut out = FailedOutput::open(Some(&dir)).unwrap();
        let record = UserRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"\xffhi"),
        };
        out.write(&record, "RecordTooLarge", "too big").unwrap();
        out.flush().unwrap();
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["partition_key"], "k");
        assert_eq!(value["data"], "/2hp");
        assert_eq!(value["error"], "RecordTooLarge");
        assert!(value.get("explicit_hash_key").is_none());
    }
}
