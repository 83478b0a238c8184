//! One run of one job: open its state, stream the pages into parts, complete the snapshot.
//!
//! ```text
//!  open (lock, state, claim; resume or start) --> pipeline (fetch, decode, write, commit)
//!      --> complete (compact, manifest, _SUCCESS, latest.json, history)
//! ```
//!
//! - [`job`]: the [`Job`] built from its definition, and what uses only its first page
//!   (`check`, `schema infer`, shard planning) or none of its output (benchmark floors).
//! - [`pipeline`]: the stages, connected by bounded channels.
//! - [`shards`]: a sharded run's range, its names, and its finalization.
//! - [`outcome`]: what a run did, as the run report and metrics record it.
//!
//! A killed run resumes from its checkpoint: leftovers of the kill are removed, and the
//! pages after the last committed part are fetched again, so every record lands in the
//! snapshot exactly once. The snapshot becomes complete (`_manifest.json`, then `_SUCCESS`)
//! only after its last part.

mod job;
mod outcome;
mod pipeline;
mod shards;

use std::sync::Arc;
use std::time::Instant;

use arrow_schema::SchemaRef;
use serde::Serialize;

use crate::Error;
use crate::checkpoint::{Checkpoint, JobState, PartInfo, RunRecord, StateError, StateStore};
use crate::paginate::Position;
use crate::sink::SinkError;
use crate::sink::snapshot::{ColumnInfo, Manifest, finalize, prepare_resume, remove_parts, unmark};
use crate::storage::{Location, Store};
use crate::vocab::ConfigError;

pub use job::{CheckReport, Floor, FloorSummary, Job, Progress, ProgressHandle};
pub use shards::FinalizeSummary;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Discard a checkpoint and start over.
    pub fresh: bool,
    /// Becomes `true` when the run should stop at the next page boundary (SIGTERM, Ctrl-C).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where to write the job's Prometheus textfile after the run (node_exporter).
    pub metrics_dir: Option<std::path::PathBuf>,
    /// Only this shard of the pages (`--shard INDEX/COUNT`).
    pub shard: Option<crate::paginate::Shard>,
    /// The run's id, instead of a new one: the shards of one sharded run share it.
    pub run_id: Option<String>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub job: String,
    pub run_id: String,
    pub snapshot_dir: Location,
    pub parts: Vec<PartInfo>,
    pub records: u64,
    /// Whether this run continued a checkpoint.
    pub resumed: bool,
    pub pages: u64,
    pub requests: u64,
    pub retries: u64,
    pub logins: u64,
    pub duration_secs: f64,
}

/// A new run id: UUIDv7, so ids sort by start time.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A run with its state open: the job's lock held, the state claimed, the checkpoint in it.
struct Opened {
    state_store: StateStore,
    snapshot: Store,
    _lock: crate::storage::Lock,
    state: JobState,
    checkpoint: Checkpoint,
    resumed: bool,
}

impl Job {
    /// Runs the job to completion (resuming its checkpoint, if any) and returns what it
    /// wrote.
    pub async fn run(&self, options: &RunOptions) -> Result<RunSummary, Error> {
        let started_at = chrono::Utc::now();
        let result = self.run_once(options).await;
        self.report(started_at, &result, options).await;
        let summary = result?;
        if let Some(shard) = options.shard {
            // Finalizing after this shard's report lets the run's report add up every
            // shard's requests and retries.
            self.finalize_after_shard(shard, &summary.run_id, options)
                .await?;
        }
        Ok(summary)
    }

