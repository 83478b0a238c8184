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
//! In object storage (`dir = "s3://…"`) the same layout holds, with keys for files: a part
//! is written to a local spool directory and then uploaded complete (one PUT, or a
//! multipart upload completed last), so it is never visible under its key half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{BatchWriter, OutputConfig, SinkError, sync_dir};
use crate::checkpoint::PartInfo;
use crate::storage::{Location, Remote, block_on};

/// Where a snapshot's files go.
#[derive(Clone, Debug)]
pub enum Target {
    Dir(PathBuf),
    Remote(Remote),
}

impl Target {
    /// The snapshot directory as the checkpoint names it: a path, or an object-storage URL.
    pub fn of(dir: &Path) -> Result<Target, SinkError> {
        match dir.to_str().map(Location::parse) {
            Some(Ok(Location::Remote(remote))) => Ok(Target::Remote(remote)),
            Some(Err(e)) => Err(e.into()),
            _ => Ok(Target::Dir(dir.to_path_buf())),
        }
    }
}

/// What a snapshot in object storage asks of the run that writes it.
pub trait Claim: Send {
    /// Before each upload: fails if the run no longer owns the job's state.
    fn check(&self) -> Result<(), SinkError>;
    /// A multipart upload began (`Some`) or ended (`None`): kept where a run resuming
    /// after a kill finds it and aborts it.
    fn uploading(&self, upload: Option<&crate::storage::PendingUpload>) -> Result<(), SinkError>;
}

/// Writes the parts of one snapshot.
pub struct SnapshotWriter {
    target: Target,
    /// Where part files are written: the snapshot directory itself, or a spool directory
    /// from which they are uploaded.
    dir: PathBuf,
    _spool: Option<tempfile::TempDir>,
    /// The start of part names: `part-`, or `part-0003-` for shard 3 of a sharded run.
    prefix: String,
    /// Added to part names in object storage: the run's claim, so that a run that lost its
    /// claim can never overwrite a part of the run that took over.
    tag: Option<String>,
    /// The run's hold on the job's state, asked before each upload.
    claim: Option<Box<dyn Claim>>,
    output: OutputConfig,
    schema: SchemaRef,
    current: Option<Box<dyn BatchWriter>>,
    current_records: u64,
    parts: Vec<PartInfo>,
}

impl SnapshotWriter {
    /// Continues after `parts` (empty for a new snapshot).
    pub fn new(
        target: Target,
        output: &OutputConfig,
        schema: SchemaRef,
        parts: Vec<PartInfo>,
    ) -> Result<Self, SinkError> {
        let (dir, spool) = match &target {
            Target::Dir(dir) => (dir.clone(), None),
            Target::Remote(_) => {
                let spool = tempfile::Builder::new()
                    .prefix("apisnap-spool-")
                    .tempdir()
                    .map_err(|e| SinkError::io(&std::env::temp_dir(), e))?;
                (spool.path().to_path_buf(), Some(spool))
            }
        };
        Ok(SnapshotWriter {
            target,
            dir,
            _spool: spool,
            prefix: "part-".into(),
            tag: None,
            claim: None,
            output: output.clone(),
            schema,
            current: None,
            current_records: 0,
            parts,
        })
    }

    /// Starts part names with `prefix` (a shard's).
    pub fn named(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// In object storage: names parts with `tag` (the run's claim) and keeps `claim`
    /// informed of each upload.
    pub fn claimed(mut self, tag: Option<&str>, claim: impl Claim + 'static) -> Self {
        if matches!(self.target, Target::Remote(_)) {
            self.tag = tag.map(|t| t.chars().take(8).collect());
            self.claim = Some(Box::new(claim));
        }
        self
    }

    /// Whether a part is being written.
    pub fn has_open_part(&self) -> bool {
        self.current.is_some()
    }

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

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if self.current.is_none() {
            let path = self.dir.join(self.part_name(self.parts.len()));
            self.current = Some(self.output.open(&path, self.schema.clone())?);
            self.current_records = 0;
        }
        self.current_records += batch.num_rows() as u64;
        self.current.as_mut().expect("opened above").write(batch)
    }

