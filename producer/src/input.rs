//! Reads records from standard input, a file or the generator, and hands them on through a
//! bounded channel, so reading never runs ahead of sending by more than the channel holds.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::cli::Format;
use crate::partition_key::{KeyTemplate, check_key};
use crate::record::{MAX_RECORD_BYTES, Record};

/// What the reader hands on.
#[derive(Debug)]
pub enum Item {
    /// A record to send.
    Record(Record),
    /// A record refused before sending, with why.
    Rejected {
        /// The record as far as it was built.
        record: Record,
        /// Short error code for the failed-output file.
        code: &'static str,
        /// One line for the person running it.
        message: String,
    },
}

/// Where records come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Standard input or a file (None: standard input).
    Read {
        /// The file, or None for standard input.
        path: Option<PathBuf>,
        /// How to cut it into records.
        format: Format,
        /// JSON pointer of the key.
        key_field: Option<String>,
    },
    /// Synthetic records.
    Generate {
        /// Records per second, or as fast as possible.
        rate: Option<f64>,
        /// Stop after this many.
        count: Option<u64>,
        /// Stop after this long.
        duration: Option<Duration>,
        /// Bytes per record.
        size: usize,
    },
}

/// Builds records: keys, validation.
#[derive(Debug, Clone)]
pub struct RecordMaker {
    /// How partition keys are made.
    pub template: KeyTemplate,
    /// Explicit hash key for every record.
    pub explicit_hash_key: Option<u128>,
}

impl RecordMaker {
    /// A record from `data`, keyed by `key` if the input gave one, else by the template.
    pub fn make(&self, seq: u64, data: Bytes, key: Option<String>) -> Item {
        let partition_key = key.unwrap_or_else(|| self.template.render(seq, &data));
        let record = Record {
            seq,
            partition_key,
            explicit_hash_key: self.explicit_hash_key.map(|k| k.to_string()),
            data,
            read_at: Instant::now(),
        };
        if let Err(message) = check_key(&record.partition_key) {
            return Item::Rejected {
                record,
                code: "InvalidPartitionKey",
                message,
            };
        }
        if record.size() > MAX_RECORD_BYTES {
            let message = format!(
                "record {} is {} bytes with its key, over the 1 MiB Kinesis limit",
                record.seq,
                record.size()
            );
            return Item::Rejected {
                record,
                code: "RecordTooLarge",
                message,
            };
        }
        Item::Record(record)
    }
}

/// Reads `source` into `out` until it ends or `stop` turns true. Returns records handed on.
pub async fn read(
    source: Source,
    maker: RecordMaker,
    out: mpsc::Sender<Item>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let work = async {
        match source {
            Source::Read {
                path,
                format,
                key_field,
            } => {
                let reader: Box<dyn AsyncRead + Unpin + Send> = match &path {
                    None => Box::new(tokio::io::stdin()),
                    Some(p) if p.as_os_str() == "-" => Box::new(tokio::io::stdin()),
                    Some(p) => Box::new(tokio::fs::File::open(p).await.map_err(|err| {
                        anyhow::anyhow!("cannot open --input {}: {err}", p.display())
                    })?),
                };
                read_from(reader, format, key_field.as_deref(), &maker, &out).await
            }
            Source::Generate {
                rate,
                count,
                duration,
                size,
            } => generate(rate, count, duration, size, &maker, &out).await,
        }
    };
    tokio::select! {
        result = work => result,
        _ = stop.wait_for(|stopped| *stopped) => Ok(0),
    }
}

/// Cuts a byte stream into records.
pub async fn read_from<R: AsyncRead + Unpin>(
    reader: R,
    format: Format,
    key_field: Option<&str>,
    maker: &RecordMaker,
    out: &mpsc::Sender<Item>,
) -> anyhow::Result<u64> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    if format == Format::Raw {
        let mut data = Vec::new();
        reader.read_to_end(&mut data).await?;
        let _ = out.send(maker.make(0, Bytes::from(data), None)).await;
        return Ok(1);
    }
    let mut seq = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Read bytes, not strings: lines need not be UTF-8.
        if reader.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let data = Bytes::copy_from_slice(&line);
        let item = match format {
            Format::Json => json_item(seq, data, key_field, maker),
            _ => maker.make(seq, data, None),
        };
        if out.send(item).await.is_err() {
            break;
        }
        seq += 1;
    }
    Ok(seq)
}

