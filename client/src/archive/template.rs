//! `--prefix-template`: where in an object store a file goes, Firehose style.
//!
//! A template is text with fields in braces: `{stream}`, the UTC arrival time of the file's
//! first record (`{yyyy}`, `{MM}`, `{dd}`, `{HH}`), and the partition fields `{partition_key}`
//! and `{json:a.b}` (a field of the record's data parsed as JSON). Records whose partition
//! fields differ go to different files; a record whose partition value is missing (or whose
//! data is not JSON when a `{json:...}` field needs it) is rejected with a reason, and the
//! archive writes it under the error prefix instead.

use kinesis_relay_api::v1;
use object_store::path::{Path, PathPart};
use serde_json::Value;
use time::OffsetDateTime;

/// The template Firehose uses: `YYYY/MM/DD/HH/`.
pub const DEFAULT: &str = "{yyyy}/{MM}/{dd}/{HH}/";

/// Longest partition value kept (bytes); longer ones are rejected rather than making keys
/// that a store refuses (S3 keys end at 1,024 bytes).
const MAX_VALUE_LEN: usize = 256;

/// Deepest `{json:...}` path accepted.
const MAX_JSON_DEPTH: usize = 16;

/// A parsed `--prefix-template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The segments between slashes, each a sequence of pieces.
    segments: Vec<Vec<Piece>>,
}

/// A piece of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text as written.
    Literal(String),
    /// A time field of the first record's arrival.
    Time(TimeField),
    /// The stream name.
    Stream,
    /// The record's partition key.
    PartitionKey,
    /// A field of the record's JSON data, by path.
    Json(Vec<String>),
}

/// `{yyyy}`, `{MM}`, `{dd}`, `{HH}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeField {
    Year,
    Month,
    Day,
    Hour,
}

/// The partition values of a record: the template's partition fields in order. Equal
/// partitions share a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partition(Vec<String>);

/// Why a record cannot go where the template says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// A short name, used as a key segment: `errors/<reason>/...`.
    pub reason: &'static str,
    /// What exactly, for the record's error line.
    pub detail: String,
}

