//! Parquet files (zstd by default) via `parquet`'s `ArrowWriter`.

use std::collections::HashSet;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

use super::{
    AtomicFile, BatchWriter, Compression, Dictionary, HashingWriter, OutputConfig, SinkError,
    WrittenFile,
};

/// Level 1 measured both faster and smaller than 3 on the sandbox's records once
/// dictionaries are used only where values repeat (BENCHMARKS.md, "Parquet settings").
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

pub struct ParquetWriter {
    file: AtomicFile,
    state: State,
    records: u64,
}

/// With `dictionary = auto` the writer is opened at the first batch, which decides the
/// columns' encodings.
enum State {
    Pending {
        out: HashingWriter,
        schema: SchemaRef,
        props: WriterPropertiesBuilder,
    },
    Open(ArrowWriter<HashingWriter>),
    /// Only while switching from `Pending` to `Open`.
    Switching,
}

impl ParquetWriter {
    pub fn create(
        path: &Path,
        schema: SchemaRef,
        config: &OutputConfig,
    ) -> Result<Self, SinkError> {
        let codec = match config.compression.unwrap_or_default() {
            Compression::Zstd => Codec::ZSTD(
                ZstdLevel::try_new(config.compression_level.unwrap_or(DEFAULT_ZSTD_LEVEL))
                    .map_err(|e| SinkError::encode(path, e))?,
            ),
            Compression::Snappy => Codec::SNAPPY,
            Compression::None => Codec::UNCOMPRESSED,
        };
        let dictionary = config.dictionary.unwrap_or_default();
        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(config.row_group_records))
            .set_created_by(crate::USER_AGENT.to_string())
            .set_dictionary_enabled(dictionary == Dictionary::On);
        let (file, out) = AtomicFile::create(path)?;
        let out = HashingWriter::new(out);
        let state = if dictionary == Dictionary::Auto {
            State::Pending { out, schema, props }
        } else {
            State::Open(
                ArrowWriter::try_new(out, schema, Some(props.build()))
                    .map_err(|e| SinkError::encode(path, e))?,
            )
        };
        Ok(ParquetWriter {
            file,
            state,
            records: 0,
        })
    }

    /// The open writer, opening it (with `first`'s verdict on dictionaries) if needed.
    fn writer(
        &mut self,
        first: Option<&RecordBatch>,
    ) -> Result<&mut ArrowWriter<HashingWriter>, SinkError> {
        if let State::Pending { .. } = self.state {
            let State::Pending {
                out,
                schema,
                mut props,
            } = std::mem::replace(&mut self.state, State::Switching)
            else {
                unreachable!("matched above");
            };
            if let Some(batch) = first {
                for (path, repeats) in repeating_columns(&schema, batch) {
                    props = props.set_column_dictionary_enabled(path, repeats);
                }
            }
            let writer = ArrowWriter::try_new(out, schema, Some(props.build()))
                .map_err(|e| SinkError::encode(self.file.path(), e))?;
            self.state = State::Open(writer);
        }
        match &mut self.state {
            State::Open(writer) => Ok(writer),
            _ => unreachable!("opened above"),
        }
    }
}

/// Each Parquet leaf column of `schema`, and whether its values in `batch` repeat enough
/// for a dictionary: at most half of the non-null values distinct. Leaves the parquet
/// crate's schema mapping out of step with ours would be left alone (an empty list).
fn repeating_columns(
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Vec<(parquet::schema::types::ColumnPath, bool)> {
    let Ok(descriptor) = ArrowSchemaConverter::new().convert(schema) else {
        return Vec::new();
    };
    let mut leaves = Vec::new();
    for column in batch.columns() {
        leaf_arrays(column, &mut leaves);
    }
    if leaves.len() != descriptor.num_columns() {
        return Vec::new();
    }
    descriptor
        .columns()
        .iter()
        .zip(leaves)
        .map(|(column, values)| (column.path().clone(), repeats(&values)))
        .collect()
}

/// The arrays of `array`'s leaf values, in the order Parquet lays out leaf columns.
fn leaf_arrays(array: &ArrayRef, out: &mut Vec<ArrayRef>) {
    match array.data_type() {
        DataType::Struct(_) => {
            for child in array.as_struct().columns() {
                leaf_arrays(child, out);
            }
        }
        DataType::List(_) => leaf_arrays(array.as_list::<i32>().values(), out),
        DataType::LargeList(_) => leaf_arrays(array.as_list::<i64>().values(), out),
        DataType::FixedSizeList(..) => leaf_arrays(array.as_fixed_size_list().values(), out),
        DataType::Map(..) => {
            let entries = array.as_map();
            leaf_arrays(entries.keys(), out);
            leaf_arrays(entries.values(), out);
        }
        _ => out.push(array.clone()),
    }
}

/// The values of a first batch that decide whether a column gets a dictionary.
const SAMPLE: usize = 4_096;

fn repeats(values: &ArrayRef) -> bool {
    let Ok(formatter) = ArrayFormatter::try_new(values.as_ref(), &FormatOptions::default()) else {
        return true;
    };
    let mut seen = HashSet::new();
    let mut present = 0usize;
    // A sample decides: a first batch can be a whole bucket of the current table (100,000
    // rows), and every value formatted and hashed showed in its profile.
    for i in 0..values.len().min(SAMPLE) {
        if values.is_valid(i) {
            present += 1;
            seen.insert(formatter.value(i).to_string());
        }
    }
    seen.len() * 2 <= present
}

impl BatchWriter for ParquetWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.records += batch.num_rows() as u64;
        let path = self.file.path().to_path_buf();
        self.writer(Some(batch))?
            .write(batch)
            .map_err(|e| SinkError::encode(&path, e))
    }

    fn size(&self) -> u64 {
        match &self.state {
            State::Open(writer) => (writer.bytes_written() + writer.in_progress_size()) as u64,
            _ => 0,
        }
    }

    fn finish(mut self: Box<Self>) -> Result<WrittenFile, SinkError> {
        self.writer(None)?;
        let ParquetWriter {
            file,
            state,
            records,
        } = *self;
        let State::Open(writer) = state else {
            unreachable!("opened above");
        };
        let (inner, sha256, _) = writer
            .into_inner()
            .map_err(|e| SinkError::encode(file.path(), e))?
            .finish()
            .map_err(|e| SinkError::io(file.path(), e))?;
        WrittenFile::commit(file, inner, records, sha256)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray, StructArray};
    use arrow_schema::{Field, Fields, Schema};

    use super::*;

    #[test]
    fn dictionaries_where_values_repeat() {
        let city = Arc::new(StringArray::from(vec![
            "Zürich", "Kraków", "Zürich", "Kraków",
        ]));
        let zip = Arc::new(StringArray::from(vec![
            Some("1"),
            Some("2"),
            None,
            Some("3"),
        ]));
        let address = StructArray::new(
            Fields::from(vec![
                Field::new("city", DataType::Utf8, true),
                Field::new("zip", DataType::Utf8, true),
            ]),
            vec![city as ArrayRef, zip as ArrayRef],
            None,
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("address", address.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(address),
            ],
        )
        .unwrap();
        let verdicts: Vec<_> = repeating_columns(&schema, &batch)
            .into_iter()
            .map(|(path, repeats)| (path.string(), repeats))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                ("id".to_string(), false),
                ("address.city".to_string(), true),
                ("address.zip".to_string(), false),
            ]
        );
    }
}