fn json_item(seq: u64, data: Bytes, key_field: Option<&str>, maker: &RecordMaker) -> Item {
    let reject = |code, message| {
        let mut item = maker.make(seq, data.clone(), Some("-".into()));
        if let Item::Record(record) = item {
            item = Item::Rejected {
                record,
                code,
                message,
            };
        }
        item
    };
    let value: serde_json::Value = match serde_json::from_slice(&data) {
        Ok(value) => value,
        Err(err) => {
            return reject(
                "InvalidJson",
                format!("line {} is not JSON: {err}", seq + 1),
            );
        }
    };
    let Some(pointer) = key_field else {
        return maker.make(seq, data, None);
    };
    let key = match value.pointer(pointer) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::Bool(b)) => b.to_string(),
        _ => {
            return reject(
                "MissingKeyField",
                format!("line {} has no string or number at {pointer}", seq + 1),
            );
        }
    };
    maker.make(seq, data, Some(key))
}

/// The generator's record: `{"seq":N,"ts_us":T,"pad":"xx..."}` of `size` bytes (or the
/// skeleton alone when `size` is smaller).
pub fn generated_record(seq: u64, size: usize) -> Bytes {
    let ts_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut text = format!("{{\"seq\":{seq},\"ts_us\":{ts_us},\"pad\":\"");
    let closing = "\"}";
    let pad = size.saturating_sub(text.len() + closing.len());
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str(closing);
    Bytes::from(text)
}

async fn generate(
    rate: Option<f64>,
    count: Option<u64>,
    duration: Option<Duration>,
    size: usize,
    maker: &RecordMaker,
    out: &mpsc::Sender<Item>,
) -> anyhow::Result<u64> {
    let start = tokio::time::Instant::now();
    let end = duration.map(|d| start + d);
    let mut seq = 0;
    while count.is_none_or(|count| seq < count) {
        let now = tokio::time::Instant::now();
        if end.is_some_and(|end| now >= end) {
            break;
        }
        if let Some(rate) = rate {
            // Pace by schedule, not by sleeping per record: catches up after stalls.
            let due = start + Duration::from_secs_f64(seq as f64 / rate);
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep_until(due).await;
            }
        }
        let data = generated_record(seq, size);
        if out.send(maker.make(seq, data, None)).await.is_err() {
            break;
        }
        seq += 1;
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maker() -> RecordMaker {
        RecordMaker {
            template: KeyTemplate::parse("k{seq}").unwrap(),
            explicit_hash_key: None,
        }
    }

    async fn collect(input: &'static [u8], format: Format, key_field: Option<&str>) -> Vec<Item> {
        let (tx, mut rx) = mpsc::channel(100);
        read_from(input, format, key_field, &maker(), &tx)
            .await
            .unwrap();
        drop(tx);
        let mut items = Vec::new();
        while let Some(item) = rx.recv().await {
            items.push(item);
        }
        items
    }

    fn record(item: &Item) -> &Record {
        match item {
            Item::Record(record) => record,
            Item::Rejected { message, .. } => panic!("rejected: {message}"),
        }
    }

    #[tokio::test]
    async fn lines_skip_empty_and_strip_newlines() {
        let items = collect(b"a\r\n\nb\nc", Format::Lines, None).await;
        let data: Vec<_> = items.iter().map(|i| record(i).data.clone()).collect();
        assert_eq!(data, vec!["a", "b", "c"]);
        assert_eq!(record(&items[2]).partition_key, "k2");
    }

    #[tokio::test]
    async fn json_key_field() {
        let items = collect(
            b"{\"id\":\"u1\",\"v\":1}\n{\"id\":7}\n{\"v\":2}\nnot json\n",
            Format::Json,
            Some("/id"),
        )
        .await;
        assert_eq!(record(&items[0]).partition_key, "u1");
        assert_eq!(record(&items[1]).partition_key, "7");
        assert!(matches!(
            items[2],
            Item::Rejected {
                code: "MissingKeyField",
                ..
            }
        ));
        assert!(matches!(
            items[3],
            Item::Rejected {
                code: "InvalidJson",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn raw_is_one_record() {
        let items = collect(b"a\nb\n", Format::Raw, None).await;
        assert_eq!(items.len(), 1);
        assert_eq!(record(&items[0]).data, "a\nb\n");
    }

    #[test]
    fn oversized_records_are_rejected() {
        let item = maker().make(0, Bytes::from(vec![0; MAX_RECORD_BYTES]), None);
        assert!(matches!(
            item,
            Item::Rejected {
                code: "RecordTooLarge",
                ..
            }
        ));
        let item = maker().make(0, Bytes::from(vec![0; MAX_RECORD_BYTES - 2]), None);
        assert!(matches!(item, Item::Record(_)));
    }

    #[test]
    fn generated_records_have_the_size_and_parse() {
        let data = generated_record(42, 100);
        assert_eq!(data.len(), 100);
        let value: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(value["seq"], 42);
        assert!(value["ts_us"].as_u64().unwrap() > 0);
    }
}
