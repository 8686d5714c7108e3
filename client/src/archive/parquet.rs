//! `--format parquet`: records as Parquet files, for query engines that read Parquet
//! (Athena, Spark, DuckDB, ...): the record's metadata, then its data as bytes or UTF-8 text
//! (`--parquet-data`), or the fields of its data parsed as JSON with the schema of a file
//! (`--parquet-schema`).
//!
//! The writer keeps at most one row group in memory (`--row-group-rows`); what it has
//! encoded is taken out after each append and handed to the upload, like compressed NDJSON.

use std::sync::Arc;

use crate::{
    archive::columns::DataColumns,
    cli::{Compression, ParquetData},
};
use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BinaryBuilder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder},
};
use arrow_schema::SchemaRef;
use kinesis_relay_api::v1;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression as Codec, ZstdLevel},
    errors::ParquetError,
    file::properties::WriterProperties,
};

/// Records gathered before they are handed to the writer as one Arrow batch.
const BATCH_ROWS: usize = 1024;

/// A Parquet file being written into memory, taken out piece by piece.
pub struct ParquetFile {
    /// The writer, over the bytes not yet taken out.
    writer: ArrowWriter<Vec<u8>>,
    /// Rows gathered for the next batch.
    columns: Columns,
    /// What follows the metadata.
    data: DataColumns,
    /// The columns.
    schema: SchemaRef,
    /// How many.
    rows: usize,
}

/// One builder per column.
#[derive(Default)]
struct Columns {
    stream: StringBuilder,
    shard_id: StringBuilder,
    sequence_number: StringBuilder,
    sub_sequence_number: UInt64Builder,
    partition_key: StringBuilder,
    explicit_hash_key: StringBuilder,
    arrival_time: TimestampMillisecondBuilder,
    data: BinaryBuilder,
    text: StringBuilder,
    /// Rows of JSON fields (`--parquet-schema`), one batch each.
    json: Vec<RecordBatch>,
}

