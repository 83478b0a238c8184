//! Records that come twice in one run, by the key the job declares (`endpoint.key`, else
//! the table's `primary_key`): a list read by position while the collection changed, or an
//! API that repeats itself. [`KeySet`] remembers the keys written (a 128-bit digest of each,
//! 16 bytes a record) and names each key seen again; [`keep_newest`] rewrites a snapshot's
//! parts into one file holding each key's copy fetched last.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use sha2::{Digest, Sha256};

use super::PartInfo;
use super::SinkError;
use super::snapshot::{ClosedPart, widen};
use crate::storage::{Staging, Store};

/// Why the records' keys cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key field the records do not have: no duplicate could ever be found.
    #[error(
        "the key field `{field}` (endpoint.key) is not a column of the records; they have \
         {columns}"
    )]
    Missing { field: String, columns: String },
    /// A key column whose values cannot be shown as text.
    #[error("the key field `{field}` cannot be read: {message}")]
    Unreadable { field: String, message: String },
}

/// Each row's key as text (its columns' displayed values joined by U+001F) and its digest;
/// `None` where a key column is null or absent.
fn keys(batch: &RecordBatch, key: &[String]) -> Result<Vec<Option<(u128, String)>>, KeyError> {
    use std::fmt::Write;
    let options = arrow_cast::display::FormatOptions::default();
    let mut columns = Vec::with_capacity(key.len());
    for name in key {
        let Some(column) = batch.column_by_name(name) else {
            // A key that names no column would find no duplicate ever: a mistake to say.
            let columns: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            return Err(KeyError::Missing {
                field: name.clone(),
                columns: columns.join(", "),
            });
        };
        let format = arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
            .map_err(|e| KeyError::Unreadable {
                field: name.clone(),
                message: e.to_string(),
            })?;
        columns.push((column.clone(), format));
    }
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if columns.iter().any(|(c, _)| c.is_null(row)) {
            out.push(None);
            continue;
        }
        let mut text = String::new();
        for (k, (_, format)) in columns.iter().enumerate() {
            if k > 0 {
                text.push('\u{1f}');
            }
            let _ = write!(text, "{}", format.value(row));
        }
        let digest = Sha256::digest(text.as_bytes());
        let digest = u128::from_le_bytes(digest[..16].try_into().expect("16 bytes"));
        out.push(Some((digest, text)));
    }
    Ok(out)
}

/// A key seen again: the row of its batch, and the key as `id = 42`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub row: usize,
    pub key: String,
}

/// The keys of the records written so far in a run.
#[derive(Debug)]
pub struct KeySet {
    key: Vec<String>,
    seen: HashSet<u128>,
}

impl KeySet {
    pub fn new(key: Vec<String>) -> KeySet {
        KeySet {
            key,
            seen: HashSet::new(),
        }
    }

    /// Takes the keys of `batch`, and returns the rows whose key was seen before (in an
    /// earlier batch or earlier in this one).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<Vec<Duplicate>, KeyError> {
        let mut again = Vec::new();
        for (row, key) in keys(batch, &self.key)?.into_iter().enumerate() {
            if let Some((digest, text)) = key
                && !self.seen.insert(digest)
            {
                again.push(Duplicate {
                    row,
                    key: self.describe(&text),
                });
            }
        }
        Ok(again)
    }

    /// Takes the keys of a part written by an earlier run of the same snapshot (a resumed
    /// run's committed parts), without counting them as duplicates.
    pub fn load_part(&mut self, path: &Path) -> Result<(), SinkError> {
        for batch in read(path)? {
            for (digest, _) in keys(&batch, &self.key)
                .map_err(|e| SinkError::encode(path, e))?
                .into_iter()
                .flatten()
            {
                self.seen.insert(digest);
            }
        }
        Ok(())
    }

    /// `id = 42`, or `account = 7, id = 42`.
    fn describe(&self, text: &str) -> String {
        self.key
            .iter()
            .zip(text.split('\u{1f}'))
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn read(path: &Path) -> Result<Vec<RecordBatch>, SinkError> {
    let file = std::fs::File::open(path).map_err(|e| SinkError::io(path, e))?;
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| SinkError::encode(path, e))?
        .map(|b| b.map_err(|e| SinkError::encode(path, e)))
        .collect()
}

/// Rewrites a Parquet snapshot's `parts` into one file, `part-all.parquet`, holding each
/// key once: its copy fetched last (records without a whole key are all kept). Staged in
/// `staging` and returned to be published, as compaction's file is; the caller names it in
/// the checkpoint before the parts go.
pub async fn keep_newest(
    snapshot: &Store,
    staging: &Staging,
    output: &super::OutputConfig,
    schema: SchemaRef,
    parts: &[PartInfo],
    key: &[String],
) -> Result<ClosedPart, SinkError> {
    let mut inputs: Vec<PathBuf> = Vec::new();
    for part in parts {
        inputs.push(snapshot.local_copy(&part.file, staging).await?);
    }
    // Where each key was seen last: (part, row in the part).
    let mut last: HashMap<u128, (usize, usize)> = HashMap::new();
    for (p, path) in inputs.iter().enumerate() {
        let mut row = 0;
        for batch in read(path)? {
            let batch_keys = keys(&batch, key).map_err(|e| SinkError::encode(path, e))?;
            for (r, k) in batch_keys.into_iter().enumerate() {
                if let Some((digest, _)) = k {
                    last.insert(digest, (p, row + r));
                }
            }
            row += batch.num_rows();
        }
    }
    let name = super::snapshot::compacted_name(output);
    let path = staging.path(&name);
    let mut writer = output.open(&path, schema.clone())?;
    for (p, input) in inputs.iter().enumerate() {
        let mut row = 0;
        for batch in read(input)? {
            let batch_keys = keys(&batch, key).map_err(|e| SinkError::encode(input, e))?;
            let keep: arrow_array::BooleanArray = batch_keys
                .iter()
                .enumerate()
                .map(|(r, k)| Some(k.as_ref().is_none_or(|(d, _)| last[d] == (p, row + r))))
                .collect();
            row += batch.num_rows();
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| SinkError::encode(input, e))?;
            writer.write(&widen(kept, &schema).map_err(|e| SinkError::encode(input, e))?)?;
        }
    }
    let written = writer.finish()?;
    Ok(ClosedPart {
        info: PartInfo {
            file: name,
            records: written.records,
            bytes: written.bytes,
            sha256: written.sha256,
        },
        path,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_key_seen_again_is_named_within_a_batch_and_across_batches() {
        let mut set = KeySet::new(vec!["id".into()]);
        assert_eq!(set.add(&batch(&[1, 2, 3], &["a", "b", "c"])).unwrap(), []);
        let again = set.add(&batch(&[4, 2, 4], &["d", "b", "d"])).unwrap();
        assert_eq!(
            again,
            [
                Duplicate {
                    row: 1,
                    key: "id = 2".into()
                },
                Duplicate {
                    row: 2,
                    key: "id = 4".into()
                }
            ]
        );
        // Two columns: the pair is the key.
        let mut set = KeySet::new(vec!["id".into(), "name".into()]);
        assert_eq!(set.add(&batch(&[1, 1], &["a", "b"])).unwrap(), []);
        assert_eq!(
            set.add(&batch(&[1], &["b"])).unwrap()[0].key,
            "id = 1, name = b"
        );
    }
}
