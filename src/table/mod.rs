//! The current-state table (`[table]`): after each successful run, the previous table and
//! the run's snapshot merged into one row per primary key, its newest version.
//!
//! ```text
//! out/{job}/_current/v000007/bucket-00000.parquet …   a version: one file per hash bucket
//!                            _manifest.json, _SUCCESS
//! out/{job}/current -> _current/v000007                 switched last, in one step
//! out/{job}/duckdb.sql                                  views: JOB_current, _latest, _snapshots
//! ```
//!
//! Memory stays bounded whatever the table's size: the run's rows are spilled to disk by
//! bucket, and each bucket is merged alone (its previous rows and the run's); a bucket the
//! run did not touch is carried over without being read (a hard link, or a copy made by the
//! object store). A bucket that grows past `bucket_rows` doubles the number of buckets (the
//! rows of bucket `i` go to `i` and `i + count`). A version is written completely under a
//! new name before `current` is switched to it (on disk a symlink renamed over the old one,
//! in object storage `current.txt`), so a reader sees one version or the next, never a mix;
//! a merge killed at any moment leaves the previous version in place, and the run's resumed
//! completion merges again. The version before the newest is kept for readers still on it.

mod bucket;
mod config;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use config::{Deletions, TableConfig, TombstoneConfig};

use crate::checkpoint::PartInfo;
use crate::sink::{OutputConfig, SinkError};
use crate::storage::{StorageError, Store};

/// Why the current table could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Data(String),
}

/// Where the table's versions live, below the job's directory.
const VERSIONS: &str = "_current";
/// The name that leads to the newest version.
const CURRENT: &str = "current";
/// DuckDB views over the job's files, beside them.
const VIEWS: &str = "duckdb.sql";
/// Run ids a version remembers, to know a run it has merged already.
const RUNS_KEPT: usize = 50;

/// `_manifest.json` of a version of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionManifest {
    pub job: String,
    pub version: u64,
    pub finished_at: DateTime<Utc>,
    pub primary_key: Vec<String>,
    pub rows: u64,
    pub buckets: u32,
    pub files: Vec<BucketFile>,
    /// The runs merged into the table, the newest last (the last few).
    pub runs: Vec<String>,
    /// Records of the last run without a value in a primary-key field: not in the table.
    pub without_key: u64,
    /// Keys the last run's tombstones removed.
    pub tombstoned: u64,
    /// Per bucket, the deleted keys it remembers (their tombstones, with when each was
    /// deleted; Arrow IPC beside the Parquet files), so that an older version of a deleted
    /// record sent again does not bring it back.
    #[serde(default)]
    pub tombstones: Vec<BucketFile>,
    pub schema: Schema,
}

/// A run, as a version of the table remembers it.
#[derive(Clone, Debug)]
pub struct MergedRun {
    pub id: String,
    pub started_at: DateTime<Utc>,
}

/// One bucket's file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BucketFile {
    pub bucket: u32,
    pub file: String,
    pub rows: u64,
}

/// The table of one job, built from its `[table]`.
#[derive(Clone, Debug)]
pub struct Table {
    config: TableConfig,
    output: OutputConfig,
}

impl Table {
    /// The table of a job that writes `output` (its Parquet settings are the table's).
    pub fn new(config: TableConfig, output: &OutputConfig) -> Table {
        Table {
            config,
            output: output.clone(),
        }
    }