impl ParquetFile {
    /// A file whose pages are compressed with `compression` (none or zstd), with row
    /// groups of at most `row_group_rows` rows.
    pub fn new(
        compression: Compression,
        data: DataColumns,
        row_group_rows: usize,
    ) -> Result<Self, ParquetError> {
        let codec = match compression {
            Compression::None => Codec::UNCOMPRESSED,
            Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
            Compression::Gzip => {
                return Err(ParquetError::General(
                    "Parquet files are compressed with zstd or not at all".into(),
                ));
            }
        };
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .set_compression(codec)
            .build();
        let schema = data.schema();
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?,
            columns: Columns::default(),
            data,
            schema,
            rows: 0,
        })
    }

    /// Adds a record, with its row of JSON fields from [`DataColumns::accept`]; returns the
    /// bytes it counts for `--rotate-size`. A record that does not fit is refused (the caller
    /// checks with [`DataColumns::accept`] first).
    pub fn append(
        &mut self,
        stream: &str,
        shard_id: &str,
        record: &v1::Record,
        json_row: Option<RecordBatch>,
    ) -> Result<u64, ParquetError> {
        // Checked before any column grows: a refused record leaves no partial row.
        let refused = |why: &str| Err(ParquetError::General(why.to_owned()));
        let mut text = None;
        match (&self.data, json_row) {
            (DataColumns::Data(ParquetData::Bytes), _) => {}
            (DataColumns::Data(ParquetData::Utf8), _) => match std::str::from_utf8(&record.data) {
                Ok(data) => text = Some(data),
                Err(_) => return refused("the data is not UTF-8"),
            },
            (DataColumns::Json(_), None) => return refused("the data has no row of JSON fields"),
            (DataColumns::Json(fields), Some(row)) => {
                if row.schema() != *fields || row.num_rows() != 1 {
                    return refused("the row of JSON fields does not fit the schema");
                }
                self.columns.json.push(row);
            }
        }
        let columns = &mut self.columns;
        columns.stream.append_value(stream);
        columns.shard_id.append_value(shard_id);
        columns
            .sequence_number
            .append_value(&record.sequence_number);
        columns
            .sub_sequence_number
            .append_option(record.sub_sequence_number);
        columns.partition_key.append_value(&record.partition_key);
        columns
            .explicit_hash_key
            .append_option(Some(record.explicit_hash_key.as_str()).filter(|k| !k.is_empty()));
        columns.arrival_time.append_option(
            record
                .approximate_arrival_timestamp
                .as_ref()
                .map(|at| at.seconds.saturating_mul(1000) + i64::from(at.nanos / 1_000_000)),
        );
        match (&self.data, text) {
            (DataColumns::Json(_), _) => {}
            (_, Some(text)) => columns.text.append_value(text),
            (_, None) => columns.data.append_value(&record.data),
        }
        self.rows += 1;
        if self.rows >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok((record.data.len()
            + record.partition_key.len()
            + record.sequence_number.len()
            + stream.len()
            + shard_id.len()) as u64)
    }

    /// Hands the gathered rows to the writer.
    fn write_batch(&mut self) -> Result<(), ParquetError> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns = &mut self.columns;
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(columns.stream.finish()),
            Arc::new(columns.shard_id.finish()),
            Arc::new(columns.sequence_number.finish()),
            Arc::new(columns.sub_sequence_number.finish()),
            Arc::new(columns.partition_key.finish()),
            Arc::new(columns.explicit_hash_key.finish()),
            Arc::new(columns.arrival_time.finish().with_timezone("UTC")),
        ];
        match &self.data {
            DataColumns::Data(ParquetData::Bytes) => arrays.push(Arc::new(columns.data.finish())),
            DataColumns::Data(ParquetData::Utf8) => arrays.push(Arc::new(columns.text.finish())),
            DataColumns::Json(fields) => {
                let rows = arrow_select::concat::concat_batches(fields, &columns.json)?;
                columns.json.clear();
                arrays.extend(rows.columns().iter().cloned());
            }
        }
        self.rows = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.writer.write(&batch)
    }

    /// The bytes encoded so far and not taken out yet. The writer counts positions itself,
    /// so taking its output does not disturb the offsets it records in the footer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(self.writer.inner_mut())
    }

    /// Writes what is left and the footer; returns the last bytes of the file.
    pub fn finish(mut self) -> Result<Vec<u8>, ParquetError> {
        self.write_batch()?;
        self.writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::DataType;
    use parquet::{arrow::arrow_reader::ParquetRecordBatchReaderBuilder, file::reader::FileReader};

    fn record(n: u64) -> v1::Record {
        v1::Record {
            sequence_number: n.to_string(),
            partition_key: format!("k{}", n % 3),
            data: format!("r{n}").into_bytes().into(),
            approximate_arrival_timestamp: Some(prost_types::Timestamp {
                seconds: 1_714_564_800,
                nanos: 250_000_000,
            }),
            sub_sequence_number: n.is_multiple_of(2).then_some(n),
            ..Default::default()
        }
    }

    #[test]
    fn a_file_taken_out_in_pieces_reads_back_whole() {
        let bytes_data = DataColumns::Data(ParquetData::Bytes);
        let mut file = ParquetFile::new(Compression::Zstd, bytes_data.clone(), 1000).unwrap();
        let mut bytes = Vec::new();
        for n in 0..2500 {
            file.append("orders", "shardId-0", &record(n), None)
                .unwrap();
            bytes.extend(file.take_output());
        }
        bytes.extend(file.finish().unwrap());
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            bytes::Bytes::from(bytes.clone()),
        )
        .unwrap();
        assert_eq!(
            reader.metadata().num_row_groups(),
            3,
            "row groups of 1000 rows"
        );
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 2500);
        assert_eq!(batches[0].schema(), bytes_data.schema());
    }

    #[test]
    fn gzip_is_refused() {
        let data = DataColumns::Data(ParquetData::Bytes);
        assert!(ParquetFile::new(Compression::Gzip, data, 10).is_err());
    }

    #[test]
    fn utf8_data_is_a_string_column_and_other_data_is_refused() {
        let utf8 = DataColumns::Data(ParquetData::Utf8);
        let mut file = ParquetFile::new(Compression::None, utf8.clone(), 10).unwrap();
        file.append("s", "a", &record(1), None).unwrap();
        let binary = v1::Record {
            data: vec![0xff].into(),
            ..record(2)
        };
        assert_eq!(utf8.accept(&binary).unwrap_err().0, "not-utf8");
        assert!(
            DataColumns::Data(ParquetData::Bytes)
                .accept(&binary)
                .is_ok()
        );
        assert!(file.append("s", "a", &binary, None).is_err());
        let mut bytes = file.take_output();
        bytes.extend(file.finish().unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.schema().field(7).data_type(), &DataType::Utf8);
    }

    #[test]
    fn json_fields_replace_the_data_column() {
        let json = DataColumns::parse(
            r#"[{"name": "customer", "type": "string"},
                {"name": "amount", "type": "int64", "nullable": false},
                {"name": "at", "type": "timestamp"}]"#,
        )
        .unwrap();
        let with_data = |data: &str| v1::Record {
            data: data.as_bytes().to_vec().into(),
            ..record(1)
        };
        let reason = |data: &str| json.accept(&with_data(data)).unwrap_err().0;
        assert_eq!(reason("not json"), "not-json");
        assert_eq!(reason("[1]"), "not-json");
        assert_eq!(reason(r#"{"amount": "many"}"#), "json-does-not-fit-schema");
        assert_eq!(reason(r#"{"customer": "a"}"#), "json-does-not-fit-schema");
        let mut file = ParquetFile::new(Compression::Zstd, json.clone(), 10).unwrap();
        for data in [
            r#"{"customer": "a", "amount": 1, "at": "2024-05-01T12:00:00Z", "extra": true}"#,
            r#"{"amount": 2}"#,
        ] {
            let row = json.accept(&with_data(data)).unwrap();
            file.append("s", "a", &with_data(data), row).unwrap();
        }
        assert!(file.append("s", "a", &with_data("{}"), None).is_err());
        let mut bytes = file.take_output();
        bytes.extend(file.finish().unwrap());
        let batch = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), json.schema());
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names[7..], ["customer", "amount", "at"]);
    }
}