    async fn run_once(&self, options: &RunOptions) -> Result<RunSummary, Error> {
        let started = Instant::now();
        let opened = self.open(options).await?;
        let (outcome, pages) = match opened.checkpoint.position.clone() {
            // Killed after the last part, before the manifest: nothing left to fetch.
            None => (
                pipeline::WriteOutcome {
                    state: opened.state,
                    complete: true,
                    schema: opened.checkpoint.schema.clone().map(Arc::new),
                },
                0,
            ),
            Some(position) => {
                let inputs = pipeline::Inputs {
                    state_store: &opened.state_store,
                    snapshot: &opened.snapshot,
                    state: opened.state,
                    checkpoint: &opened.checkpoint,
                    position,
                    stop: options.stop.clone(),
                };
                self.pipeline(inputs).await?
            }
        };
        if !outcome.complete {
            return Err(Error::Internal {
                job: self.name.clone(),
                message: "the pages ended before the last one; the checkpoint is kept".into(),
            });
        }
        let done = outcome
            .state
            .in_progress
            .clone()
            .expect("the run's checkpoint");
        if let Some(range) = &done.shard {
            // A shard ends with its last part committed. The snapshot completes once every
            // shard has: the last to finish finalizes it, after its report (see `run`).
            tracing::info!(job = %self.name, shard = %format!("{}/{}", range.index, range.count), records = done.records, "shard complete");
            return Ok(self.summary(done, opened.resumed, pages, started));
        }
        let done = self
            .complete(
                &opened.state_store,
                &opened.snapshot,
                outcome.state,
                outcome.schema,
            )
            .await?;
        let summary = self.summary(done, opened.resumed, pages, started);
        tracing::info!(
            job = %summary.job,
            records = summary.records,
            parts = summary.parts.len(),
            pages = summary.pages,
            retries = summary.retries,
            seconds = format!("{:.2}", summary.duration_secs),
            "run finished"
        );
        Ok(summary)
    }

    /// Takes the job's lock and state, and the checkpoint to continue: the interrupted
    /// run's (its leftovers removed), or a new one.
    async fn open(&self, options: &RunOptions) -> Result<Opened, Error> {
        let state_error = |e| self.state_error(e);
        let sink_error = |e| self.sink_error(e);
        if options.shard.is_some() && options.run_id.is_none() {
            return Err(ConfigError::field(
                "--run-id",
                "the shards of a sharded run share one run id: pass --run-id or set \
                 APISNAP_RUN_ID (the Kubernetes deployment sets it from the Job's name)",
            )
            .into());
        }
        if options.shard.is_some() && self.incremental.is_some() {
            // Each shard would keep its own high-water mark, and none would be the job's.
            return Err(ConfigError::field(
                "incremental",
                "an incremental job cannot be split into shards: run it whole (its runs \
                 fetch only what is new anyway)",
            )
            .into());
        }
        let state_store = self.state_store(options.shard)?;
        // Two runs of one job at once would write the same snapshot: cron and systemd
        // overlap when a run is slow, so the second one stops here.
        let lock = state_store.lock().await.map_err(state_error)?;
        let mut state = state_store.load().await.map_err(state_error)?;
        // Taken over for this run: in object storage, a second pod that loads the same state
        // and claims it after this one makes this run's next save fail (and stop).
        state_store.claim(&mut state).await.map_err(state_error)?;
        let prefix = shards::part_prefix(options.shard);
        // A shard of an earlier sharded run that never completed: that run is abandoned.
        let abandoned = options.shard.is_some()
            && state
                .in_progress
                .as_ref()
                .is_some_and(|cp| Some(&cp.run_id) != options.run_id.as_ref());
        if (options.fresh || abandoned)
            && let Some(old) = state.in_progress.take()
        {
            tracing::info!(job = %self.name, run_id = %old.run_id, "discarding the checkpoint (--fresh, or a shard of an abandoned run)");
            let old_snapshot = self.open_store(&old.snapshot_dir)?;
            prepare_resume(&old_snapshot, &[], &prefix)
                .await
                .map_err(sink_error)?;
            old_snapshot.remove_if_empty().await;
            state_store.save(&state).await.map_err(state_error)?;
        }
        let (checkpoint, resumed) = match state.in_progress.clone() {
            Some(cp) => {
                self.check_resumable(&cp)?;
                if let Some(upload) = state_store
                    .abort_pending_upload()
                    .await
                    .map_err(state_error)?
                {
                    tracing::info!(job = %self.name, upload = %upload.url, "aborted the killed run's unfinished upload");
                }
                let snapshot = self.open_store(&cp.snapshot_dir)?;
                let removed = prepare_resume(&snapshot, &cp.parts, &prefix)
                    .await
                    .map_err(sink_error)?;
                tracing::info!(
                    job = %self.name,
                    run_id = %cp.run_id,
                    position = %describe_position(&cp.position),
                    records = cp.records,
                    parts = cp.parts.len(),
                    removed = removed.len(),
                    "resuming the interrupted run"
                );
                (cp, true)
            }
            None => {
                let cp = self.start(options, &state, &prefix).await?;
                state.in_progress = Some(cp.clone());
                state_store.save(&state).await.map_err(state_error)?;
                (cp, false)
            }
        };
        if let (Some(inc), Some(since)) = (&self.incremental, &checkpoint.since) {
            tracing::info!(job = %self.name, param = %inc.param, value = %since, "incremental: fetching what is new");
            self.fetcher
                .set_run_query(vec![(inc.param.clone(), since.clone())]);
        }
        tracing::info!(
            job = %self.name,
            run_id = %checkpoint.run_id,
            snapshot = %checkpoint.snapshot_dir,
            "run started"
        );
        Ok(Opened {
            state_store,
            snapshot: self.open_store(&checkpoint.snapshot_dir)?,
            _lock: lock,
            state,
            checkpoint,
            resumed,
        })
    }