    /// Merges the complete snapshot `snapshot` (its `parts`, written by `run`, with the
    /// columns `columns`) into the table of the job whose snapshots live in `job_dir`, and
    /// switches `current` to the new version. A run already merged (a completion resumed
    /// after the switch) is not merged again.
    pub async fn merge(
        &self,
        job: &str,
        job_dir: &Store,
        snapshot: &Store,
        parts: &[PartInfo],
        run: &MergedRun,
        columns: Option<&Schema>,
    ) -> Result<VersionManifest, TableError> {
        let versions = job_dir.child(VERSIONS);
        let previous = self.previous(job_dir).await?;
        if let Some((_, manifest)) = &previous {
            self.check_identity(job, manifest)?;
        }
        // A run id alone can repeat (`--run-id` fixed in a unit file): with its start time
        // it names one run.
        let run_name = format!("{}@{}", run.id, run.started_at.to_rfc3339());
        if let Some((store, manifest)) = &previous
            && manifest.runs.contains(&run_name)
        {
            // Killed after the switch: what followed it is done again.
            let _ = job_dir.remove_temporaries(|of| of == CURRENT).await;
            let views = views_sql(job, store.location(), snapshot.location());
            job_dir.put(VIEWS, views.into_bytes().into()).await?;
            self.prune(&versions, manifest.version).await?;
            return Ok(manifest.clone());
        }
        let number = previous.as_ref().map_or(1, |(_, m)| m.version + 1);
        tracing::info!(
            job,
            version = number,
            "merging the snapshot into the current table"
        );
        let name = format!("v{number:06}");
        let version = versions.child(&name);
        // What a killed attempt at this version left.
        version.remove_all().await?;

        let run_rows: u64 = parts.iter().map(|p| p.records).sum();
        let buckets = self.buckets(previous.as_ref().map(|(_, m)| m), run_rows);
        let key = &self.config.primary_key;
        let mut spill = bucket::Spill::new()?;
        let staging = snapshot.staging()?;
        // The run's columns: parts written before a column was added lack it, and the
        // spill joins a bucket's rows by position, so every batch gets them all.
        let mut run_schema: Option<SchemaRef> = columns.map(|c| Arc::new(c.clone()));
        for part in parts {
            let path = snapshot.local_copy(&part.file, &staging).await?;
            for batch in read_parquet(&path)? {
                let all = run_schema.get_or_insert_with(|| batch.schema()).clone();
                spill.add(&bucket::widen(&batch, &all)?, key, buckets)?;
            }
            if snapshot.location().local_path().is_none() {
                // A downloaded copy: one part on local disk at a time.
                let _ = std::fs::remove_file(&path);
            }
        }
        spill.finish()?;
        if spill.without_key > 0 {
            tracing::warn!(job, records = spill.without_key, key = ?key, "records without a primary key are not in the current table");
        }
        let old_schema = previous.as_ref().map(|(_, m)| &m.schema);
        let run_schema = run_schema
            .unwrap_or_else(|| Arc::new(old_schema.cloned().unwrap_or_else(Schema::empty)));
        let schema = bucket::union_schema(old_schema, &run_schema)?;
        let absence = self.config.deletions == Deletions::Absence;
        // Every file is rewritten when its columns or the bucket count change, so that all
        // files of a version have the same columns.
        let same_shape = previous
            .as_ref()
            .is_some_and(|(_, m)| m.buckets == buckets && m.schema == *schema);
        let rule = bucket::Rule {
            key,
            order_by: self.config.order_by.as_deref(),
            tombstone: self.config.tombstone.as_ref(),
            now: Utc::now().timestamp_micros(),
            remember: self.config.remember_deletions_days as i64 * 86_400 * 1_000_000,
        };
        let version_staging = version.staging()?;
        let mut files = Vec::new();
        let mut remembered = Vec::new();
        let (mut rows, mut tombstoned) = (0u64, 0u64);
        for b in 0..buckets {
            let of = |list: fn(&VersionManifest) -> &Vec<BucketFile>| {
                previous.as_ref().and_then(|(store, m)| {
                    let from = b % m.buckets;
                    list(m)
                        .iter()
                        .find(|f| f.bucket == from)
                        .map(|f| (store, f.clone(), m.buckets))
                })
            };
            let old_file = of(|m| &m.files);
            let old_tombstones = of(|m| &m.tombstones);
            if same_shape && !spill.has(b) && !absence {
                for (old, kept) in [(old_file, &mut files), (old_tombstones, &mut remembered)] {
                    if let Some((store, file, _)) = old {
                        store.copy_to(&file.file, &version).await?;
                        kept.push(file);
                    }
                }
                rows += files.last().filter(|f| f.bucket == b).map_or(0, |f| f.rows);
                continue;
            }
            // The previous rows and remembered tombstones of this bucket (under `absence`
            // the run's snapshot is the whole truth: neither).
            let mut old = Vec::new();
            let mut dead = Vec::new();
            for (from, into, ipc) in [
                (&old_file, &mut old, false),
                (&old_tombstones, &mut dead, true),
            ] {
                let Some((store, file, old_buckets)) = from.as_ref().filter(|_| !absence) else {
                    continue;
                };
                let path = store.local_copy(&file.file, &version_staging).await?;
                let batches = match ipc {
                    true => bucket::read_ipc(&path)?,
                    false => read_parquet(&path)?,
                };
                if store.location().local_path().is_none() {
                    let _ = std::fs::remove_file(&path);
                }
                if *old_buckets == buckets {
                    into.extend(batches);
                } else {
                    // Split: only the rows that hash to this bucket now.
                    for batch in batches {
                        let (split, _) = bucket::split(&batch, key, buckets)?;
                        into.extend(split.into_iter().filter(|(to, _)| *to == b).map(|(_, r)| r));
                    }
                }
            }
            let (merged, stats) = bucket::merge(old, dead, spill.read(b)?, &schema, &rule)?;
            tombstoned += stats.deleted;
            if let Some(dead) = merged.tombstones {
                let file = format!("_tombstones-{b:05}.arrow");
                let path = version_staging.path(&file);
                bucket::write_ipc(&path, &dead)?;
                version.upload(&file, &path).await?.finish().await?;
                remembered.push(BucketFile {
                    bucket: b,
                    file,
                    rows: dead.num_rows() as u64,
                });
            }
            let Some(merged) = merged.rows else {
                continue;
            };
            let file = format!("bucket-{b:05}.parquet");
            let path = version_staging.path(&file);
            let mut writer = parquet_output(&self.output).open(&path, schema.clone())?;
            writer.write(&merged)?;
            let written = writer.finish()?;
            version.upload(&file, &path).await?.finish().await?;
            rows += written.records;
            files.push(BucketFile {
                bucket: b,
                file,
                rows: written.records,
            });
        }
        if files.is_empty() && !schema.fields().is_empty() {
            // An empty table still has its columns: readers of `*.parquet` find one file.
            let file = "bucket-00000.parquet".to_string();
            let path = version_staging.path(&file);
            let writer = parquet_output(&self.output).open(&path, schema.clone())?;
            writer.finish()?;
            version.upload(&file, &path).await?.finish().await?;
            files.push(BucketFile {
                bucket: 0,
                file,
                rows: 0,
            });
        }
        let mut runs: Vec<String> = previous
            .as_ref()
            .map(|(_, m)| m.runs.clone())
            .unwrap_or_default();
        runs.push(run_name);
        if runs.len() > RUNS_KEPT {
            runs.drain(..runs.len() - RUNS_KEPT);
        }
        let manifest = VersionManifest {
            job: job.to_string(),
            version: number,
            finished_at: Utc::now(),
            primary_key: key.clone(),
            rows,
            buckets,
            files,
            runs,
            without_key: spill.without_key,
            tombstoned,
            tombstones: remembered,
            schema: schema.as_ref().clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("serializes");
        version.put("_manifest.json", json.into()).await?;
        version.put("_SUCCESS", bytes::Bytes::new()).await?;
        // The version's own entry durable before the link leads to it.
        versions.sync().await?;
        // A killed switch left its temporary link.
        let _ = job_dir.remove_temporaries(|of| of == CURRENT).await;
        job_dir
            .point(CURRENT, &format!("{VERSIONS}/{name}"))
            .await?;
        let views = views_sql(job, version.location(), snapshot.location());
        job_dir.put(VIEWS, views.into_bytes().into()).await?;
        self.prune(&versions, number).await?;
        tracing::info!(
            job,
            version = number,
            rows,
            buckets,
            tombstoned,
            "current table updated"
        );
        Ok(manifest)
    }

    /// Refuses a table that is another job's, or keyed otherwise than the job is now (its
    /// rows are bucketed by the old key, so keys would be doubled).
    fn check_identity(&self, job: &str, manifest: &VersionManifest) -> Result<(), TableError> {
        if manifest.job != job {
            return Err(TableError::Data(format!(
                "the current table here is job `{}`'s: give each job its own output directory",
                manifest.job
            )));
        }
        if manifest.primary_key != self.config.primary_key {
            return Err(TableError::Data(format!(
                "the table is keyed by {:?}, the job now by {:?}: move `current` and \
                 `_current` away beside the snapshots, and the next run builds the table again \
                 from its snapshot",
                manifest.primary_key, self.config.primary_key
            )));
        }
        Ok(())
    }

    /// The version `current` leads to, and its manifest.
    async fn previous(
        &self,
        job_dir: &Store,
    ) -> Result<Option<(Store, VersionManifest)>, TableError> {
        let Some(relative) = job_dir.pointed(CURRENT).await? else {
            return Ok(None);
        };
        let store = relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(job_dir.clone(), |s, p| s.child(p));
        let Some((bytes, _)) = store.get("_manifest.json").await? else {
            return Err(TableError::Data(format!(
                "{} has no _manifest.json: `current` leads to something apisnap did not write",
                store.location()
            )));
        };
        let manifest = serde_json::from_slice(&bytes)
            .map_err(|e| TableError::Data(format!("{}/_manifest.json: {e}", store.location())))?;
        Ok(Some((store, manifest)))
    }

    /// How many buckets the new version has: the previous version's, doubled while a
    /// bucket (with an even share of the run's rows) would pass `bucket_rows`; for a new
    /// table, enough for the run's rows.
    fn buckets(&self, previous: Option<&VersionManifest>, run_rows: u64) -> u32 {
        let limit = self.config.bucket_rows.max(1);
        let (start, largest) = match previous {
            Some(m) => (
                m.buckets.max(1),
                m.files.iter().map(|f| f.rows).max().unwrap_or(0),
            ),
            None => (self.config.buckets.max(1), 0),
        };
        // Doubling halves what the largest bucket holds, and each bucket's share of the run.
        let mut buckets = start;
        while buckets < 65_536
            && largest * start as u64 / buckets as u64 + run_rows / buckets as u64 > limit
        {
            buckets *= 2;
        }
        buckets
    }

    /// Removes the versions before the one before `newest` (that one is kept for readers
    /// that opened it before the switch).
    async fn prune(&self, versions: &Store, newest: u64) -> Result<(), TableError> {
        for dir in versions.dirs().await? {
            let Some(n) = dir.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if n + 1 < newest {
                versions.child(&dir).remove_all().await?;
            }
        }
        Ok(())
    }
}

/// The DuckDB views of a job with a table: `JOB_current` (the version just written, named
/// by its own path, so that it works in object storage too), `JOB_latest` (the newest
/// snapshot) and `JOB_snapshots` (every complete snapshot, with the one each row came
/// from), rewritten after each merge.
fn views_sql(
    job: &str,
    version: &crate::storage::Location,
    snapshot: &crate::storage::Location,
) -> String {
    let quote = |l: &crate::storage::Location| l.to_string().replace('\'', "''");
    let job_dir = snapshot.parent().map(|p| quote(&p)).unwrap_or_default();
    format!(
        "-- Written by apisnap after each run of job `{job}`: DuckDB views over its files.\n\
         -- duckdb -init {job_dir}/{VIEWS}   (or, in Python, con.execute(open(...).read()))\n\
         CREATE OR REPLACE VIEW \"{job}_current\" AS\n  \
         SELECT * FROM read_parquet('{current}/*.parquet');\n\
         CREATE OR REPLACE VIEW \"{job}_latest\" AS\n  \
         SELECT * FROM read_parquet('{latest}/*.parquet');\n\
         CREATE OR REPLACE VIEW \"{job}_snapshots\" AS\n  \
         SELECT * EXCLUDE (filename), parse_filename(parse_dirpath(filename)) AS snapshot\n  \
         FROM read_parquet('{job_dir}/*/part-*.parquet', filename = true, union_by_name = true)\n  \
         WHERE parse_dirpath(filename) IN\n      \
         (SELECT parse_dirpath(file) FROM glob('{job_dir}/*/_SUCCESS'))\n    \
         AND parse_filename(parse_dirpath(filename)) NOT IN ('latest', 'current')\n    \
         AND NOT starts_with(parse_filename(parse_dirpath(filename)), '.');\n",
        current = quote(version),
        latest = quote(snapshot),
    )
}

/// The job's output settings for the table's files, which are Parquet whatever the
/// snapshot's format.
fn parquet_output(output: &OutputConfig) -> OutputConfig {
    OutputConfig {
        format: crate::sink::Format::Parquet,
        ..output.clone()
    }
}

fn read_parquet(path: &std::path::Path) -> Result<Vec<RecordBatch>, TableError> {
    let file = std::fs::File::open(path).map_err(|e| SinkError::io(path, e))?;
    // Large batches: the rows are split by bucket, and each piece should not be tiny.
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(32_768).build())
        .map_err(|e| SinkError::encode(path, e))?;
    reader
        .map(|b| b.map_err(|e| TableError::from(SinkError::encode(path, e))))
        .collect()
}
