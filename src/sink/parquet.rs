//! Parquet files (zstd by default) via `parquet`'s `ArrowWriter`.

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{
    AtomicFile, BatchWriter, Compression, HashingWriter, OutputConfig, SinkError, WrittenFile,
};

pub struct ParquetWriter {
    file: AtomicFile,
    writer: ArrowWriter<HashingWriter>,
    records: u64,
}

impl ParquetWriter {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        config: &OutputConfig,
    ) -> Result<Self, SinkError> {
        let codec = match config.compression.unwrap_or_default() {
            Compression::Zstd => Codec::ZSTD(
                ZstdLevel::try_new(config.compression_level.unwrap_or(3))
                    .map_err(|e| SinkError::encode(path, e))?,
            ),
            Compression::Snappy => Codec::SNAPPY,
            Compression::None => Codec::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(config.row_group_records))
            .set_created_by(crate::USER_AGENT.to_string())
            .build();
        let (atomic, file) = AtomicFile::create(path)?;
        let writer = ArrowWriter::try_new(HashingWriter::new(file), schema, Some(props))
            .map_err(|e| SinkError::encode(path, e))?;
        Ok(ParquetWriter {
            file: atomic,
            writer,
            records: 0,
        })
    }
}

impl BatchWriter for ParquetWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.records += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|e| SinkError::encode(self.file.path(), e))
    }

    fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    fn finish(self: Box<Self>) -> Result<WrittenFile, SinkError> {
        let ParquetWriter {
            file,
            writer,
            records,
        } = *self;
        let (inner, sha256, _) = writer
            .into_inner()
            .map_err(|e| SinkError::encode(file.path(), e))?
            .finish()
            .map_err(|e| SinkError::io(file.path(), e))?;
        let path = file.path().to_path_buf();
        let bytes = file.commit(inner)?;
        Ok(WrittenFile {
            path,
            records,
            bytes,
            sha256,
        })
    }
}
