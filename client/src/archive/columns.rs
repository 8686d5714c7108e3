//! The columns of the archive's Parquet files: the record's metadata, then its data (bytes
//! or UTF-8 text, `--parquet-data`) or the fields of its data parsed as JSON, as a
//! `--parquet-schema` file names them; and which records fit them.

use std::{collections::HashSet, sync::Arc};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use kinesis_relay_api::v1;
use serde::Deserialize;

use crate::cli::ParquetData;

/// Names of the metadata columns, first in every file.
const METADATA: [&str; 7] = [
    "stream",
    "shard_id",
    "sequence_number",
    "sub_sequence_number",
    "partition_key",
    "explicit_hash_key",
    "arrival_time",
];

/// What follows the metadata columns.
#[derive(Debug, Clone)]
pub enum DataColumns {
    /// `data`: the bytes, or UTF-8 text.
    Data(ParquetData),
    /// The fields of the data parsed as JSON (`--parquet-schema`).
    Json(SchemaRef),
}

/// One field of a `--parquet-schema` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "nullable_by_default")]
    nullable: bool,
}

fn nullable_by_default() -> bool {
    true
}

/// Most fields a `--parquet-schema` file may name.
const MAX_FIELDS: usize = 1000;

impl DataColumns {
    /// Parses a `--parquet-schema` file: a JSON array of `{"name": ..., "type": ...,
    /// "nullable": true}`, types `string`, `int64`, `float64`, `boolean`, `timestamp`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let specs: Vec<FieldSpec> = serde_json::from_str(text).map_err(|err| {
            format!("not a JSON array of {{\"name\", \"type\", \"nullable\"}} ({err})")
        })?;
        if specs.is_empty() || specs.len() > MAX_FIELDS {
            return Err(format!("name between 1 and {MAX_FIELDS} fields"));
        }
        let mut seen: HashSet<&str> = METADATA.iter().copied().collect();
        let mut fields = Vec::with_capacity(specs.len());
        for spec in &specs {
            if !seen.insert(&spec.name) {
                return Err(format!(
                    "field {:?} is named twice, or is a metadata column",
                    spec.name
                ));
            }
            let data_type = match spec.kind.as_str() {
                "string" => DataType::Utf8,
                "int64" => DataType::Int64,
                "float64" => DataType::Float64,
                "boolean" => DataType::Boolean,
                // An offset, not a zone name: the JSON decoder knows no zone database.
                "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                other => {
                    return Err(format!(
                        "field {:?}: unknown type {other:?}; use string, int64, float64, \
                         boolean or timestamp",
                        spec.name
                    ));
                }
            };
            fields.push(Field::new(&spec.name, data_type, spec.nullable));
        }
        Ok(Self::Json(Arc::new(Schema::new(fields))))
    }

    /// The record's row of JSON fields, or why it has none (as a rejected record's reason).
    pub fn accept(
        &self,
        record: &v1::Record,
    ) -> Result<Option<RecordBatch>, (&'static str, String)> {
        match self {
            Self::Data(ParquetData::Bytes) => Ok(None),
            Self::Data(ParquetData::Utf8) => std::str::from_utf8(&record.data)
                .map(|_| None)
                .map_err(|err| {
                    (
                        "not-utf8",
                        format!(
                            "the data is not UTF-8 ({err}), so it has no place in a UTF-8 data \
                             column"
                        ),
                    )
                }),
            Self::Json(fields) => {
                let value: serde_json::Value = serde_json::from_slice(&record.data)
                    .map_err(|err| ("not-json", format!("the data is not JSON ({err})")))?;
                if !value.is_object() {
                    return Err(("not-json", "the data is not a JSON object".to_owned()));
                }
                let unfit = |err: String| {
                    (
                        "json-does-not-fit-schema",
                        format!("the data does not fit --parquet-schema ({err})"),
                    )
                };
                let mut decoder = arrow_json::ReaderBuilder::new(fields.clone())
                    .build_decoder()
                    .map_err(|err| unfit(err.to_string()))?;
                decoder
                    .serialize(&[value])
                    .map_err(|err| unfit(err.to_string()))?;
                match decoder.flush() {
                    Ok(Some(row)) if row.num_rows() == 1 => Ok(Some(row)),
                    Ok(_) => Err(unfit("no row".into())),
                    Err(err) => Err(unfit(err.to_string())),
                }
            }
        }
    }

    /// The columns of every archive Parquet file.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = vec![
            Field::new("stream", DataType::Utf8, false),
            Field::new("shard_id", DataType::Utf8, false),
            Field::new("sequence_number", DataType::Utf8, false),
            Field::new("sub_sequence_number", DataType::UInt64, true),
            Field::new("partition_key", DataType::Utf8, false),
            Field::new("explicit_hash_key", DataType::Utf8, true),
            Field::new(
                "arrival_time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
        ];
        match self {
            Self::Data(ParquetData::Bytes) => {
                fields.push(Field::new("data", DataType::Binary, false));
            }
            Self::Data(ParquetData::Utf8) => fields.push(Field::new("data", DataType::Utf8, false)),
            Self::Json(json) => fields.extend(json.fields().iter().map(|f| f.as_ref().clone())),
        }
        Arc::new(Schema::new(Fields::from(fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_schema_files_say_why() {
        for (text, says) in [
            ("{}", "JSON array"),
            ("[]", "between 1"),
            (r#"[{"name": "a", "type": "int32"}]"#, "unknown type"),
            (
                r#"[{"name": "stream", "type": "string"}]"#,
                "metadata column",
            ),
            (
                r#"[{"name": "a", "type": "string"}, {"name": "a", "type": "string"}]"#,
                "twice",
            ),
            (
                r#"[{"name": "a", "type": "string", "other": 1}]"#,
                "JSON array",
            ),
        ] {
            let err = DataColumns::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