    /// At the end of a page: closes the part if it is full. Returns the part closed, if any.
    pub fn end_of_page(&mut self) -> Result<Option<PartInfo>, SinkError> {
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

    /// Closes the current part: durable under its final name. A snapshot with no record at
    /// all still gets one (empty) part, so that readers find its columns.
    pub fn close_part(&mut self) -> Result<Option<PartInfo>, SinkError> {
        if self.current.is_none() && self.parts.is_empty() {
            let path = self.dir.join(self.part_name(0));
            self.current = Some(self.output.open(&path, self.schema.clone())?);
        }
        let Some(writer) = self.current.take() else {
            return Ok(None);
        };
        let written = writer.finish()?;
        let file = self.part_name(self.parts.len());
        if let Target::Remote(remote) = &self.target {
            let claim = self.claim.as_deref();
            if let Some(claim) = claim {
                claim.check()?;
            }
            // Only a multipart upload is noted (and the note cleared): a single PUT leaves
            // nothing behind to abort.
            let mut noted = false;
            block_on(remote.upload(&file, &written.path, |upload| {
                noted = claim.is_some();
                claim.map_or(Ok(()), |c| c.uploading(Some(upload)))
            }))?;
            if let Some(claim) = claim.filter(|_| noted) {
                claim.uploading(None)?;
            }
            std::fs::remove_file(&written.path).map_err(|e| SinkError::io(&written.path, e))?;
        }
        let part = PartInfo {
            file,
            records: written.records,
            bytes: written.bytes,
            sha256: written.sha256,
        };
        self.parts.push(part.clone());
        self.current_records = 0;
        Ok(Some(part))
    }
}

/// Prepares a snapshot directory for a resumed run: temporary files of the killed run go, and
/// so do its parts (names starting with `prefix`: a shard touches only its own) renamed
/// after the last checkpoint (they will be written again from the checkpoint's position,
/// never duplicated).
pub fn prepare_resume(
    dir: &Path,
    committed: &[PartInfo],
    prefix: &str,
) -> Result<Vec<PathBuf>, SinkError> {
    if let Target::Remote(remote) = Target::of(dir)? {
        return block_on(async {
            let mut removed = Vec::new();
            for name in remote.list().await? {
                let uncommitted_part =
                    name.starts_with(prefix) && !committed.iter().any(|p| p.file == name);
                if uncommitted_part || name == "_manifest.json" || name == "_SUCCESS" {
                    remote.delete(&name).await?;
                    removed.push(PathBuf::from(remote.url_of(&name)));
                }
            }
            Ok(removed)
        });
    }
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(SinkError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SinkError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Every temporary file of ours is hidden and ends in `.tmp` (parts, manifest, marker);
        // a shard's are its parts', and other shards may be writing theirs meanwhile.
        let stale_temp = name.ends_with(".tmp")
            && if prefix == "part-" {
                name.starts_with('.')
            } else {
                name.starts_with(&format!(".{prefix}"))
            };
        let uncommitted_part =
            name.starts_with(prefix) && !committed.iter().any(|p| p.file == name);
        let early_marker = name == "_manifest.json" || name == "_SUCCESS";
        if stale_temp || uncommitted_part || early_marker {
            std::fs::remove_file(entry.path()).map_err(|e| SinkError::io(&entry.path(), e))?;
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The name of a compacted snapshot's single file.
pub fn compacted_name(output: &OutputConfig) -> String {
    format!("part-all.{}", output.format.extension())
}

/// Merges `parts` into one durable file, `part-all.<ext>`, and returns it. The parts are
/// left in place: the caller checkpoints the merged file first, then removes them, so a crash
/// at any point leaves either the parts or the merged file named by the checkpoint.
pub fn compact(
    dir: &Path,
    output: &OutputConfig,
    schema: SchemaRef,
    parts: &[PartInfo],
) -> Result<PartInfo, SinkError> {
    if let Target::Remote(remote) = Target::of(dir)? {
        // Merged on this machine from downloaded copies, then uploaded like a part.
        let spool = tempfile::Builder::new()
            .prefix("apisnap-compact-")
            .tempdir()
            .map_err(|e| SinkError::io(&std::env::temp_dir(), e))?;
        for part in parts {
            let bytes = block_on(remote.get(&part.file))?.ok_or_else(|| {
                SinkError::encode(
                    Path::new(&remote.url_of(&part.file)),
                    "the part named by the checkpoint is missing",
                )
            })?;
            let path = spool.path().join(&part.file);
            std::fs::write(&path, &bytes.0).map_err(|e| SinkError::io(&path, e))?;
        }
        let merged = compact(spool.path(), output, schema, parts)?;
        // Not recorded for abort after a kill: the merged file is re-made on resume under the
        // same key, which a fresh upload replaces.
        block_on(
            remote.upload(&merged.file, &spool.path().join(&merged.file), |_| {
                Ok::<(), SinkError>(())
            }),
        )?;
        return Ok(merged);
    }
    let name = compacted_name(output);
    let path = dir.join(&name);
    match output.format {
        super::Format::Parquet => {
            let mut writer = output.open(&path, schema.clone())?;
            for part in parts {
                let part_path = dir.join(&part.file);
                let reader = std::fs::File::open(&part_path)
                    .map_err(|e| SinkError::io(&part_path, e))
                    .and_then(|f| {
                        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                            .and_then(|b| b.build())
                            .map_err(|e| SinkError::encode(&part_path, e))
                    })?;
                for batch in reader {
                    let batch = batch.map_err(|e| SinkError::encode(&part_path, e))?;
                    writer.write(
                        &widen(batch, &schema).map_err(|e| SinkError::encode(&part_path, e))?,
                    )?;
                }
            }
            let written = writer.finish()?;
            Ok(PartInfo {
                file: name,
                records: written.records,
                bytes: written.bytes,
                sha256: written.sha256,
            })
        }
        super::Format::Csv => {
            // Every part starts with the same header: keep the first one only.
            let header = super::csv::header(&schema).map_err(|e| SinkError::encode(&path, e))?;
            let (atomic, file) = super::AtomicFile::create(&path)?;
            let mut out = super::HashingWriter::new(file);
            for (i, part) in parts.iter().enumerate() {
                let part_path = dir.join(&part.file);
                let bytes = std::fs::read(&part_path).map_err(|e| SinkError::io(&part_path, e))?;
                let body = if i == 0 {
                    &bytes[..]
                } else {
                    bytes.strip_prefix(header.as_slice()).ok_or_else(|| {
                        SinkError::encode(&part_path, "its header differs from the first part's")
                    })?
                };
                out.write_all(body).map_err(|e| SinkError::io(&path, e))?;
            }
            let (file, sha256, _) = out.finish().map_err(|e| SinkError::io(&path, e))?;
            let bytes = atomic.commit(file)?;
            Ok(PartInfo {
                file: name,
                records: parts.iter().map(|p| p.records).sum(),
                bytes,
                sha256,
            })
        }
    }
}

/// Removes the parts of a snapshot (after compaction has replaced them).
pub fn remove_parts(dir: &Path, parts: &[PartInfo]) -> Result<(), SinkError> {
    match Target::of(dir)? {
        Target::Remote(remote) => block_on(async {
            for part in parts {
                remote.delete(&part.file).await?;
            }
            Ok(())
        }),
        Target::Dir(dir) => {
            for part in parts {
                let path = dir.join(&part.file);
                std::fs::remove_file(&path).map_err(|e| SinkError::io(&path, e))?;
            }
            sync_dir(&dir)
        }
    }
}

/// Removes a snapshot's `_SUCCESS`, so that no reader takes it for complete while it is
/// written again (a second run into a snapshot of the same name).
pub fn unmark(dir: &Path) -> Result<(), SinkError> {
    match Target::of(dir)? {
        Target::Remote(remote) => Ok(block_on(remote.delete("_SUCCESS"))?),
        Target::Dir(dir) => {
            let _ = std::fs::remove_file(dir.join("_SUCCESS"));
            Ok(())
        }
    }
}

/// A batch of an earlier part, with null columns for the columns added after it (schema
/// evolution), so that all parts fit the final schema.
fn widen(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
    if batch.schema().fields().len() == schema.fields().len() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow_array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
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
    pub parts: Vec<PartInfo>,
    pub schema: Vec<ColumnInfo>,
    /// Values written as null because they could not be read, per column.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub invalid_values_nulled: std::collections::BTreeMap<String, u64>,
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
    pub snapshot: PathBuf,
    pub finished_at: DateTime<Utc>,
    pub records: u64,
}

impl Latest {
    fn of(manifest: &Manifest, snapshot: &Path) -> Latest {
        Latest {
            job: manifest.job.clone(),
            run_id: manifest.run_id.clone(),
            snapshot: snapshot.to_path_buf(),
            finished_at: manifest.finished_at,
            records: manifest.records,
        }
    }
}

/// Writes `_manifest.json`, then `_SUCCESS` (each durable), then `latest.json` one level up,
/// then prunes old complete snapshots of the job beyond `retain`.
pub fn finalize(dir: &Path, manifest: &Manifest, retain: Option<usize>) -> Result<(), SinkError> {
    if let Target::Remote(remote) = Target::of(dir)? {
        return block_on(finalize_remote(&remote, dir, manifest, retain));
    }
    write_atomic(
        &dir.join("_manifest.json"),
        &serde_json::to_vec_pretty(manifest).expect("manifest serializes"),
    )?;
    write_atomic(&dir.join("_SUCCESS"), b"")?;
    let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let latest = Latest::of(manifest, dir);
    // A run killed while replacing latest.json left its temporary file.
    if let Ok(entries) = std::fs::read_dir(parent) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".latest.json.") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    write_atomic(
        &parent.join("latest.json"),
        &serde_json::to_vec_pretty(&latest).expect("serializes"),
    )?;
    if let Some(keep) = retain {
        prune(parent, dir, &manifest.job, keep)?;
    }
    Ok(())
}

/// Removes the oldest complete snapshots of `job` in `parent` so that `keep` remain. Only
/// directories with a `_SUCCESS` and a manifest naming the job are touched; the current one
/// always stays.
fn prune(parent: &Path, current: &Path, job: &str, keep: usize) -> Result<(), SinkError> {
    let mut complete: Vec<(DateTime<Utc>, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(parent).map_err(|e| SinkError::io(parent, e))? {
        let path = entry.map_err(|e| SinkError::io(parent, e))?.path();
        if !path.join("_SUCCESS").is_file() {
            continue;
        }
        let Some(finished) = std::fs::read(path.join("_manifest.json"))
            .ok()
            .and_then(|text| finished_at(&text, job))
        else {
            continue;
        };
        complete.push((finished, path));
    }
    for path in oldest_beyond(complete, keep) {
        if path == current {
            continue;
        }
        // _SUCCESS first: a reader never sees a half-deleted snapshot as complete.
        std::fs::remove_file(path.join("_SUCCESS")).map_err(|e| SinkError::io(&path, e))?;
        std::fs::remove_dir_all(&path).map_err(|e| SinkError::io(&path, e))?;
        tracing::info!(snapshot = %path.display(), "pruned an old snapshot (retain)");
    }
    Ok(())
}

/// [`finalize`] in object storage: each object is complete when it appears, in the same
/// order (manifest, `_SUCCESS`, `latest.json`).
async fn finalize_remote(
    remote: &Remote,
    dir: &Path,
    manifest: &Manifest,
    retain: Option<usize>,
) -> Result<(), SinkError> {
    // Parts of attempts that did not commit (a killed run, a run that lost its claim) go
    // before the snapshot is declared complete, so that a reader listing `part-*` finds
    // exactly the manifest's.
    for name in remote.list().await? {
        if name.starts_with("part-") && !manifest.parts.iter().any(|p| p.file == name) {
            remote.delete(&name).await?;
        }
    }
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    remote.put("_manifest.json", json.into()).await?;
    remote.put("_SUCCESS", bytes::Bytes::new()).await?;
    let Some(parent) = remote.parent() else {
        return Ok(());
    };
    let latest = Latest::of(manifest, dir);
    let json = serde_json::to_vec_pretty(&latest).expect("serializes");
    parent.put("latest.json", json.into()).await?;
    if let Some(keep) = retain {
        prune_remote(&parent, remote, &manifest.job, keep).await?;
    }
    Ok(())
}

/// [`prune`] in object storage.
async fn prune_remote(
    parent: &Remote,
    current: &Remote,
    job: &str,
    keep: usize,
) -> Result<(), SinkError> {
    let names = parent.list().await?;
    let mut complete: Vec<(DateTime<Utc>, String)> = Vec::new();
    for name in &names {
        let Some(snapshot) = name.strip_suffix("/_SUCCESS") else {
            continue;
        };
        let manifest = parent.get(&format!("{snapshot}/_manifest.json")).await?;
        let Some(finished) = manifest.and_then(|(text, _)| finished_at(&text, job)) else {
            continue;
        };
        complete.push((finished, snapshot.to_string()));
    }
    for snapshot in oldest_beyond(complete, keep) {
        let doomed = parent.child(&snapshot);
        if doomed.url() == current.url() {
            continue;
        }
        // _SUCCESS first: a reader never sees a half-deleted snapshot as complete.
        doomed.delete("_SUCCESS").await?;
        for name in doomed.list().await? {
            doomed.delete(&name).await?;
        }
        tracing::info!(snapshot = %doomed.url(), "pruned an old snapshot (retain)");
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

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let (file, mut handle) = super::AtomicFile::create(path)?;
    handle
        .write_all(bytes)
        .map_err(|e| SinkError::io(path, e))?;
    file.commit(handle)?;
    Ok(())
}
