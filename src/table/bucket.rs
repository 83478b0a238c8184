//! The rows of the current table hashed into buckets by key, and one bucket merged alone:
//! its previous rows and the run's, newest version per key, tombstones out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, SortOptions};

use super::TableError;
use super::config::TombstoneConfig;

/// The key columns of `batch`, or an error naming the one missing.
fn key_columns(batch: &RecordBatch, key: &[String]) -> Result<Vec<ArrayRef>, TableError> {
    key.iter()
        .map(|name| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                TableError::Data(format!(
                    "the primary key field `{name}` is not a column of the snapshot (its \
                     columns: {})",
                    batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

/// The bucket of each row's key, or `None` where a key column is null: FNV-1a of the
/// key's canonical text — each key column's displayed value, joined by U+001F — modulo the
/// number of buckets. Display text does not change between versions of apisnap or arrow,
/// so a key stays in its bucket across runs; when the table doubles its buckets, the rows
/// of bucket `i` go to `i` and `i + old count`.
pub(super) fn buckets_of(
    batch: &RecordBatch,
    key: &[String],
    buckets: u32,
) -> Result<Vec<Option<u32>>, TableError> {
    use std::fmt::Write;
    let columns = key_columns(batch, key)?;
    let options = arrow_cast::display::FormatOptions::default();
    let mut formatters = Vec::with_capacity(columns.len());
    for column in &columns {
        formatters.push(
            arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| TableError::Data(e.to_string()))?,
        );
    }
    let mut text = String::new();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if columns.iter().any(|c| c.is_null(row)) {
            out.push(None);
            continue;
        }
        text.clear();
        for (k, f) in formatters.iter().enumerate() {
            if k > 0 {
                text.push('\u{1f}');
            }
            let _ = write!(text, "{}", f.value(row));
        }
        out.push(Some(bucket_of(&text, buckets)));
    }
    Ok(out)
}

fn bucket_of(key: &str, buckets: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % buckets as u64) as u32
}

/// The rows of `batch` whose key falls in each bucket, in their order; rows without a key
/// are counted, not kept.
pub(super) fn split(
    batch: &RecordBatch,
    key: &[String],
    buckets: u32,
) -> Result<(Vec<(u32, RecordBatch)>, u64), TableError> {
    // A counting sort of the rows by bucket (no hashing per row: profiles showed it).
    let of = buckets_of(batch, key, buckets)?;
    let mut starts = vec![0u32; buckets as usize + 1];
    let mut without_key = 0;
    for b in &of {
        match b {
            Some(b) => starts[*b as usize + 1] += 1,
            None => without_key += 1,
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut order = vec![0u32; of.len() - without_key as usize];
    for (row, b) in of.iter().enumerate() {
        if let Some(b) = b {
            order[next[*b as usize] as usize] = row as u32;
            next[*b as usize] += 1;
        }
    }
    let mut out = Vec::new();
    for b in 0..buckets as usize {
        let (from, to) = (starts[b] as usize, starts[b + 1] as usize);
        if from < to {
            let indices = UInt32Array::from(order[from..to].to_vec());
            out.push((b as u32, take(batch, &indices)?));
        }
    }
    Ok((out, without_key))
}

fn take(batch: &RecordBatch, indices: &dyn Array) -> Result<RecordBatch, TableError> {
    arrow_select::take::take_record_batch(batch, indices).map_err(arrow)
}

fn arrow(e: arrow_schema::ArrowError) -> TableError {
    TableError::Data(e.to_string())
}

/// The run's rows by bucket, spilled to disk as they are read (Arrow IPC files, a few
/// thousand rows each), so that a merge holds one bucket's rows at a time.
pub(super) struct Spill {
    dir: tempfile::TempDir,
    buffered: HashMap<u32, (Vec<RecordBatch>, usize)>,
    files: HashMap<u32, Vec<PathBuf>>,
    buffered_rows: usize,
    count: usize,
    pub(super) rows: u64,
    pub(super) without_key: u64,
}

/// Rows a bucket buffers before it is written out; rows all buckets buffer at most.
const FLUSH_ROWS: usize = 8_192;
const BUFFER_ROWS: usize = 65_536;

impl Spill {
    pub(super) fn new() -> Result<Spill, TableError> {
        let dir = tempfile::Builder::new()
            .prefix("apisnap-table-")
            .tempdir()
            .map_err(|e| TableError::Data(format!("cannot make a spill directory: {e}")))?;
        Ok(Spill {
            dir,
            buffered: HashMap::new(),
            files: HashMap::new(),
            buffered_rows: 0,
            count: 0,
            rows: 0,
            without_key: 0,
        })
    }

    pub(super) fn add(
        &mut self,
        batch: &RecordBatch,
        key: &[String],
        buckets: u32,
    ) -> Result<(), TableError> {
        let (parts, without_key) = split(batch, key, buckets)?;
        self.without_key += without_key;
        for (bucket, rows) in parts {
            self.rows += rows.num_rows() as u64;
            self.buffered_rows += rows.num_rows();
            let entry = self.buffered.entry(bucket).or_default();
            entry.1 += rows.num_rows();
            entry.0.push(rows);
            if entry.1 >= FLUSH_ROWS {
                self.flush(bucket)?;
            }
        }
        while self.buffered_rows > BUFFER_ROWS {
            let largest = self
                .buffered
                .iter()
                .max_by_key(|(_, (_, n))| *n)
                .map(|(b, _)| *b)
                .expect("rows are buffered");
            self.flush(largest)?;
        }
        Ok(())
    }

    fn flush(&mut self, bucket: u32) -> Result<(), TableError> {
        let Some((batches, rows)) = self.buffered.remove(&bucket) else {
            return Ok(());
        };
        self.buffered_rows -= rows;
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let path = self
            .dir
            .path()
            .join(format!("{bucket}-{}.arrow", self.count));
        self.count += 1;
        let file = std::fs::File::create(&path)
            .map_err(|e| TableError::Data(format!("{}: {e}", path.display())))?;
        let schema = first.schema();
        let mut writer =
            arrow_ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), &schema)
                .map_err(arrow)?;
        // One message per flush: the batches split off a page are a few rows each, and a
        // message per few rows cost more than the rows themselves.
        let whole = arrow_select::concat::concat_batches(&schema, &batches).map_err(arrow)?;
        drop(batches);
        writer.write(&whole).map_err(arrow)?;
        writer.finish().map_err(arrow)?;
        self.files.entry(bucket).or_default().push(path);
        Ok(())
    }

    /// Writes out what is still buffered.
    pub(super) fn finish(&mut self) -> Result<(), TableError> {
        let buckets: Vec<u32> = self.buffered.keys().copied().collect();
        for bucket in buckets {
            self.flush(bucket)?;
        }
        Ok(())
    }

    pub(super) fn has(&self, bucket: u32) -> bool {
        self.files.contains_key(&bucket)
    }

    /// The run's rows of `bucket`, in the order they were added.
    pub(super) fn read(&self, bucket: u32) -> Result<Vec<RecordBatch>, TableError> {
        let mut out = Vec::new();
        for path in self.files.get(&bucket).into_iter().flatten() {
            let file = std::fs::File::open(path)
                .map_err(|e| TableError::Data(format!("{}: {e}", path.display())))?;
            let reader = arrow_ipc::reader::FileReader::try_new(file, None).map_err(arrow)?;
            for batch in reader {
                out.push(batch.map_err(arrow)?);
            }
        }
        Ok(out)
    }
}

/// The columns of the merged table: the run's, then those only the previous table had
/// (a field the API no longer sends stays, null in new rows). A column whose type changed
/// is an error: the table would hold two kinds of values under one name.
pub(super) fn union_schema(
    previous: Option<&Schema>,
    run: &Schema,
) -> Result<SchemaRef, TableError> {
    let mut fields: Vec<Field> = run
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if let Some(previous) = previous {
        for old in previous.fields() {
            match run.field_with_name(old.name()) {
                Ok(new) if new.data_type() != old.data_type() => {
                    return Err(TableError::Data(format!(
                        "the column `{}` is {} in the current table but {} in this run's \
                         snapshot: declare its type in a column file (`schema.file`) so that \
                         every run writes it alike",
                        old.name(),
                        old.data_type(),
                        new.data_type()
                    )));
                }
                Ok(_) => {}
                Err(_) => fields.push(old.as_ref().clone().with_nullable(true)),
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// `batch` with the columns of `schema`, in its order, null where it lacks one (the
/// snapshot's own widening, for the table's errors).
pub(super) fn widen(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, TableError> {
    crate::sink::snapshot::widen(batch.clone(), schema).map_err(arrow)
}

/// What merging one bucket did.
#[derive(Debug, Default)]
pub(super) struct Merged {
    /// Keys a tombstone removed.
    pub(super) deleted: u64,
}

/// How rows are merged: by key, newest first, tombstones out.
pub(super) struct Rule<'a> {
    pub(super) key: &'a [String],
    pub(super) order_by: Option<&'a str>,
    pub(super) tombstone: Option<&'a TombstoneConfig>,
    /// Now, and how long a deletion is remembered (microseconds since the epoch).
    pub(super) now: i64,
    pub(super) remember: i64,
}

/// The column of a remembered tombstone that says when its key was deleted.
pub(super) const DELETED_AT: &str = "_apisnap_deleted_at";

/// What one bucket holds after a merge: its rows, and the tombstones it remembers (each
/// with [`DELETED_AT`]), so that no version older than a deletion brings its key back.
pub(super) struct Bucket {
    pub(super) rows: Option<RecordBatch>,
    pub(super) tombstones: Option<RecordBatch>,
}

/// The schema of a bucket's remembered tombstones: the table's, and when each was deleted.
pub(super) fn tombstone_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<arrow_schema::FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        DELETED_AT,
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )));
    Arc::new(Schema::new(fields))
}

/// Writes `batch` as an Arrow IPC file: a bucket's tombstones, kept beside its Parquet file
/// (not `*.parquet`, which readers take as the table's rows).
pub(super) fn write_ipc(path: &std::path::Path, batch: &RecordBatch) -> Result<(), TableError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| TableError::Data(format!("{}: {e}", dir.display())))?;
    }
    let file = std::fs::File::create(path)
        .map_err(|e| TableError::Data(format!("{}: {e}", path.display())))?;
    let mut writer = arrow_ipc::writer::FileWriter::try_new(
        std::io::BufWriter::new(file),
        batch.schema().as_ref(),
    )
    .map_err(arrow)?;
    writer.write(batch).map_err(arrow)?;
    writer.finish().map_err(arrow)?;
    Ok(())
}

