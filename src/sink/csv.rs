//! CSV files: RFC 4180 quoting, UTF-8, a header row; lists and structs as JSON text.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_json::writer::{EncoderOptions, make_encoder};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{AtomicFile, BatchWriter, HashingWriter, SinkError, WrittenFile};

pub struct CsvWriter {
    file: AtomicFile,
    writer: arrow_csv::Writer<HashingWriter>,
    /// The schema as written: nested columns become text.
    schema: SchemaRef,
    records: u64,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Types CSV cannot hold as a value; written as JSON text instead.
fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
            | DataType::Map(_, _)
    )
}

/// The schema as written: nested columns become text.
fn text_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if is_nested(f.data_type()) {
                    Arc::new(Field::new(f.name(), DataType::Utf8, true))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// The header line a part of `schema` starts with, exactly as written.
pub fn header(schema: &Schema) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let text = text_schema(schema);
    let mut out = Vec::new();
    {
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        writer.write(&RecordBatch::new_empty(text))?;
    }
    Ok(out)
}

impl CsvWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self, SinkError> {
        let text_schema = text_schema(&schema);
        let (atomic, file) = AtomicFile::create(path)?;
        let hashing = HashingWriter::new(file);
        let bytes = hashing.counter();
        let writer = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .build(hashing);
        Ok(CsvWriter {
            file: atomic,
            writer,
            schema: text_schema,
            records: 0,
            bytes,
        })
    }

    fn to_text(&self, batch: &RecordBatch) -> Result<RecordBatch, SinkError> {
        let options = EncoderOptions::default().with_explicit_nulls(true);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if !is_nested(field.data_type()) {
                columns.push(column.clone());
                continue;
            }
            let mut encoder = make_encoder(field, column.as_ref(), &options)
                .map_err(|e| SinkError::encode(self.file.path(), e))?;
            let mut builder = StringBuilder::with_capacity(column.len(), column.len() * 16);
            let mut buf = Vec::new();
            for row in 0..column.len() {
                if encoder.is_null(row) {
                    builder.append_null();
                } else {
                    buf.clear();
                    encoder.encode(row, &mut buf);
                    builder.append_value(String::from_utf8_lossy(&buf));
                }
            }
            columns.push(Arc::new(builder.finish()));
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| SinkError::encode(self.file.path(), e))
    }
}

impl BatchWriter for CsvWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.records += batch.num_rows() as u64;
        let text = self.to_text(batch)?;
        self.writer
            .write(&text)
            .map_err(|e| SinkError::encode(self.file.path(), e))
    }

    fn size(&self) -> u64 {
        // What reached the file writer; arrow-csv itself buffers little.
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn finish(self: Box<Self>) -> Result<WrittenFile, SinkError> {
        let CsvWriter {
            file,
            writer,
            records,
            schema,
            ..
        } = *self;
        let mut buffered = writer.into_inner();
        if records == 0 {
            // arrow-csv writes the header with the first batch; an empty snapshot still gets one.
            let header = header(&schema).map_err(|e| SinkError::encode(file.path(), e))?;
            buffered
                .write_all(&header)
                .map_err(|e| SinkError::io(file.path(), e))?;
        }
        let (inner, sha256, _) = buffered
            .finish()
            .map_err(|e| SinkError::io(file.path(), e))?;
        WrittenFile::commit(file, inner, records, sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_written_even_without_rows() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b,c", DataType::Utf8, true),
        ]);
        assert_eq!(header(&schema).unwrap(), b"a,\"b,c\"\n");
    }
}