    /// Refuses a checkpoint whose position the job's pagination cannot continue: edited
    /// since the killed run, it could send a request without paging parameters, be told
    /// "done", and complete a snapshot with records missing.
    fn check_resumable(&self, cp: &Checkpoint) -> Result<(), Error> {
        let other_settings = cp.position.is_some()
            && cp
                .pagination
                .as_deref()
                .is_some_and(|made_under| made_under != self.paginator.fingerprint());
        let other_kind = cp
            .position
            .as_ref()
            .is_some_and(|p| self.paginator.resume(p).is_err());
        if other_settings || other_kind {
            return Err(ConfigError::field(
                "pagination",
                format!(
                    "the pagination of {} changed since the interrupted run (run {}, at {}); \
                     run it with --fresh to start over",
                    self.name,
                    cp.run_id,
                    describe_position(&cp.position)
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The checkpoint of a new run: its snapshot directory made ready, its first position
    /// (a shard's from a first request), the incremental value it sends.
    async fn start(
        &self,
        options: &RunOptions,
        state: &JobState,
        prefix: &str,
    ) -> Result<Checkpoint, Error> {
        let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
        let now = chrono::Utc::now();
        let snapshot_dir = self
            .output
            .render_dir(&self.name, now, &run_id)
            .map_err(|e| self.sink_error(e))?;
        let snapshot = self.open_store(&snapshot_dir)?;
        // A snapshot of the same name (a second run on one date) is replaced: its
        // _SUCCESS goes first, so no reader takes it for complete meanwhile.
        unmark(&snapshot).await.map_err(|e| self.sink_error(e))?;
        prepare_resume(&snapshot, &[], prefix)
            .await
            .map_err(|e| self.sink_error(e))?;
        let (position, shard, schema) = match options.shard {
            None => (Some(self.paginator.first().position), None, None),
            Some(shard) => self.plan_shard(shard).await?,
        };
        let since = match &self.incremental {
            Some(inc) => inc
                .value(&state.history)
                .map_err(|message| Error::Internal {
                    job: self.name.clone(),
                    message,
                })?,
            None => None,
        };
        Ok(Checkpoint {
            run_id,
            started_at: now,
            snapshot_dir,
            position,
            parts: Vec::new(),
            records: 0,
            schema,
            schema_fingerprint: None,
            since,
            // Carried over: a run that finds nothing new keeps the old mark.
            high_water: state.history.iter().find_map(|r| r.high_water.clone()),
            columns_added: Vec::new(),
            nulled: Default::default(),
            pagination: Some(self.paginator.fingerprint().to_string()),
            shard,
        })
    }

    /// Completes a whole run's snapshot after its last part: compaction (if asked), the
    /// manifest, `_SUCCESS`, `latest.json`, and the run in the job's history.
    async fn complete(
        &self,
        state_store: &StateStore,
        snapshot: &Store,
        mut state: JobState,
        schema: Option<SchemaRef>,
    ) -> Result<Checkpoint, Error> {
        let state_error = |e| self.state_error(e);
        let sink_error = |e| self.sink_error(e);
        let mut done = state.in_progress.clone().expect("the run's checkpoint");
        let schema = schema.unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
        let csv_columns_differ =
            self.output.format == crate::sink::Format::Csv && !done.columns_added.is_empty();
        if self.output.compact && csv_columns_differ {
            // CSV parts with different headers cannot be concatenated.
            tracing::warn!(job = %self.name, "columns were added during the run: the CSV parts are kept, not compacted");
        }
        if self.output.compact && done.parts.len() > 1 && !csv_columns_differ {
            // The merged file is published, then named by the checkpoint, and only then do
            // the parts go: a crash in between resumes into one or the other, never both.
            let staging = snapshot.staging().map_err(|e| sink_error(e.into()))?;
            let merged = crate::sink::snapshot::compact(
                snapshot,
                &staging,
                &self.output,
                schema.clone(),
                &done.parts,
            )
            .await
            .map_err(sink_error)?;
            // Not noted for abort after a kill: the merged file is made again on resume
            // under the same name, which a fresh upload replaces.
            snapshot
                .upload(&merged.info.file, &merged.path)
                .await
                .map_err(|e| sink_error(e.into()))?
                .finish()
                .await
                .map_err(|e| sink_error(e.into()))?;
            let old = std::mem::replace(&mut done.parts, vec![merged.info]);
            state.in_progress = Some(done.clone());
            state_store.save(&state).await.map_err(state_error)?;
            remove_parts(snapshot, &old).await.map_err(sink_error)?;
        }
        let manifest = self.manifest(&done, &schema, &done.columns_added, done.nulled.clone());
        finalize(snapshot, &manifest, self.output.retain)
            .await
            .map_err(sink_error)?;
        state_store
            .finish(
                &mut state,
                RunRecord {
                    run_id: done.run_id.clone(),
                    finished_at: manifest.finished_at,
                    snapshot_dir: done.snapshot_dir.clone(),
                    records: done.records,
                    high_water: done.high_water.clone(),
                },
            )
            .await
            .map_err(state_error)?;
        Ok(done)
    }

    /// The manifest of a snapshot that completes now, from the checkpoint of the run (the
    /// first shard's, for a sharded run, with the run's totals in `records` and `parts`).
    fn manifest(
        &self,
        run: &Checkpoint,
        schema: &arrow_schema::Schema,
        added: &[(String, usize)],
        nulled: std::collections::BTreeMap<String, u64>,
    ) -> Manifest {
        Manifest {
            job: self.name.clone(),
            run_id: run.run_id.clone(),
            started_at: run.started_at,
            finished_at: chrono::Utc::now(),
            endpoint: self.fetcher.endpoint(),
            format: self.output.format.extension().to_string(),
            records: run.records,
            parts: run.parts.clone(),
            schema: ColumnInfo::of(schema, added),
            invalid_values_nulled: nulled,
        }
    }

    fn summary(&self, done: Checkpoint, resumed: bool, pages: u64, started: Instant) -> RunSummary {
        RunSummary {
            job: self.name.clone(),
            run_id: done.run_id,
            snapshot_dir: done.snapshot_dir,
            records: done.records,
            parts: done.parts,
            resumed,
            pages,
            requests: self.fetcher.requests(),
            retries: self.fetcher.retries(),
            logins: self.fetcher.auth().logins(),
            duration_secs: started.elapsed().as_secs_f64(),
        }
    }

    /// The state a run keeps: the job's, or its shard's.
    fn state_store(&self, shard: Option<crate::paginate::Shard>) -> Result<StateStore, Error> {
        StateStore::open(&self.state_dir, &shards::state_name(&self.name, shard))
            .map_err(|e| self.state_error(e))
    }

    fn open_store(&self, location: &Location) -> Result<Store, Error> {
        Store::open(location).map_err(|e| self.sink_error(e.into()))
    }

    fn state_error(&self, source: StateError) -> Error {
        Error::State {
            job: self.name.clone(),
            source,
        }
    }

    fn sink_error(&self, source: SinkError) -> Error {
        Error::Sink {
            job: self.name.clone(),
            source,
        }
    }
}

/// Where a run starts fetching, for messages.
fn describe_position(position: &Option<Position>) -> String {
    position
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "the end".into())
}
