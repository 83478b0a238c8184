//! A snapshot: a directory of part files that becomes complete all at once.
//!
//! ```text
//! <output dir>/<job>/<snapshot>/part-00000.parquet   durable, renamed when closed
//!                               part-00001.parquet
//!                               _manifest.json        written after the last part
//!                               _SUCCESS              written last: the snapshot is complete
//! <output dir>/<job>/latest.json                      names the newest complete snapshot
//! ```
//!
//! Parts close at page boundaries once they hold `part_records` records, so that a
//! checkpoint can say exactly which request follows the last committed record.
//!
//! The snapshot lives in a [`Store`]: parts are written in its [`Staging`] directory and
//! closed there; the run then publishes each closed part ([`Store::upload`]: in object
//! storage an upload, on disk nothing more) before its checkpoint names it. Everything
//! below is written once for disk and object storage alike.

use std::io::Write;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{BatchWriter, OutputConfig, PartInfo, SinkError};
use crate::storage::{Location, Staging, Store};

/// Writes the parts of one snapshot into a staging directory.
pub struct SnapshotWriter {
    staging: Staging,
    /// The start of part names: `part-`, or `part-0003-` for shard 3 of a sharded run.
    prefix: String,
    /// Added to part names where other machines may write too (object storage): the run's
    /// claim, so that a run that lost its claim can never overwrite a part of the run that
    /// took over.
    tag: Option<String>,
    output: OutputConfig,
    schema: SchemaRef,
    current: Option<Box<dyn BatchWriter>>,
    current_records: u64,
    /// Parts of the snapshot before this writer's first.
    before: usize,
    parts: Vec<PartInfo>,
}

/// A part closed in the staging directory, to be published under its name.
#[derive(Debug)]
pub struct ClosedPart {
    pub info: PartInfo,
    /// Where it was written.
    pub path: PathBuf,
}

impl SnapshotWriter {
    /// Continues after `parts` (empty for a new snapshot).
    /// A writer whose parts follow the `before` parts the snapshot has already (their
    /// number continues from there).
    pub fn new(staging: Staging, output: &OutputConfig, schema: SchemaRef, before: usize) -> Self {
        SnapshotWriter {
            staging,
            prefix: "part-".into(),
            tag: None,
            output: output.clone(),
            schema,
            current: None,
            current_records: 0,
            before,
            parts: Vec::new(),
        }
    }

    /// Starts part names with `prefix` (a shard's).
    pub fn named(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Ends part names with `tag` (the first characters of the run's claim).
    pub fn tagged(mut self, tag: Option<&str>) -> Self {
        self.tag = tag.map(|t| t.chars().take(8).collect());
        self
    }

    /// Whether a part is being written.
    pub fn has_open_part(&self) -> bool {
        self.current.is_some()
    }

    /// The parts this writer closed.
    pub fn parts(&self) -> &[PartInfo] {
        &self.parts
    }

    fn part_name(&self, index: usize) -> String {
        let tag = self
            .tag
            .as_ref()
            .map(|t| format!("-{t}"))
            .unwrap_or_default();
        format!(
            "{}{index:05}{tag}.{}",
            self.prefix,
            self.output.format.extension()
        )
    }

    fn open_part(&mut self) -> Result<(), SinkError> {
        let path = self
            .staging
            .path(&self.part_name(self.before + self.parts.len()));
        // A part in a directory of its own (a hive layout's `account_id=7/date=…/`): every
        // directory made, and each one's entry durable in the one above, before the part is.
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            let mut made = Vec::new();
            let mut at = Some(dir);
            while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                made.push(d.to_path_buf());
                at = d.parent();
            }
            std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
            for d in &made {
                let above = match d.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => std::path::Path::new("."),
                };
                std::fs::File::open(above)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| SinkError::io(above, e))?;
            }
        }
        self.current = Some(self.output.open(&path, self.schema.clone())?);
        self.current_records = 0;
        Ok(())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if self.current.is_none() {
            self.open_part()?;
        }
        self.current_records += batch.num_rows() as u64;
        self.current.as_mut().expect("opened above").write(batch)
    }

    /// At the end of a page: closes the part if it is full. Returns the part closed, if any.
    pub fn end_of_page(&mut self) -> Result<Option<ClosedPart>, SinkError> {
        let big = match (&self.current, self.output.part_bytes) {
            (Some(w), Some(limit)) => w.size() >= limit,
            _ => false,
        };
        if big || self.current_records >= self.output.part_records as u64 {
            self.close_part()
        } else {
            Ok(None)
        }
    }

    /// Closes the current part: complete and durable in the staging directory. A snapshot
    /// with no record at all still gets one (empty) part, so that readers find its columns.
    pub fn close_part(&mut self) -> Result<Option<ClosedPart>, SinkError> {
        if self.current.is_none() && self.before == 0 && self.parts.is_empty() {
            self.open_part()?;
        }
        let Some(writer) = self.current.take() else {
            return Ok(None);
        };
        let written = writer.finish()?;
        let info = PartInfo {
            file: self.part_name(self.before + self.parts.len()),
            records: written.records,
            bytes: written.bytes,
            sha256: written.sha256,
        };
        self.parts.push(info.clone());
        self.current_records = 0;
        Ok(Some(ClosedPart {
            info,
            path: written.path,
        }))
    }
}