impl Template {
    /// Parses `text`; the error names the field at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        for segment in text.split('/') {
            let mut pieces = Vec::new();
            let mut rest = segment;
            while !rest.is_empty() {
                if let Some(after) = rest.strip_prefix('{') {
                    let Some(end) = after.find('}') else {
                        return Err(format!("--prefix-template {text:?}: a '{{' is not closed"));
                    };
                    pieces.push(Self::field(&after[..end], text)?);
                    rest = &after[end + 1..];
                } else {
                    let end = rest.find(['{', '}']).unwrap_or(rest.len());
                    if end == 0 {
                        return Err(format!("--prefix-template {text:?}: a '}}' is not opened"));
                    }
                    pieces.push(Piece::Literal(rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
            if !pieces.is_empty() {
                segments.push(pieces);
            }
        }
        Ok(Self { segments })
    }

    /// One `{field}`.
    fn field(name: &str, text: &str) -> Result<Piece, String> {
        Ok(match name {
            "stream" => Piece::Stream,
            "yyyy" => Piece::Time(TimeField::Year),
            "MM" => Piece::Time(TimeField::Month),
            "dd" => Piece::Time(TimeField::Day),
            "HH" => Piece::Time(TimeField::Hour),
            "partition_key" => Piece::PartitionKey,
            _ => match name.strip_prefix("json:") {
                Some(path) => {
                    let steps: Vec<String> = path.split('.').map(str::to_owned).collect();
                    if steps.iter().any(String::is_empty) || steps.len() > MAX_JSON_DEPTH {
                        return Err(format!(
                            "--prefix-template {text:?}: {{json:{path}}} needs a path like \
                             {{json:customer.id}} (at most {MAX_JSON_DEPTH} steps)"
                        ));
                    }
                    Piece::Json(steps)
                }
                None => {
                    return Err(format!(
                        "--prefix-template {text:?}: unknown field {{{name}}}; use {{stream}}, \
                         {{yyyy}}, {{MM}}, {{dd}}, {{HH}}, {{partition_key}} or {{json:field.path}}"
                    ));
                }
            },
        })
    }

    /// Whether partitioning reads the record's data as JSON.
    pub fn needs_json(&self) -> bool {
        self.pieces().any(|piece| matches!(piece, Piece::Json(_)))
    }

    fn pieces(&self) -> impl Iterator<Item = &Piece> {
        self.segments.iter().flatten()
    }

    /// The partition of `record`, or why it has none. `json` is the record's data parsed
    /// as JSON when [`Template::needs_json`] (or the parse error).
    pub fn partition(
        &self,
        stream: &str,
        record: &v1::Record,
        json: Option<&Result<Value, String>>,
    ) -> Result<Partition, Rejected> {
        let mut values = Vec::new();
        for piece in self.pieces() {
            let value = match piece {
                Piece::Literal(_) | Piece::Time(_) => continue,
                Piece::Stream => stream.to_owned(),
                Piece::PartitionKey => record.partition_key.clone(),
                Piece::Json(steps) => json_value(steps, json)?,
            };
            if value.is_empty() {
                return Err(Rejected {
                    reason: "empty-partition-value",
                    detail: "a partition value is empty".to_owned(),
                });
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(Rejected {
                    reason: "partition-value-too-long",
                    detail: format!("a partition value is longer than {MAX_VALUE_LEN} bytes"),
                });
            }
            values.push(value);
        }
        Ok(Partition(values))
    }

    /// The key prefix of a file of `partition` whose first record arrived `at`.
    pub fn render(&self, partition: &Partition, at: OffsetDateTime) -> Path {
        let mut values = partition.0.iter();
        let mut parts: Vec<PathPart<'static>> = Vec::new();
        for segment in &self.segments {
            let mut text = String::new();
            for piece in segment {
                match piece {
                    Piece::Literal(literal) => text.push_str(literal),
                    Piece::Time(field) => text.push_str(&time_field(*field, at)),
                    Piece::Stream | Piece::PartitionKey | Piece::Json(_) => {
                        text.push_str(values.next().map_or("", String::as_str));
                    }
                }
            }
            parts.push(PathPart::from(text));
        }
        Path::from_iter(parts)
    }
}

/// The prefix of records rejected for `reason`: `errors/<reason>/YYYY/MM/DD/HH`.
pub fn error_prefix(reason: &str, at: OffsetDateTime) -> Path {
    let mut parts = vec![PathPart::from("errors"), PathPart::from(reason.to_owned())];
    for field in [
        TimeField::Year,
        TimeField::Month,
        TimeField::Day,
        TimeField::Hour,
    ] {
        parts.push(PathPart::from(time_field(field, at)));
    }
    Path::from_iter(parts)
}

fn time_field(field: TimeField, at: OffsetDateTime) -> String {
    match field {
        TimeField::Year => format!("{:04}", at.year()),
        TimeField::Month => format!("{:02}", u8::from(at.month())),
        TimeField::Day => format!("{:02}", at.day()),
        TimeField::Hour => format!("{:02}", at.hour()),
    }
}

/// The value at `steps` in the record's JSON, as text.
fn json_value(steps: &[String], json: Option<&Result<Value, String>>) -> Result<String, Rejected> {
    let path = steps.join(".");
    let mut value = match json {
        Some(Ok(value)) => value,
        Some(Err(why)) => {
            return Err(Rejected {
                reason: "not-json",
                detail: format!("the data is not JSON ({why}), so {{json:{path}}} has no value"),
            });
        }
        None => {
            return Err(Rejected {
                reason: "not-json",
                detail: "the data was not parsed".to_owned(),
            });
        }
    };
    for step in steps {
        let next = match value {
            Value::Object(map) => map.get(step),
            Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = match next {
            Some(next) => next,
            None => {
                return Err(Rejected {
                    reason: "missing-partition-value",
                    detail: format!("the data has no field {path}"),
                });
            }
        };
    }
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        Value::Null => Err(Rejected {
            reason: "missing-partition-value",
            detail: format!("the field {path} is null"),
        }),
        Value::Object(_) | Value::Array(_) => Err(Rejected {
            reason: "partition-value-not-scalar",
            detail: format!("the field {path} is an object or an array"),
        }),
    }
}

/// The record's data parsed as JSON, or why not.
pub fn parse_json(data: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(data).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap() // 2024-05-01T12:00:00Z
    }

    fn record(key: &str, data: &str) -> v1::Record {
        v1::Record {
            partition_key: key.into(),
            data: data.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn place(template: &str, key: &str, data: &str) -> Result<String, Rejected> {
        let template = Template::parse(template).unwrap();
        let json = template.needs_json().then(|| parse_json(data.as_bytes()));
        let partition = template.partition("orders", &record(key, data), json.as_ref())?;
        Ok(template.render(&partition, at()).to_string())
    }

    #[test]
    fn the_default_is_firehose_hours() {
        assert_eq!(place(DEFAULT, "k", "x").unwrap(), "2024/05/01/12");
    }

    #[test]
    fn partition_fields_are_filled_and_encoded() {
        assert_eq!(
            place(
                "{stream}/customer={json:customer.id}/{yyyy}-{MM}-{dd}",
                "k",
                r#"{"customer":{"id":42}}"#
            )
            .unwrap(),
            "orders/customer=42/2024-05-01"
        );
        // A slash inside a value cannot make a segment of its own.
        assert_eq!(
            place("key={partition_key}/", "a/b", "x").unwrap(),
            "key=a%2Fb"
        );
        assert_eq!(place("{partition_key}", "..", "x").unwrap(), "%2E%2E");
        assert_eq!(
            place("{json:items.1}", "k", r#"{"items":["a","b"]}"#).unwrap(),
            "b"
        );
    }

    #[test]
    fn records_without_a_value_are_rejected_with_a_reason() {
        let reason = |data| place("{json:customer}", "k", data).unwrap_err().reason;
        assert_eq!(reason("not json"), "not-json");
        assert_eq!(reason(r#"{"other":1}"#), "missing-partition-value");
        assert_eq!(reason(r#"{"customer":null}"#), "missing-partition-value");
        assert_eq!(
            reason(r#"{"customer":{"a":1}}"#),
            "partition-value-not-scalar"
        );
        assert_eq!(reason(r#"{"customer":""}"#), "empty-partition-value");
        let long = format!(r#"{{"customer":"{}"}}"#, "x".repeat(300));
        assert_eq!(reason(&long), "partition-value-too-long");
    }

    #[test]
    fn bad_templates_name_the_field() {
        for (text, names) in [
            ("{year}/", "{year}"),
            ("{json:}", "json:"),
            ("{json:a..b}", "json:a..b"),
            ("{stream", "not closed"),
            ("stream}", "not opened"),
        ] {
            let err = Template::parse(text).unwrap_err();
            assert!(err.contains(names), "{text}: {err}");
        }
    }

    #[test]
    fn error_prefixes_hold_the_reason_and_the_hour() {
        assert_eq!(
            error_prefix("not-json", at()).to_string(),
            "errors/not-json/2024/05/01/12"
        );
    }
}
