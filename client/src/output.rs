//! Record formats (`--format`) and the notices written to stderr.

use std::{
    fmt,
    io::{self, Write},
    time::{Duration, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use kinesis_relay_api::v1;
use serde::Serialize;

use crate::cli::Format;

/// Writes a notice for the user on stderr: gaps, lag, reconnections. Failing to write to
/// stderr is not worth dying for.
pub fn notice(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "kinesis-relay-client: {args}");
}

/// `notice!("...", args)`.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::output::notice(format_args!($($arg)*)) };
}

/// Writes one record in `format`.
pub fn write_record(
    out: &mut impl Write,
    format: Format,
    stream: &str,
    shard_id: &str,
    record: &v1::Record,
) -> io::Result<()> {
    match format {
        Format::Text => {
            write_escaped(out, &record.data)?;
            out.write_all(b"\n")
        }
        Format::Json => {
            serde_json::to_writer(&mut *out, &JsonRecord::new(stream, shard_id, record))?;
            out.write_all(b"\n")
        }
        Format::Raw => out.write_all(&record.data),
        Format::Base64 => {
            out.write_all(STANDARD.encode(&record.data).as_bytes())?;
            out.write_all(b"\n")
        }
    }
}

/// One record as a JSON object (`--format json` and the archive files).
#[derive(Debug, Serialize)]
pub struct JsonRecord<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The shard.
    pub shard_id: &'a str,
    /// Decimal sequence number (a string: it exceeds 64 bits).
    pub sequence_number: &'a str,
    /// Index inside a KPL aggregate, `null` for records that were not aggregated.
    pub sub_sequence_number: Option<u64>,
    /// The partition key.
    pub partition_key: &'a str,
    /// The explicit hash key of a KPL user record, `null` when none was set.
    pub explicit_hash_key: Option<&'a str>,
    /// When Kinesis accepted the record, RFC 3339 in UTC.
    pub arrival_time: Option<String>,
    /// `utf8` when `data` is the data as text, `base64` when the data was not UTF-8.
    pub data_encoding: &'static str,
    /// The data.
    pub data: String,
}

impl<'a> JsonRecord<'a> {
    /// The JSON view of `record`.
    pub fn new(stream: &'a str, shard_id: &'a str, record: &'a v1::Record) -> Self {
        let (data_encoding, data) = match std::str::from_utf8(&record.data) {
            Ok(text) => ("utf8", text.to_owned()),
            Err(_) => ("base64", STANDARD.encode(&record.data)),
        };
        Self {
            stream,
            shard_id,
            sequence_number: &record.sequence_number,
            sub_sequence_number: record.sub_sequence_number,
            partition_key: &record.partition_key,
            explicit_hash_key: Some(record.explicit_hash_key.as_str()).filter(|k| !k.is_empty()),
            arrival_time: record
                .approximate_arrival_timestamp
                .as_ref()
                .and_then(rfc3339),
            data_encoding,
            data,
        }
    }
}

/// RFC 3339 text of a protobuf timestamp (`None` when out of range).
pub fn rfc3339(at: &prost_types::Timestamp) -> Option<String> {
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A protobuf timestamp from RFC 3339 text's parsed form.
pub fn timestamp(at: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::from(at))
}

/// How long ago `at` was (zero for the future or an invalid time).
pub fn age(at: &prost_types::Timestamp) -> Duration {
    let Ok(seconds) = u64::try_from(at.seconds) else {
        return Duration::ZERO;
    };
    let then = UNIX_EPOCH + Duration::new(seconds, at.nanos.clamp(0, 999_999_999) as u32);
    then.elapsed().unwrap_or_default()
}

/// Writes `data` as text: valid UTF-8 as it is, except control characters (a record stays
/// one line and cannot drive the terminal); invalid bytes and control characters as `\xNN`.
pub fn write_escaped(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    for chunk in data.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (index, c) in valid.char_indices() {
            if c.is_control() && c != '\t' {
                out.write_all(&valid.as_bytes()[start..index])?;
                for byte in c.to_string().bytes() {
                    write!(out, "\\x{byte:02x}")?;
                }
                start = index + c.len_utf8();
            }
        }
        out.write_all(&valid.as_bytes()[start..])?;
        for byte in chunk.invalid() {
            write!(out, "\\x{byte:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> v1::Record {
        v1::Record {
            partition_key: "k".into(),
            data: data.to_vec().into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            sub_sequence_number: None,
            approximate_arrival_timestamp: Some(prost_types::Timestamp {
                seconds: 1_714_564_800,
                nanos: 250_000_000,
            }),
            explicit_hash_key: String::new(),
        }
    }

    fn render(format: Format, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_record(&mut out, format, "s", "shardId-0", &record(data)).unwrap();
        out
    }

    #[test]
    fn text_escapes_what_is_not_printable_utf8() {
        assert_eq!(
            render(Format::Text, "héllo\tw".as_bytes()),
            "héllo\tw\n".as_bytes()
        );
        assert_eq!(
            render(Format::Text, b"a\xffb\nc\x1b"),
            b"a\\xffb\\x0ac\\x1b\n"
        );
    }

    #[test]
    fn json_says_how_data_is_encoded() {
        let line = String::from_utf8(render(Format::Json, b"hi")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["data"], "hi");
        assert_eq!(value["data_encoding"], "utf8");
        assert_eq!(value["arrival_time"], "2024-05-01T12:00:00.25Z");
        assert_eq!(value["sub_sequence_number"], serde_json::Value::Null);
        let line = String::from_utf8(render(Format::Json, b"\xff\x00")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["data"], "/wA=");
        assert_eq!(value["data_encoding"], "base64");
    }

    #[test]
    fn raw_and_base64() {
        assert_eq!(render(Format::Raw, b"\x00\x01"), b"\x00\x01");
        assert_eq!(render(Format::Base64, b"\x00\x01"), b"AAE=\n");
    }
}