/// Prepares a snapshot for a resumed run: temporary files of the killed run go, and so do
/// its parts (names starting with `prefix`: a shard touches only its own) published after
/// the last checkpoint (they will be written again from the checkpoint's position, never
/// duplicated), and a manifest or `_SUCCESS` written early. Returns what it removed.
pub async fn prepare_resume(
    snapshot: &Store,
    committed: &[PartInfo],
    prefix: &str,
) -> Result<Vec<String>, SinkError> {
    let committed: Vec<&str> = committed.iter().map(|p| p.file.as_str()).collect();
    let mut removed = clean(snapshot, &committed, prefix, "").await?;
    for name in snapshot.names().await? {
        if name == "_manifest.json" || name == "_SUCCESS" {
            snapshot.delete(&name).await?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// [`prepare_resume`] in the directory `below` (`""`: the snapshot's own; a hive layout's
/// `account_id=7/` and those under it too).
fn clean<'a>(
    snapshot: &'a Store,
    committed: &'a [&'a str],
    prefix: &'a str,
    below: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, SinkError>> + Send + 'a>>
{
    Box::pin(async move {
        let here = match below.is_empty() {
            true => snapshot.clone(),
            false => snapshot.child(below),
        };
        let path = |name: &str| match below.is_empty() {
            true => name.to_string(),
            false => format!("{below}/{name}"),
        };
        // Every temporary file of ours is hidden and ends in `.tmp` (parts, manifest,
        // marker); a shard's are its parts', and other shards may be writing theirs
        // meanwhile.
        let mut removed: Vec<String> = here
            .remove_temporaries(|of| prefix == "part-" || of.starts_with(prefix))
            .await?
            .into_iter()
            .map(|n| path(&n))
            .collect();
        for name in here.names().await? {
            let full = path(&name);
            if name.starts_with(prefix) && !committed.contains(&full.as_str()) {
                here.delete(&name).await?;
                removed.push(full);
            }
        }
        // Only the directories a hive layout makes (`name=value`).
        for dir in here.dirs().await? {
            if dir.contains('=') {
                removed.extend(clean(snapshot, committed, prefix, &path(&dir)).await?);
            }
        }
        Ok(removed)
    })
}

/// The name of a compacted snapshot's single file.
pub fn compacted_name(output: &OutputConfig) -> String {
    format!("part-all.{}", output.format.extension())
}

/// Merges `parts` into one durable file, `part-all.<ext>`, staged in `staging` and
/// returned to be published. The parts are left in place: the caller publishes and
/// checkpoints the merged file first, then removes them, so a crash at any point leaves
/// either the parts or the merged file named by the checkpoint.
pub async fn compact(
    snapshot: &Store,
    staging: &Staging,
    output: &OutputConfig,
    schema: SchemaRef,
    parts: &[PartInfo],
) -> Result<ClosedPart, SinkError> {
    let mut inputs = Vec::new();
    for part in parts {
        inputs.push(snapshot.local_copy(&part.file, staging).await?);
    }
    let name = compacted_name(output);
    let path = staging.path(&name);
    let info = match output.format {
        super::Format::Parquet => {
            let mut writer = output.open(&path, schema.clone())?;
            for part_path in &inputs {
                let reader = std::fs::File::open(part_path)
                    .map_err(|e| SinkError::io(part_path, e))
                    .and_then(|f| {
                        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                            .and_then(|b| b.build())
                            .map_err(|e| SinkError::encode(part_path, e))
                    })?;
                for batch in reader {
                    let batch = batch.map_err(|e| SinkError::encode(part_path, e))?;
                    writer.write(
                        &widen(batch, &schema).map_err(|e| SinkError::encode(part_path, e))?,
                    )?;
                }
            }
            let written = writer.finish()?;
            PartInfo {
                file: name,
                records: written.records,
                bytes: written.bytes,
                sha256: written.sha256,
            }
        }
        super::Format::Csv => {
            // Every part starts with the same header: keep the first one only.
            let header = super::csv::header(&schema).map_err(|e| SinkError::encode(&path, e))?;
            let (atomic, file) = super::AtomicFile::create(&path)?;
            let mut out = super::HashingWriter::new(file);
            for (i, part_path) in inputs.iter().enumerate() {
                let bytes = std::fs::read(part_path).map_err(|e| SinkError::io(part_path, e))?;
                let body = if i == 0 {
                    &bytes[..]
                } else {
                    bytes.strip_prefix(header.as_slice()).ok_or_else(|| {
                        SinkError::encode(part_path, "its header differs from the first part's")
                    })?
                };
                out.write_all(body).map_err(|e| SinkError::io(&path, e))?;
            }
            let (file, sha256, _) = out.finish().map_err(|e| SinkError::io(&path, e))?;
            let bytes = atomic.commit(file)?;
            PartInfo {
                file: name,
                records: parts.iter().map(|p| p.records).sum(),
                bytes,
                sha256,
            }
        }
    };
    Ok(ClosedPart { info, path })
}

/// Removes the parts of a snapshot (after compaction has replaced them).
pub async fn remove_parts(snapshot: &Store, parts: &[PartInfo]) -> Result<(), SinkError> {
    for part in parts {
        snapshot.delete(&part.file).await?;
    }
    Ok(())
}

/// Whether a snapshot's `_manifest.json` is that of the run `run_id` started at
/// `started_at`: the start time tells apart two runs given the same id (`--run-id`).
pub async fn marked_by(
    snapshot: &Store,
    run_id: &str,
    started_at: DateTime<Utc>,
) -> Result<bool, SinkError> {
    let Some((bytes, _)) = snapshot.get("_manifest.json").await? else {
        return Ok(false);
    };
    let manifest: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let started = manifest
        .as_ref()
        .and_then(|m| m["started_at"].as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    Ok(
        manifest.as_ref().and_then(|m| m["run_id"].as_str()) == Some(run_id)
            && started.is_some_and(|t| t == started_at),
    )
}

/// A batch of an earlier part, with null columns for the columns added after it (schema
/// evolution), so that all parts fit the final schema.
pub fn widen(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    // By name, in the schema's order: a part may lack columns, or hold them elsewhere.
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => widen_array(c, f.data_type()),
            None => Ok(arrow_array::new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// A column of an earlier part as the final schema has it: objects whose fields grew
/// (schema evolution inside a struct, or a list of them) get null children for the fields
/// added after the part, by name.
fn widen_array(
    array: &arrow_array::ArrayRef,
    to: &arrow_schema::DataType,
) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    if array.data_type() == to {
        return Ok(array.clone());
    }
    match (array.data_type(), to) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = array.as_struct();
            let children = fields
                .iter()
                .map(|f| match s.column_by_name(f.name()) {
                    Some(c) => widen_array(c, f.data_type()),
                    None => Ok(arrow_array::new_null_array(f.data_type(), s.len())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(std::sync::Arc::new(arrow_array::StructArray::try_new(
                fields.clone(),
                children,
                s.nulls().cloned(),
            )?))
        }
        (DataType::List(_), DataType::List(item)) => {
            let l = array.as_list::<i32>();
            let values = widen_array(l.values(), item.data_type())?;
            Ok(std::sync::Arc::new(arrow_array::ListArray::try_new(
                item.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?))
        }
        _ => arrow_cast::cast(array, to),
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `_manifest.json`: what a complete snapshot holds.
#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub job: String,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The first request, e.g. `GET https://api.example.com/v1/events`.
    pub endpoint: String,
    pub format: String,
    pub records: u64,
    /// The records the API stated, where it said (it differs from `records` only with
    /// `on_count_mismatch = "warn"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stated_records: Option<u64>,
    pub parts: Vec<PartInfo>,
    pub schema: Vec<ColumnInfo>,
    /// Values written as null because they could not be read, per column.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub invalid_values_nulled: std::collections::BTreeMap<String, u64>,
    /// Values of fields the columns lack, dropped (`schema.drift = "ignore"`), per field.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped_fields: std::collections::BTreeMap<String, u64>,
    /// Records whose incremental cursor value was past the run's start: written, but left
    /// out of the high-water mark.
    #[serde(skip_serializing_if = "is_zero")]
    pub future_marks: u64,
    /// Records whose key came before in the run, left out (`on_duplicate = "keep_newest"`).
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicates: u64,
    /// A sliced run's slices and their records: per partition, consecutive windows together.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceCount>,
}

/// The records of one partition in a run of windows (or the whole partition).
#[derive(Clone, Debug, Serialize)]
pub struct SliceCount {
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub partition: std::collections::BTreeMap<String, serde_json::Value>,
    /// The windows' span, `[from, to)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    pub records: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    /// For a column added by schema evolution: the first part that has it (earlier parts
    /// lack it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_part: Option<usize>,
}

impl ColumnInfo {
    pub fn of(schema: &arrow_schema::Schema, added: &[(String, usize)]) -> Vec<ColumnInfo> {
        schema
            .fields()
            .iter()
            .map(|f| ColumnInfo {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
                first_part: added.iter().find(|(n, _)| n == f.name()).map(|(_, p)| *p),
            })
            .collect()
    }
}

/// `latest.json`, beside the snapshots: the newest complete one.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Latest {
    pub job: String,
    pub run_id: String,
    pub snapshot: Location,
    pub finished_at: DateTime<Utc>,
    pub records: u64,
}

impl Latest {
    fn of(manifest: &Manifest, snapshot: &Location) -> Latest {
        Latest {
            job: manifest.job.clone(),
            run_id: manifest.run_id.clone(),
            snapshot: snapshot.clone(),
            finished_at: manifest.finished_at,
            records: manifest.records,
        }
    }
}

/// Completes a snapshot ([`mark_complete`]) and makes it the job's latest ([`publish`]).
pub async fn finalize(
    snapshot: &Store,
    manifest: &Manifest,
    retain: Option<usize>,
) -> Result<(), SinkError> {
    mark_complete(snapshot, manifest).await?;
    publish(snapshot, manifest, retain).await
}

/// Marks a snapshot complete: in object storage removes `part-*` objects the manifest does
/// not name (a run that lost its claim), so that a reader listing `part-*` finds exactly the
/// manifest's; then writes `_manifest.json`, then `_SUCCESS`, each durable.
pub async fn mark_complete(snapshot: &Store, manifest: &Manifest) -> Result<(), SinkError> {
    // Where writers on other machines may race (object storage), a run that lost its claim
    // may have uploaded a part after the last checkpoint; on one disk the lock excludes
    // that, and resuming already removed what a killed run left.
    if snapshot.shared() {
        for name in snapshot.names().await? {
            if name.starts_with("part-") && !manifest.parts.iter().any(|p| p.file == name) {
                snapshot.delete(&name).await?;
            }
        }
    }
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    snapshot.put("_manifest.json", json.into()).await?;
    snapshot.put("_SUCCESS", bytes::Bytes::new()).await?;
    Ok(())
}

/// Makes a complete snapshot the job's latest: `latest.json` one level up and the `latest`
/// link (`latest.txt` in object storage), then prunes old complete snapshots of the job
/// beyond `retain`.
pub async fn publish(
    snapshot: &Store,
    manifest: &Manifest,
    retain: Option<usize>,
) -> Result<(), SinkError> {
    let Some(parent) = snapshot.parent() else {
        return Ok(());
    };
    // A run killed while replacing latest.json left its temporary file.
    let _ = parent.remove_temporaries(|of| of == "latest.json").await;
    let latest = Latest::of(manifest, snapshot.location());
    let json = serde_json::to_vec_pretty(&latest).expect("serializes");
    parent.put("latest.json", json.into()).await?;
    // The same for tools that open a path: `latest` on disk, `latest.txt` in object storage.
    let _ = parent.remove_temporaries(|of| of == "latest").await;
    let name = snapshot.location().name().unwrap_or_default().to_string();
    parent.point("latest", &name).await?;
    if let Some(keep) = retain {
        prune(&parent, snapshot.location(), &manifest.job, keep).await?;
    }
    Ok(())
}

/// Removes the oldest complete snapshots of `job` in `parent` so that `keep` remain. Only
/// snapshots with a `_SUCCESS` and a manifest naming the job are touched; the current one
/// always stays.
async fn prune(
    parent: &Store,
    current: &Location,
    job: &str,
    keep: usize,
) -> Result<(), SinkError> {
    let mut complete: Vec<(DateTime<Utc>, String)> = Vec::new();
    for dir in parent.dirs().await? {
        let snapshot = parent.child(&dir);
        if !snapshot.exists("_SUCCESS").await? {
            continue;
        }
        let manifest = snapshot.get("_manifest.json").await?;
        let Some(finished) = manifest.and_then(|(text, _)| finished_at(&text, job)) else {
            continue;
        };
        complete.push((finished, dir));
    }
    for dir in oldest_beyond(complete, keep) {
        let doomed = parent.child(&dir);
        if doomed.location() == current {
            continue;
        }
        // _SUCCESS first: a reader never sees a half-deleted snapshot as complete.
        doomed.delete("_SUCCESS").await?;
        doomed.remove_all().await?;
        tracing::info!(snapshot = %doomed.location(), "pruned an old snapshot (retain)");
    }
    Ok(())
}

/// When a snapshot of `job` finished, from its manifest; `None` for another job's snapshot
/// or a manifest that does not read.
fn finished_at(manifest: &[u8], job: &str) -> Option<DateTime<Utc>> {
    let m: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if m["job"] != job {
        return None;
    }
    Some(
        m["finished_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
    )
}

/// The complete snapshots to prune: all but the newest `keep` (at least one stays).
fn oldest_beyond<T: Ord>(mut complete: Vec<(DateTime<Utc>, T)>, keep: usize) -> Vec<T> {
    complete.sort();
    let excess = complete.len().saturating_sub(keep.max(1));
    complete.into_iter().take(excess).map(|(_, s)| s).collect()
}
