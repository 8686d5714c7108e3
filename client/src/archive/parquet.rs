//! `--format parquet`: records as Parquet files with a fixed schema, the record's metadata
//! and its data as bytes or UTF-8 text (`--parquet-data`), for query engines that read
//! Parquet (Athena, Spark, DuckDB, ...).
//!
//! The writer keeps at most one row group in memory (`--row-group-rows`); what it has
//! encoded is taken out after each append and handed to the upload, like compressed NDJSON.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BinaryBuilder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder},
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kinesis_relay_api::v1;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression as Codec, ZstdLevel},
    errors::ParquetError,
    file::properties::WriterProperties,
};

use crate::cli::{Compression, ParquetData};

/// Records gathered before they are handed to the writer as one Arrow batch.
const BATCH_ROWS: usize = 1024;

/// The columns of every archive Parquet file; `data` is binary or UTF-8 text.
pub fn schema(data: ParquetData) -> SchemaRef {
    let data_type = match data {
        ParquetData::Bytes => DataType::Binary,
        ParquetData::Utf8 => DataType::Utf8,
    };
    Arc::new(Schema::new(vec![
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
        Field::new("data", data_type, false),
    ]))
}

/// A Parquet file being written into memory, taken out piece by piece.
pub struct ParquetFile {
    /// The writer, over the bytes not yet taken out.
    writer: ArrowWriter<Vec<u8>>,
    /// Rows gathered for the next batch.
    columns: Columns,
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
}

impl ParquetFile {
    /// A file whose pages are compressed with `compression` (none or zstd), with row
    /// groups of at most `row_group_rows` rows.
    pub fn new(
        compression: Compression,
        data: ParquetData,
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
        let schema = schema(data);
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))?,
            columns: Columns::default(),
            schema,
            rows: 0,
        })
    }

    /// Adds a record; returns the bytes it counts for `--rotate-size`. With UTF-8 data, a
    /// record whose data is not UTF-8 is refused (the caller checks with [`accepts`] first).
    pub fn append(
        &mut self,
        stream: &str,
        shard_id: &str,
        record: &v1::Record,
    ) -> Result<u64, ParquetError> {
        // Checked before any column grows: a refused record leaves no partial row.
        let text = if self.schema.field(7).data_type() == &DataType::Utf8 {
            Some(
                std::str::from_utf8(&record.data)
                    .map_err(|err| ParquetError::General(format!("data is not UTF-8: {err}")))?,
            )
        } else {
            None
        };
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
        match text {
            Some(text) => columns.text.append_value(text),
            None => columns.data.append_value(&record.data),
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
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(columns.stream.finish()),
            Arc::new(columns.shard_id.finish()),
            Arc::new(columns.sequence_number.finish()),
            Arc::new(columns.sub_sequence_number.finish()),
            Arc::new(columns.partition_key.finish()),
            Arc::new(columns.explicit_hash_key.finish()),
            Arc::new(columns.arrival_time.finish().with_timezone("UTC")),
            if self.schema.field(7).data_type() == &DataType::Utf8 {
                Arc::new(columns.text.finish())
            } else {
                Arc::new(columns.data.finish())
            },
        ];
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

/// Whether `record` fits the `data` column, or why not (as a rejected record's reason).
pub fn accepts(data: ParquetData, record: &v1::Record) -> Result<(), (&'static str, String)> {
    match data {
        ParquetData::Bytes => Ok(()),
        ParquetData::Utf8 => std::str::from_utf8(&record.data)
            .map(|_| ())
            .map_err(|err| {
                (
                    "not-utf8",
                    format!(
                        "the data is not UTF-8 ({err}), so it has no place in a UTF-8 data column"
                    ),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut file = ParquetFile::new(Compression::Zstd, ParquetData::Bytes, 1000).unwrap();
        let mut bytes = Vec::new();
        for n in 0..2500 {
            file.append("orders", "shardId-0", &record(n)).unwrap();
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
        assert_eq!(batches[0].schema(), schema(ParquetData::Bytes));
    }

    #[test]
    fn gzip_is_refused() {
        assert!(ParquetFile::new(Compression::Gzip, ParquetData::Bytes, 10).is_err());
    }

    #[test]
    fn utf8_data_is_a_string_column_and_other_data_is_refused() {
        let mut file = ParquetFile::new(Compression::None, ParquetData::Utf8, 10).unwrap();
        file.append("s", "a", &record(1)).unwrap();
        let binary = v1::Record {
            data: vec![0xff].into(),
            ..record(2)
        };
        assert_eq!(
            accepts(ParquetData::Utf8, &binary).unwrap_err().0,
            "not-utf8"
        );
        assert!(accepts(ParquetData::Bytes, &binary).is_ok());
        assert!(file.append("s", "a", &binary).is_err());
        let mut bytes = file.take_output();
        bytes.extend(file.finish().unwrap());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.schema().field(7).data_type(), &DataType::Utf8);
    }
}