/// Reads an Arrow IPC file written by [`write_ipc`].
pub(super) fn read_ipc(path: &std::path::Path) -> Result<Vec<RecordBatch>, TableError> {
    let file = std::fs::File::open(path)
        .map_err(|e| TableError::Data(format!("{}: {e}", path.display())))?;
    let reader = arrow_ipc::reader::FileReader::try_new(file, None).map_err(arrow)?;
    reader.map(|b| b.map_err(arrow)).collect()
}

/// Merges a bucket: `old` (the previous table's rows, one per key), `remembered` (its
/// tombstones, with when each key was deleted), then `new` (the run's, in snapshot order);
/// per key the row with the highest `order_by` wins, ties going to the later row; a winner
/// that is a tombstone removes the key, and is remembered (until `rule.remember` has
/// passed), so that a version older than the deletion sent again later (a lookback window,
/// a late replica) loses to it. The rows are sorted by key.
pub(super) fn merge(
    old: Vec<RecordBatch>,
    remembered: Vec<RecordBatch>,
    new: Vec<RecordBatch>,
    schema: &SchemaRef,
    rule: &Rule<'_>,
) -> Result<(Bucket, Merged), TableError> {
    // When each row's key was deleted: only remembered tombstones have a time.
    let mut deleted_at: Vec<Option<i64>> = Vec::new();
    let mut batches = Vec::with_capacity(old.len() + remembered.len() + new.len());
    for b in &old {
        deleted_at.extend(std::iter::repeat_n(None, b.num_rows()));
        batches.push(widen(b, schema)?);
    }
    for b in &remembered {
        let at = b
            .column_by_name(DELETED_AT)
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::TimestampMicrosecondType>())
            .ok_or_else(|| TableError::Data("a tombstone file without its times".into()))?;
        deleted_at.extend(at.iter());
        batches.push(widen(b, schema)?);
    }
    for b in &new {
        deleted_at.extend(std::iter::repeat_n(None, b.num_rows()));
        batches.push(widen(b, schema)?);
    }
    let all = arrow_select::concat::concat_batches(schema, &batches).map_err(arrow)?;
    // One copy of the bucket at a time.
    drop((batches, old, remembered, new));
    let empty = || Bucket {
        rows: None,
        tombstones: None,
    };
    if all.num_rows() == 0 {
        return Ok((empty(), Merged::default()));
    }
    // Sorted by the key columns themselves (newest first within a key), then one row per
    // run of equal keys. Rows reach a bucket only with a whole key.
    let keys = key_columns(&all, rule.key)?;
    let seq = UInt64Array::from_iter_values(0..all.num_rows() as u64);
    let mut sort: Vec<arrow_ord::sort::SortColumn> = keys
        .iter()
        .map(|k| arrow_ord::sort::SortColumn {
            values: k.clone(),
            options: None,
        })
        .collect();
    let newest_first = Some(SortOptions {
        descending: true,
        nulls_first: false,
    });
    if let Some(order_by) = rule.order_by {
        let column = all.column_by_name(order_by).ok_or_else(|| {
            TableError::Data(format!(
                "the `order_by` field `{order_by}` is not a column of the snapshot"
            ))
        })?;
        sort.push(arrow_ord::sort::SortColumn {
            values: column.clone(),
            options: newest_first,
        });
    }
    sort.push(arrow_ord::sort::SortColumn {
        values: Arc::new(seq),
        options: newest_first,
    });
    let order = arrow_ord::sort::lexsort_to_indices(&sort, None).map_err(arrow)?;
    let same: Vec<arrow_ord::ord::DynComparator> = keys
        .iter()
        .map(|k| arrow_ord::ord::make_comparator(k.as_ref(), k.as_ref(), SortOptions::default()))
        .collect::<Result<_, _>>()
        .map_err(arrow)?;
    let mut winners = Vec::new();
    let mut last: Option<usize> = None;
    for i in order.values() {
        let i = *i as usize;
        let new_key = match last {
            None => true,
            Some(j) => same
                .iter()
                .any(|cmp| cmp(i, j) != std::cmp::Ordering::Equal),
        };
        if new_key {
            winners.push(i as u32);
            last = Some(i);
        }
    }
    drop((order, same, keys));
    let won_at: Vec<Option<i64>> = winners.iter().map(|&i| deleted_at[i as usize]).collect();
    let winners = take(&all, &UInt32Array::from(winners))?;
    drop(all);
    let Some(t) = rule.tombstone else {
        let rows = (winners.num_rows() > 0).then_some(winners);
        return Ok((
            Bucket {
                rows,
                tombstones: None,
            },
            Merged::default(),
        ));
    };
    let dead = tombstones(&winners, t)?;
    let alive = arrow::not(&dead);
    let filter = |mask: &BooleanArray| {
        arrow_select::filter::filter_record_batch(&winners, mask).map_err(arrow)
    };
    let rows = filter(&alive)?;
    // The deleted keys, each with when: remembered ones keep their time, new ones now;
    // those deleted longer ago than remembered are forgotten.
    let mut deleted = 0;
    let mut times = Vec::new();
    let keep: BooleanArray = dead
        .iter()
        .zip(&won_at)
        .map(|(dead, at)| {
            if dead != Some(true) {
                return Some(false);
            }
            let at = at.unwrap_or_else(|| {
                deleted += 1;
                rule.now
            });
            // `remember_deletions_days = 0`: not remembered at all, as before tombstones were.
            let kept = rule.remember > 0 && rule.now - at <= rule.remember;
            if kept {
                times.push(at);
            }
            Some(kept)
        })
        .collect();
    let dead_rows = filter(&keep)?;
    let tombstones = if dead_rows.num_rows() > 0 {
        let mut columns = dead_rows.columns().to_vec();
        columns.push(Arc::new(
            arrow_array::TimestampMicrosecondArray::from(times).with_timezone("UTC"),
        ));
        Some(RecordBatch::try_new(tombstone_schema(schema), columns).map_err(arrow)?)
    } else {
        None
    };
    Ok((
        Bucket {
            rows: (rows.num_rows() > 0).then_some(rows),
            tombstones,
        },
        Merged { deleted },
    ))
}

