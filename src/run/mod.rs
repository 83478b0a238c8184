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
//! - [`slices`]: a sliced run's plan, made once when it starts.
//!
//! A killed run resumes from its checkpoint: leftovers of the kill are removed, and the
//! pages after the last committed part are fetched again, so every record lands in the
//! snapshot exactly once. The snapshot becomes complete (`_manifest.json`, then `_SUCCESS`)
//! only after its last part.

mod complete;
mod job;
mod open;
mod outcome;
mod pipeline;
mod shards;
mod slices;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::Error;
use crate::checkpoint::{Checkpoint, JobState, PartInfo, StateError, StateStore};
use crate::paginate::Position;
use crate::sink::SinkError;
use crate::storage::{Location, Store};

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
    /// A bounded historical load of a windowed job (`apisnap backfill`): exactly these
    /// windows, with a state of its own, its snapshot apart, the job's marks untouched.
    pub backfill: Option<Backfill>,
}

/// The range of a backfill, `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backfill {
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

impl Backfill {
    /// The state's and the snapshot's name of this backfill: `2026-10-01_2026-11-01`.
    pub fn name(&self) -> String {
        let day = |t: chrono::DateTime<chrono::Utc>| match t.timestamp() % 86_400 {
            0 => t.format("%Y-%m-%d").to_string(),
            _ => t.format("%Y-%m-%dT%H%M%SZ").to_string(),
        };
        format!("{}_{}", day(self.from), day(self.to))
    }
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
    /// Cursor-field values past the run's start, left out of the high-water mark.
    pub future_marks: u64,
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
        // A backfill's range on the windows' grid: its name (state, directory) then stays
        // the same for the same command.
        let mut options = options.clone();
        if let (Some(b), Some(slicing)) = (options.backfill.as_mut(), &self.slicing) {
            b.from = slicing.truncate(b.from);
            b.to = slicing.truncate(b.to);
        }
        let options = &options;
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
        self.counters.committed_before.store(
            opened.checkpoint.records,
            std::sync::atomic::Ordering::Relaxed,
        );
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
                options.backfill.is_some(),
            )
            .await?;
        let summary = self.summary(done, opened.resumed, pages, started);
        tracing::info!(
            job = %summary.job,
            records = summary.records,
            parts = summary.parts.len(),
            pages = summary.pages,
            retries = summary.retries,
            concurrency = %self.concurrency_report(),
            seconds = format!("{:.2}", summary.duration_secs),
            "run finished"
        );
        Ok(summary)
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
            requests: self.fetcher.requests() + self.slicing.as_ref().map_or(0, |s| s.requests()),
            retries: self.fetcher.retries(),
            logins: self.fetcher.auth().logins(),
            duration_secs: started.elapsed().as_secs_f64(),
            future_marks: done.future_marks,
        }
    }

    /// The state a run keeps: the job's, or its shard's.
    fn state_store(&self, shard: Option<crate::paginate::Shard>) -> Result<StateStore, Error> {
        StateStore::open(&self.state_dir, &shards::state_name(&self.name, shard))
            .map_err(|e| self.state_error(e))
    }

    /// The state of the run `options` describe: a backfill keeps its own, apart from the
    /// job's (its checkpoint, its history; the job's marks are not in it).
    fn run_state_store(&self, options: &RunOptions) -> Result<StateStore, Error> {
        match &options.backfill {
            Some(b) => StateStore::open(
                &self.state_dir,
                &format!("{}.backfill-{}", self.name, b.name()),
            )
            .map_err(|e| self.state_error(e)),
            None => self.state_store(options.shard),
        }
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