mod arrow {
    use arrow_array::BooleanArray;

    pub(super) fn not(values: &BooleanArray) -> BooleanArray {
        values.iter().map(|v| Some(!v.unwrap_or(false))).collect()
    }
}

/// Which rows of `batch` match the tombstone rule.
fn tombstones(batch: &RecordBatch, rule: &TombstoneConfig) -> Result<BooleanArray, TableError> {
    let column = locate(batch, &rule.field).ok_or_else(|| {
        TableError::Data(format!(
            "the tombstone field `{}` is not a column of the snapshot",
            rule.field
        ))
    })?;
    let options = arrow_cast::display::FormatOptions::default();
    let formatter = arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
        .map_err(|e| TableError::Data(e.to_string()))?;
    Ok((0..batch.num_rows())
        .map(|row| {
            if column.is_null(row) {
                return Some(false);
            }
            let text = formatter.value(row).to_string();
            Some(match &rule.equals {
                Some(equals) => text == *equals,
                None => !(column.data_type() == &DataType::Boolean && text == "false"),
            })
        })
        .collect())
}

/// The column `field` names: a top-level column, or a JSON pointer into struct columns.
fn locate(batch: &RecordBatch, field: &str) -> Option<ArrayRef> {
    let Some(pointer) = field.strip_prefix('/') else {
        return batch.column_by_name(field).cloned();
    };
    let mut names = pointer
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"));
    let mut column = batch.column_by_name(&names.next()?)?.clone();
    for name in names {
        // Below a null struct the decoder wrote null children: no tombstone there.
        column = column.as_struct_opt()?.column_by_name(&name)?.clone();
    }
    Some(column)
}
