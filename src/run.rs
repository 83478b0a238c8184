//! One run of one job: the streaming pipeline.
//!
//! ```text
//!  fetch (async, tokio) --pages--> decode ahead (parallel) --pages--> decode (thread)
//!      --batches--> write (thread)
//! ```
//!
//! Decoding a page is the largest single cost, so pages are decoded ahead on all cores, with
//! the columns the decode stage last settled on; the decode stage itself, in page order,
//! only takes those batches (or, for a page that needs a decision, such as the first page
//! or one with a new field or a bad value, decodes it itself).
//!
//! Both channels are bounded, so a slow writer slows the fetcher instead of filling memory:
//! memory depends on the page size and the channel depths, never on the number of records.
//!
//! The writer closes a part file at a page boundary once it is full; the part is made durable
//! under its final name, and only then does the checkpoint move past it. A killed run
//! resumes from the checkpoint: leftovers of the kill are removed, and the pages after the
//! last committed part are fetched again, so every record lands in the snapshot exactly once.
//! The snapshot becomes complete (`_manifest.json`, then `_SUCCESS`) only after its last part.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::Error;
use crate::checkpoint::{Checkpoint, JobState, PartInfo, RunRecord, StateError, StateStore};
use crate::config::{ConfigError, ConfigErrors, JobDefinition, check_base_url, join_url};
use crate::decode::{PageDecoder, infer_schema};
use crate::env::Env;
use crate::fetch::{Fetcher, FetcherParts};
use crate::paginate::{Next, PageRequest, Paginator, Position};
use crate::sink::OutputConfig;
use crate::sink::snapshot::{
    ColumnInfo, Manifest, SnapshotWriter, Target, finalize, prepare_resume, remove_parts, unmark,
};

/// Pages buffered between the fetcher and the decoder.
const PAGE_CHANNEL: usize = 2;
/// Batches buffered between the decoder and the writer.
const BATCH_CHANNEL: usize = 2;

/// A job ready to run: secrets resolved, client built.
pub struct Job {
    pub name: String,
    fetcher: Arc<Fetcher>,
    paginator: Paginator,
    output: OutputConfig,
    page_size: usize,
    concurrency: usize,
    /// A directory, or an object-storage prefix.
    state_dir: String,
    incremental: Option<crate::incremental::IncrementalConfig>,
    drift: crate::config::Drift,
    on_invalid: crate::config::OnInvalid,
    /// The declared columns, if the job has a column file.
    declared: Option<SchemaRef>,
    counters: Arc<Counters>,
}

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

/// What a run has fetched so far, for a progress display; updated as pages arrive.
#[derive(Debug, Default)]
struct Counters {
    pages: std::sync::atomic::AtomicU64,
    records: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

/// A live view of a running job's progress.
#[derive(Clone)]
pub struct ProgressHandle {
    counters: Arc<Counters>,
    fetcher: Arc<Fetcher>,
}

/// One reading of a [`ProgressHandle`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub pages: u64,
    pub records: u64,
    /// Bytes of response bodies (decompressed).
    pub bytes: u64,
    pub retries: u64,
    pub logins: u64,
}

impl ProgressHandle {
    pub fn read(&self) -> Progress {
        use std::sync::atomic::Ordering::Relaxed;
        Progress {
            pages: self.counters.pages.load(Relaxed),
            records: self.counters.records.load(Relaxed),
            bytes: self.counters.bytes.load(Relaxed),
            retries: self.fetcher.retries(),
            logins: self.fetcher.auth().logins(),
        }
    }
}

impl JobDefinition {
    /// Resolves secrets and builds the runtime objects. Fails, naming file and field, when a
    /// secret is missing; makes no request.
    pub fn build(&self, env: &Env) -> Result<Job, ConfigErrors> {
        let provider = &self.provider;
        let base = check_base_url(&provider.base_url, "base_url")
            .map_err(|e| ConfigErrors::from(e).in_file(&self.provider_file))?;
        let provider_name = self.job.provider.as_str();
        let auth = provider
            .auth
            .build(provider_name, &base, env)
            .map_err(|e| e.in_file(&self.provider_file))?;
        let mut headers = HeaderMap::new();
        // Endpoint headers are inserted last, so they win over the provider's.
        for (name, value) in provider.headers.iter().chain(&self.job.endpoint.headers) {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue; // rejected by validation already
            };
            headers.insert(name, value);
        }
        let client = crate::http::client(
            &provider.user_agent,
            Duration::from_secs(provider.timeout_secs),
            Duration::from_secs(provider.connect_timeout_secs),
        )
        .map_err(|e| {
            ConfigErrors::from(ConfigError::file(
                &self.provider_file,
                format!("cannot build the HTTP client: {e}"),
            ))
        })?;
        let endpoint = &self.job.endpoint;
        let fetcher = Fetcher::new(FetcherParts {
            job: self.name.clone(),
            client,
            method: endpoint.method.as_reqwest(),
            url: join_url(&base, &endpoint.path),
            query: endpoint.query.clone(),
            headers,
            body: endpoint.body.clone(),
            auth: Arc::new(auth),
            retry: provider.retry.clone(),
            records_pointer: endpoint.records_pointer.clone(),
            pointers: self.job.pagination.pointers(),
            allowed_hosts: provider.allowed_hosts.clone(),
            limiter: provider
                .rate_limit
                .as_ref()
                .and_then(|r| crate::ratelimit::shared(provider_name, r)),
        });
        let declared = match &self.job.schema.file {
            Some(file) => Some(Arc::new(
                crate::columns::ColumnsFile::load(std::path::Path::new(file)).map_err(
                    |mut e| {
                        for err in &mut e.0 {
                            // Say which job named the file.
                            err.message = format!(
                                "{} (the column file of {})",
                                err.message,
                                self.file.display()
                            );
                        }
                        e
                    },
                )?,
            )),
            None => None,
        };
        if let (Some(schema), Some(file)) = (&declared, &self.job.schema.file) {
            // The decoder checks what the types need (a known time zone, ...).
            PageDecoder::new(schema.clone(), 1, true).map_err(|e| {
                ConfigErrors::from(ConfigError::file(
                    file,
                    format!("the columns cannot be decoded: {e}"),
                ))
            })?;
        }
        Ok(Job {
            name: self.name.clone(),
            fetcher: Arc::new(fetcher),
            paginator: self.job.pagination.build(),
            output: self.job.output.clone(),
            page_size: self.job.pagination.page_size().unwrap_or(1024) as usize,
            concurrency: self.job.concurrency,
            state_dir: self.job.state_dir.clone(),
            incremental: self.job.incremental.clone(),
            drift: self.job.schema.drift,
            on_invalid: self.job.schema.on_invalid,
            declared,
            counters: Arc::default(),
        })
    }
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub job: String,
    pub run_id: String,
    pub snapshot_dir: std::path::PathBuf,
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

/// What `apisnap finalize` did.
#[derive(Clone, Debug, Serialize)]
pub struct FinalizeSummary {
    pub job: String,
    pub run_id: String,
    pub snapshot_dir: std::path::PathBuf,
    pub records: u64,
    pub parts: usize,
    /// The run had been finalized already (by its last shard).
    pub already: bool,
}

/// The prefix of a run's part names: shards name theirs apart, in one snapshot directory.
fn part_prefix(shard: Option<u64>) -> String {
    match shard {
        Some(index) => format!("part-{index:04}-"),
        None => "part-".into(),
    }
}

/// A benchmark floor: the requests of a run, with less done to the answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    /// Fetch every page and drop it.
    Fetch,
    /// Fetch every page, parse its whole body as JSON, and drop it.
    Parse,
}

/// What a floor run moved.
#[derive(Clone, Debug, Serialize)]
pub struct FloorSummary {
    pub job: String,
    pub pages: u64,
    pub records: u64,
    /// Bytes of response bodies (decompressed).
    pub bytes: u64,
    pub duration_secs: f64,
}

/// What `apisnap check` saw on the first page.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub job: String,
    pub request: String,
    pub status: u16,
    pub bytes: usize,
    pub records: u64,
    pub total: Option<u64>,
    /// Field names and inferred Arrow types, in source order.
    pub fields: Vec<(String, String)>,
    pub logins: u64,
}

/// A new run id: UUIDv7, so ids sort by start time.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A fetched page on its way to the decoder.
struct FetchedPage {
    position: Position,
    /// The request after this page; `None` when it is the last.
    next: Option<Position>,
    body: Bytes,
    records: std::ops::Range<usize>,
    /// The page decoded ahead, with the columns it was decoded with.
    decoded: Option<(SchemaRef, Vec<RecordBatch>)>,
}

enum ToWriter {
    Open(SchemaRef),
    Batch(RecordBatch),
    /// Every batch of a page has been sent; `next` is the request after it. `nulled`
    /// counts values of the page written as null (`on_invalid = "null"`).
    PageEnd {
        next: Option<Position>,
        nulled: Vec<(String, u64)>,
    },
}

/// What the writer reports when its input ends.
struct WriteOutcome {
    state: JobState,
    /// The last page arrived and the last part is durable.
    complete: bool,
    schema: Option<SchemaRef>,
}

fn fingerprint(schema: &arrow_schema::Schema) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_vec(schema).expect("schemas serialize");
    format!("{:x}", Sha256::digest(&text))
}

impl Job {
    /// Runs the job to completion (resuming its checkpoint, if any) and returns what it
    /// wrote.
    pub async fn run(&self, options: &RunOptions) -> Result<RunSummary, Error> {
        let started_at = chrono::Utc::now();
        let result = self.run_once(options).await;
        self.report(started_at, &result, options);
        let summary = result?;
        if let Some(shard) = options.shard {
            // Finalizing after this shard's report lets the run's report add up every
            // shard's requests and retries.
            let finalized = self
                .finalize_shards(
                    shard.count,
                    Some(&summary.run_id),
                    options.metrics_dir.as_deref(),
                )
                .await;
            match finalized {
                Ok(_) => {}
                Err(Error::Incomplete { waiting, .. }) => {
                    tracing::info!(job = %self.name, waiting = %waiting, "the snapshot is finalized when the other shards are complete");
                }
                // Another shard, finishing at the same moment, is finalizing it.
                Err(Error::State {
                    source: StateError::Locked { .. },
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(summary)
    }

    /// Sends the requests of a full run (same pagination, concurrency, retries) and discards
    /// the answers, parsed or not: the floors a run's speed is compared with. Writes
    /// nothing and neither reads nor changes the job's state.
    pub async fn floor(&self, floor: Floor) -> Result<FloorSummary, Error> {
        let started = Instant::now();
        let (tx, mut rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let job = self.name.clone();
        let sink = tokio::task::spawn_blocking(move || {
            while let Some(page) = rx.blocking_recv() {
                if floor == Floor::Parse {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&page.body).map_err(|e| {
                        Error::Decode {
                            job: job.clone(),
                            position: page.position.to_string(),
                            message: e.to_string(),
                        }
                    })?;
                }
            }
            Ok(())
        });
        let fetched = self
            .fetch_stage(self.paginator.first(None).position, None, tx, None)
            .await;
        let parsed = join(&self.name, sink).await;
        let pages = fetched?;
        parsed?;
        let p = self.progress().read();
        Ok(FloorSummary {
            job: self.name.clone(),
            pages,
            records: p.records,
            bytes: p.bytes,
            duration_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// The name of the state a run keeps: the job's, or its shard's.
    fn state_name(&self, options: &RunOptions) -> String {
        match options.shard {
            Some(s) => crate::checkpoint::shard_state_name(&self.name, s.index, s.count),
            None => self.name.clone(),
        }
    }

    /// A live view of this job's progress while it runs.
    pub fn progress(&self) -> ProgressHandle {
        ProgressHandle {
            counters: self.counters.clone(),
            fetcher: self.fetcher.clone(),
        }
    }

    /// Writes the run report beside the state (a shard's beside the shard's). A run refused
    /// by the lock did nothing and reports nothing: the report is the running one's to write.
    fn report(
        &self,
        started_at: chrono::DateTime<chrono::Utc>,
        result: &Result<RunSummary, Error>,
        options: &RunOptions,
    ) {
        // A run that never had the job, or lost it to another, leaves the report to that one.
        if let Err(
            Error::State {
                source: StateError::Locked { .. } | StateError::Conflict { .. },
                ..
            }
            | Error::Sink {
                source: crate::sink::SinkError::State(StateError::Conflict { .. }),
                ..
            },
        ) = result
        {
            return;
        }
        let finished_at = chrono::Utc::now();
        let state_name = self.state_name(options);
        let Ok(store) = StateStore::open(&self.state_dir, &state_name) else {
            return;
        };
        let state = store.load().ok();
        // A shard's metrics leave the last success to the job's, written at finalization.
        let last_success = state
            .as_ref()
            .and_then(|s| s.history.first())
            .map(|r| r.finished_at);
        let progress = state.and_then(|s| s.in_progress);
        let shard = options.shard;
        let report = match result {
            Ok(s) => crate::report::RunReport {
                job: self.name.clone(),
                shard,
                run_id: Some(s.run_id.clone()),
                outcome: "success".into(),
                exit_code: 0,
                error: None,
                started_at,
                finished_at,
                duration_secs: s.duration_secs,
                records: s.records,
                pages: s.pages,
                bytes: s.parts.iter().map(|p| p.bytes).sum(),
                requests: s.requests,
                retries: s.retries,
                logins: s.logins,
                reauthentications: self.fetcher.auth().reauthentications(),
                snapshot: Some(s.snapshot_dir.clone()),
            },
            Err(e) => crate::report::RunReport {
                job: self.name.clone(),
                shard,
                // The run asked for (a shard's is given, and its checkpoint may be an older
                // run's), else the one resumed.
                run_id: options
                    .run_id
                    .clone()
                    .or_else(|| progress.as_ref().map(|c| c.run_id.clone())),
                outcome: if matches!(e, Error::Interrupted { .. }) {
                    "interrupted".into()
                } else {
                    "failed".into()
                },
                exit_code: e.exit_code(),
                error: Some(e.to_string()),
                started_at,
                finished_at,
                duration_secs: (finished_at - started_at).num_milliseconds() as f64 / 1000.0,
                records: progress.as_ref().map_or(0, |c| c.records),
                pages: 0,
                bytes: progress
                    .as_ref()
                    .map_or(0, |c| c.parts.iter().map(|p| p.bytes).sum()),
                requests: self.fetcher.requests(),
                retries: self.fetcher.retries(),
                logins: self.fetcher.auth().logins(),
                reauthentications: self.fetcher.auth().reauthentications(),
                snapshot: progress.map(|c| c.snapshot_dir),
            },
        };
        if let Err(e) = crate::report::write(&store, &report) {
            tracing::warn!(job = %self.name, error = %e, "cannot write the run report");
        }
        if let Some(dir) = options.metrics_dir.as_deref() {
            let written =
                crate::metrics::write(dir, &state_name, &report, last_success).and_then(|()| {
                    match options.shard {
                        None => crate::metrics::remove_stale_shards(dir, &self.name, None),
                        Some(_) => Ok(()),
                    }
                });
            if let Err(e) = written {
                tracing::warn!(job = %self.name, dir = %dir.display(), error = %e, "cannot write the metrics file");
            }
        }
    }

    async fn run_once(&self, options: &RunOptions) -> Result<RunSummary, Error> {
        let started = Instant::now();
        let state_error = |e| Error::State {
            job: self.name.clone(),
            source: e,
        };
        let sink_error = |source| Error::Sink {
            job: self.name.clone(),
            source,
        };
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
        let state_name = self.state_name(options);
        let store = StateStore::open(&self.state_dir, &state_name).map_err(state_error)?;
        // Two runs of one job at once would write the same snapshot: cron and systemd
        // overlap when a run is slow, so the second one stops here.
        let _lock = store.lock().map_err(state_error)?;
        let mut state = store.load().map_err(state_error)?;
        // Taken over for this run: in object storage, a second pod that loads the same state
        // and claims it after this one makes this run's next save fail (and stop).
        store.claim(&mut state).map_err(state_error)?;
        let prefix = part_prefix(options.shard.map(|s| s.index));
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
            prepare_resume(&old.snapshot_dir, &[], &prefix).map_err(sink_error)?;
            let _ = std::fs::remove_dir(&old.snapshot_dir);
            store.save(&state).map_err(state_error)?;
        }
        let (checkpoint, resumed) = match state.in_progress.clone() {
            Some(cp) => {
                if let Some(upload) = store.abort_pending_upload().map_err(state_error)? {
                    tracing::info!(job = %self.name, upload = %upload.url, "aborted the killed run's unfinished upload");
                }
                let removed =
                    prepare_resume(&cp.snapshot_dir, &cp.parts, &prefix).map_err(sink_error)?;
                tracing::info!(
                    job = %self.name,
                    run_id = %cp.run_id,
                    position = %cp.position.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "the end".into()),
                    records = cp.records,
                    parts = cp.parts.len(),
                    removed = removed.len(),
                    "resuming the interrupted run"
                );
                (cp, true)
            }
            None => {
                let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
                let now = chrono::Utc::now();
                let snapshot_dir = self.output.render_dir(&self.name, now, &run_id);
                // A snapshot of the same name (a second run on one date) is replaced: its
                // _SUCCESS goes first, so no reader takes it for complete meanwhile.
                unmark(&snapshot_dir).map_err(sink_error)?;
                prepare_resume(&snapshot_dir, &[], &prefix).map_err(sink_error)?;
                let (position, shard, schema) = match options.shard {
                    None => (Some(self.paginator.first(None).position), None, None),
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
                let cp = Checkpoint {
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
                    shard,
                };
                state.in_progress = Some(cp.clone());
                store.save(&state).map_err(state_error)?;
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
            snapshot = %checkpoint.snapshot_dir.display(),
            "run started"
        );

        let (outcome, pages) = match checkpoint.position.clone() {
            // Killed after the last part, before the manifest: nothing left to fetch.
            None => (
                WriteOutcome {
                    state,
                    complete: true,
                    schema: checkpoint.schema.clone().map(Arc::new),
                },
                0,
            ),
            Some(position) => {
                self.pipeline(&store, state, &checkpoint, position, options.stop.clone())
                    .await?
            }
        };
        let WriteOutcome {
            mut state,
            complete,
            schema,
        } = outcome;
        let mut done = state.in_progress.clone().expect("the run's checkpoint");
        if !complete {
            return Err(Error::Internal {
                job: self.name.clone(),
                message: "the pages ended before the last one; the checkpoint is kept".into(),
            });
        }
        if let Some(range) = done.shard.clone() {
            // A shard ends with its last part committed. The snapshot completes once every
            // shard has: the last to finish finalizes it, after its report (see `run`).
            tracing::info!(job = %self.name, shard = %format!("{}/{}", range.index, range.count), records = done.records, "shard complete");
            return Ok(self.summary(done, resumed, pages, started));
        }
        let schema = schema.unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
        let csv_columns_differ =
            self.output.format == crate::sink::Format::Csv && !done.columns_added.is_empty();
        if self.output.compact && csv_columns_differ {
            // CSV parts with different headers cannot be concatenated.
            tracing::warn!(job = %self.name, "columns were added during the run: the CSV parts are kept, not compacted");
        }
        if self.output.compact && done.parts.len() > 1 && !csv_columns_differ {
            // The merged file is durable, then named by the checkpoint, and only then do the
            // parts go: a crash in between resumes into one or the other, never both.
            let merged = crate::sink::snapshot::compact(
                &done.snapshot_dir,
                &self.output,
                schema.clone(),
                &done.parts,
            )
            .map_err(sink_error)?;
            let old = std::mem::replace(&mut done.parts, vec![merged]);
            state.in_progress = Some(done.clone());
            store.save(&state).map_err(state_error)?;
            remove_parts(&done.snapshot_dir, &old).map_err(sink_error)?;
        }
        let finished_at = chrono::Utc::now();
        let manifest = Manifest {
            job: self.name.clone(),
            run_id: done.run_id.clone(),
            started_at: done.started_at,
            finished_at,
            endpoint: self.fetcher.endpoint(),
            format: self.output.format.extension().to_string(),
            records: done.records,
            parts: done.parts.clone(),
            schema: ColumnInfo::of(&schema, &done.columns_added),
            invalid_values_nulled: done.nulled.clone(),
        };
        finalize(&done.snapshot_dir, &manifest, self.output.retain).map_err(sink_error)?;
        store
            .finish(
                &mut state,
                RunRecord {
                    run_id: done.run_id.clone(),
                    finished_at,
                    snapshot_dir: done.snapshot_dir.clone(),
                    records: done.records,
                    high_water: done.high_water.clone(),
                },
            )
            .map_err(state_error)?;
        let summary = self.summary(done, resumed, pages, started);
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

    /// A new shard's range and columns, from a first request: the total it states (or the
    /// configured upper bound) splits the pages, and its records give the columns, so that
    /// every shard of the run writes the same ones. An empty range starts at `None`.
    async fn plan_shard(
        &self,
        shard: crate::paginate::Shard,
    ) -> Result<
        (
            Option<Position>,
            Option<crate::checkpoint::ShardRange>,
            Option<arrow_schema::Schema>,
        ),
        Error,
    > {
        let request = self.paginator.first(None);
        let page = self.fetcher.fetch(&request).await?;
        let paginate_error = |e: crate::paginate::PaginateError| Error::Paginate {
            job: self.name.clone(),
            position: request.position.to_string(),
            message: e.0,
        };
        let mut paginator = self.paginator.clone();
        paginator
            .next(&request, &page.outcome)
            .map_err(paginate_error)?;
        // Which strategy, and whether the total is known, are matters of the job file.
        let (start, end) = paginator
            .plan_shard(shard)
            .map_err(|e| Error::from(ConfigError::field("pagination", e.0)))?;
        let schema = match &self.declared {
            Some(declared) => Some(declared.as_ref().clone()),
            None if page.outcome.records > 0 => Some(
                infer_schema(&page.body[page.records.clone()]).map_err(|message| {
                    Error::Decode {
                        job: self.name.clone(),
                        position: request.position.to_string(),
                        message,
                    }
                })?,
            ),
            None => None,
        };
        let first = match &start {
            Position::Offset { offset: at } | Position::Page { page: at } => Some(*at),
            _ => None,
        };
        let empty = matches!((first, end), (Some(at), Some(end)) if at >= end);
        tracing::info!(job = %self.name, shard = %shard, start = %start, end = ?end, total = ?paginator.total(), "shard range");
        let range = crate::checkpoint::ShardRange {
            index: shard.index,
            count: shard.count,
            start: first,
            end,
        };
        Ok(((!empty).then_some(start), Some(range), schema))
    }

    /// Completes a sharded run's snapshot once every shard is: one manifest naming every
    /// shard's parts in shard order, `_SUCCESS`, `latest.json`, and the run in the job's
    /// history. Refuses (with [`Error::Incomplete`]) while any shard is not complete; a run
    /// already finalized (by another shard) is not an error.
    pub async fn finalize_shards(
        &self,
        count: u64,
        run_id: Option<&str>,
        metrics_dir: Option<&std::path::Path>,
    ) -> Result<FinalizeSummary, Error> {
        let state_error = |source| Error::State {
            job: self.name.clone(),
            source,
        };
        let main = StateStore::open(&self.state_dir, &self.name).map_err(state_error)?;
        // One finalizer at a time on one disk; in object storage the conditional save of
        // the job's state below lets only one record the run.
        let _lock = main.lock().map_err(state_error)?;
        let mut main_state = main.load().map_err(state_error)?;
        let stores = (0..count)
            .map(|i| {
                StateStore::open(
                    &self.state_dir,
                    &crate::checkpoint::shard_state_name(&self.name, i, count),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(state_error)?;
        let mut states = Vec::new();
        for store in &stores {
            states.push(store.load().map_err(state_error)?);
        }
        let run_id = match run_id {
            Some(id) => id.to_string(),
            None => states
                .iter()
                .find_map(|s| s.in_progress.as_ref().map(|c| c.run_id.clone()))
                .or_else(|| main_state.history.first().map(|r| r.run_id.clone()))
                .ok_or_else(|| Error::Incomplete {
                    job: self.name.clone(),
                    waiting: "no shard has started".into(),
                })?,
        };
        if let Some(done) = main_state.history.iter().find(|r| r.run_id == run_id) {
            return Ok(FinalizeSummary {
                job: self.name.clone(),
                run_id,
                snapshot_dir: done.snapshot_dir.clone(),
                records: done.records,
                parts: 0,
                already: true,
            });
        }
        let waiting: Vec<String> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.in_progress {
                Some(cp) if cp.run_id == run_id && cp.position.is_none() => None,
                Some(cp) if cp.run_id == run_id => {
                    Some(format!("shard {i}/{count}: {} records so far", cp.records))
                }
                _ => Some(format!("shard {i}/{count}: not started")),
            })
            .collect();
        if !waiting.is_empty() {
            return Err(Error::Incomplete {
                job: self.name.clone(),
                waiting: waiting.join("; "),
            });
        }
        let shards: Vec<Checkpoint> = states
            .iter()
            .map(|s| s.in_progress.clone().expect("checked above"))
            .collect();
        // Each shard split the pages by the total its own first answer stated: had it
        // changed while they started, the ranges would leave a gap or overlap.
        for (i, pair) in shards.windows(2).enumerate() {
            let (end, next) = (&pair[0].shard, &pair[1].shard);
            if let (Some(end), Some(next)) = (
                end.as_ref().and_then(|r| r.end),
                next.as_ref().and_then(|r| r.start),
            ) && end != next
            {
                return Err(Error::Internal {
                    job: self.name.clone(),
                    message: format!(
                        "shard {i}/{count} ends at {end} but shard {}/{count} starts at {next}: \
                         the API's total changed while the shards started, so records would be \
                         missing or doubled; run the shards again with --fresh, or set \
                         `pagination.total_upper_bound` so that every shard splits alike",
                        i + 1
                    ),
                });
            }
        }
        let fingerprints: std::collections::BTreeSet<_> = shards
            .iter()
            .filter(|c| c.records > 0)
            .filter_map(|c| c.schema_fingerprint.clone())
            .collect();
        if fingerprints.len() > 1 {
            return Err(Error::Internal {
                job: self.name.clone(),
                message: "the shards wrote different columns (a field that appeared in one \
                          shard only, with `schema.drift = \"evolve\"`): declare the columns \
                          in a column file (`schema.file`) and run the shards again"
                    .into(),
            });
        }
        let schema = shards
            .iter()
            .find(|c| c.records > 0)
            .or(shards.first())
            .and_then(|c| c.schema.clone())
            .unwrap_or_else(arrow_schema::Schema::empty);
        let mut nulled = std::collections::BTreeMap::new();
        for (field, n) in shards.iter().flat_map(|c| c.nulled.iter()) {
            *nulled.entry(field.clone()).or_insert(0) += n;
        }
        let snapshot_dir = shards[0].snapshot_dir.clone();
        let finished_at = chrono::Utc::now();
        let manifest = Manifest {
            job: self.name.clone(),
            run_id: run_id.clone(),
            started_at: shards.iter().map(|c| c.started_at).min().expect("shards"),
            finished_at,
            endpoint: self.fetcher.endpoint(),
            format: self.output.format.extension().to_string(),
            records: shards.iter().map(|c| c.records).sum(),
            parts: shards.iter().flat_map(|c| c.parts.clone()).collect(),
            schema: ColumnInfo::of(&schema, &[]),
            invalid_values_nulled: nulled,
        };
        finalize(&snapshot_dir, &manifest, self.output.retain).map_err(|source| Error::Sink {
            job: self.name.clone(),
            source,
        })?;
        let record = RunRecord {
            run_id: run_id.clone(),
            finished_at,
            snapshot_dir: snapshot_dir.clone(),
            records: manifest.records,
            high_water: None,
        };
        let recorded = main
            .claim(&mut main_state)
            .and_then(|()| main.finish(&mut main_state, record.clone()));
        match recorded {
            Ok(()) => {}
            // Another shard finishing at the same moment recorded the run first.
            Err(StateError::Conflict { .. }) => {
                return Ok(FinalizeSummary {
                    job: self.name.clone(),
                    run_id,
                    snapshot_dir,
                    records: manifest.records,
                    parts: manifest.parts.len(),
                    already: true,
                });
            }
            Err(e) => return Err(state_error(e)),
        }
        for (store, mut state) in stores.iter().zip(states) {
            store
                .finish(&mut state, record.clone())
                .map_err(state_error)?;
        }
        self.report_finalized(&main, &stores, count, &shards, &manifest, metrics_dir);
        tracing::info!(job = %self.name, run_id = %run_id, records = manifest.records, parts = manifest.parts.len(), "sharded run finalized");
        Ok(FinalizeSummary {
            job: self.name.clone(),
            run_id,
            snapshot_dir,
            records: manifest.records,
            parts: manifest.parts.len(),
            already: false,
        })
    }

    /// The job's own report and metrics for a sharded run just finalized: the run's records
    /// and bytes from its manifest, its requests, retries and logins added up from the
    /// shards' reports (a shard finishing at this very moment may not have written its
    /// report yet).
    fn report_finalized(
        &self,
        main: &StateStore,
        stores: &[StateStore],
        count: u64,
        shards: &[Checkpoint],
        manifest: &Manifest,
        metrics_dir: Option<&std::path::Path>,
    ) {
        let reports: Vec<crate::report::RunReport> = stores
            .iter()
            .filter_map(crate::report::read)
            .filter(|r| r.run_id.as_deref() == Some(manifest.run_id.as_str()))
            .collect();
        let sum = |f: fn(&crate::report::RunReport) -> u64| reports.iter().map(f).sum();
        let started_at = manifest.started_at;
        let report = crate::report::RunReport {
            job: self.name.clone(),
            shard: None,
            run_id: Some(manifest.run_id.clone()),
            outcome: "success".into(),
            exit_code: 0,
            error: None,
            started_at,
            finished_at: manifest.finished_at,
            duration_secs: (manifest.finished_at - started_at).num_milliseconds() as f64 / 1000.0,
            records: manifest.records,
            pages: sum(|r| r.pages),
            bytes: shards.iter().flat_map(|c| &c.parts).map(|p| p.bytes).sum(),
            requests: sum(|r| r.requests),
            retries: sum(|r| r.retries),
            logins: sum(|r| r.logins),
            reauthentications: sum(|r| r.reauthentications),
            snapshot: Some(shards[0].snapshot_dir.clone()),
        };
        if let Err(e) = crate::report::write(main, &report) {
            tracing::warn!(job = %self.name, error = %e, "cannot write the run report");
        }
        if let Some(dir) = metrics_dir
            && let Err(e) =
                crate::metrics::write(dir, &self.name, &report, Some(manifest.finished_at))
                    .and_then(|()| {
                        crate::metrics::remove_stale_shards(dir, &self.name, Some(count))
                    })
        {
            tracing::warn!(job = %self.name, dir = %dir.display(), error = %e, "cannot write the metrics file");
        }
    }

    /// Fetches from `position` on, decodes, and writes parts, checkpointing after each.
    async fn pipeline(
        &self,
        store: &StateStore,
        state: JobState,
        checkpoint: &Checkpoint,
        position: Position,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<(WriteOutcome, u64), Error> {
        let (page_tx, page_rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let (ahead_tx, ahead_rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let (batch_tx, batch_rx) = mpsc::channel::<ToWriter>(BATCH_CHANNEL);
        // A resumed run keeps its frozen columns; otherwise the declared ones, if any.
        let schema = checkpoint
            .schema
            .clone()
            .map(Arc::new)
            .or_else(|| self.declared.clone());
        let settled = Settled::default();
        let strict = self.drift != crate::config::Drift::Ignore;
        tokio::spawn(decode_ahead(
            self.page_size,
            strict,
            settled.clone(),
            page_rx,
            ahead_tx,
        ));
        let decoder = {
            let job = self.name.clone();
            let page_size = self.page_size;
            let schema = schema.clone();
            let policy = (self.drift, self.on_invalid);
            tokio::task::spawn_blocking(move || {
                decode_stage(&job, page_size, policy, schema, settled, ahead_rx, batch_tx)
            })
        };
        let writer = {
            let job = self.name.clone();
            let output = self.output.clone();
            let store = store.clone();
            let cursor = self.incremental.as_ref().map(|i| i.cursor_field.clone());
            tokio::task::spawn_blocking(move || {
                write_stage(&job, &output, &store, cursor.as_deref(), state, batch_rx)
            })
        };
        let end = checkpoint.shard.as_ref().and_then(|s| s.end);
        let fetched = self.fetch_stage(position, end, page_tx, stop).await;
        let decoded = join(&self.name, decoder).await;
        let written = join(&self.name, writer).await;
        // The first failure in pipeline order is the cause; later ones are its echoes. The
        // parts committed so far stay, and so does the checkpoint that names them.
        let pages = fetched?;
        decoded?;
        Ok((written?, pages))
    }

    /// The columns of the first page, as `apisnap schema infer` proposes them.
    pub async fn infer_columns(&self) -> Result<arrow_schema::Schema, Error> {
        let request = self.paginator.first(None);
        let page = self.fetcher.fetch(&request).await?;
        infer_schema(&page.body[page.records.clone()]).map_err(|message| Error::Decode {
            job: self.name.clone(),
            position: request.position.to_string(),
            message,
        })
    }

    /// Authenticates and fetches the first page only; writes nothing.
    pub async fn check(&self) -> Result<CheckReport, Error> {
        let request = self.paginator.first(None);
        let page = self.fetcher.fetch(&request).await?;
        let slice = &page.body[page.records.clone()];
        let fields = if page.outcome.records == 0 {
            Vec::new()
        } else {
            infer_schema(slice)
                .map_err(|message| Error::Decode {
                    job: self.name.clone(),
                    position: request.position.to_string(),
                    message,
                })?
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().to_string()))
                .collect()
        };
        let mut paginator = self.paginator.clone();
        let _ = paginator.next(&request, &page.outcome);
        let total = paginator.total();
        Ok(CheckReport {
            job: self.name.clone(),
            request: self.fetcher.describe(&request),
            status: page.status.as_u16(),
            bytes: page.body.len(),
            records: page.outcome.records,
            total,
            fields,
            logins: self.fetcher.auth().logins(),
        })
    }

    /// Requests pages until the paginator says stop, keeping up to `concurrency` requests in
    /// flight where the next request is known in advance, and hands them on in page order.
    /// Returns the number of pages.
    async fn fetch_stage(
        &self,
        start: Position,
        end: Option<u64>,
        pages: mpsc::Sender<FetchedPage>,
        mut stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<u64, Error> {
        let interrupted = || Error::Interrupted {
            job: self.name.clone(),
        };
        let mut paginator = self.paginator.clone();
        paginator.set_end(end);
        let mut in_flight: VecDeque<(PageRequest, AbortOnDrop)> = VecDeque::new();
        let mut expected = Some(paginator.request(start));
        let mut previous: Option<(Position, Bytes, std::ops::Range<usize>)> = None;
        let mut count = 0;
        let spawn = |request: &PageRequest| {
            let fetcher = self.fetcher.clone();
            let request = request.clone();
            AbortOnDrop(tokio::spawn(async move { fetcher.fetch(&request).await }))
        };
        loop {
            if in_flight.is_empty() {
                match expected.take() {
                    Some(r) => {
                        let handle = spawn(&r);
                        in_flight.push_back((r, handle));
                    }
                    None => break,
                }
            }
            while in_flight.len() < self.concurrency {
                let last = &in_flight.back().expect("not empty").0;
                match paginator.speculate(last) {
                    Some(r) => {
                        let handle = spawn(&r);
                        in_flight.push_back((r, handle));
                    }
                    None => break,
                }
            }
            let (current, mut handle) = in_flight.pop_front().expect("not empty");
            let joined = match stop.as_mut() {
                Some(stop) if *stop.borrow() => return Err(interrupted()),
                Some(stop) => tokio::select! {
                    joined = &mut handle.0 => joined,
                    // Pages already handed on are finished and committed by the writer;
                    // requests in flight are dropped.
                    _ = stop.wait_for(|s| *s) => return Err(interrupted()),
                },
                None => (&mut handle.0).await,
            };
            let page = joined.map_err(|e| Error::Internal {
                job: self.name.clone(),
                message: format!("a request task stopped: {e}"),
            })??;
            let paginate_error = |message: String| Error::Paginate {
                job: self.name.clone(),
                position: current.position.to_string(),
                message,
            };
            let next = paginator
                .next(&current, &page.outcome)
                .map_err(|e| paginate_error(e.0))?;
            let records = &page.body[page.records.clone()];
            if let Some((at, body, range)) = &previous
                && page.outcome.records > 0
                && body[range.clone()] == *records
            {
                return Err(paginate_error(format!(
                    "the server returned the same records as at {at}: it seems to ignore the \
                     pagination parameters; stopping instead of looping"
                )));
            }
            tracing::debug!(job = %self.name, position = %current.position, records = page.outcome.records, "page");
            count += 1;
            {
                use std::sync::atomic::Ordering::Relaxed;
                self.counters.pages.fetch_add(1, Relaxed);
                self.counters
                    .records
                    .fetch_add(page.outcome.records, Relaxed);
                self.counters
                    .bytes
                    .fetch_add(page.body.len() as u64, Relaxed);
            }
            previous = Some((
                current.position.clone(),
                page.body.clone(),
                page.records.clone(),
            ));
            let fetched = FetchedPage {
                position: current.position,
                next: match &next {
                    Next::Continue(n) => Some(n.position.clone()),
                    Next::Done => None,
                },
                body: page.body,
                records: page.records,
                decoded: None,
            };
            if pages.send(fetched).await.is_err() {
                // The decoder stopped; its error is the one to report.
                break;
            }
            match next {
                Next::Done => break,
                // The speculation in flight is the right next request: keep it.
                Next::Continue(n) if in_flight.front().is_some_and(|(r, _)| *r == n) => {}
                Next::Continue(n) => {
                    // A short page (or the end) proved the speculation wrong: drop it.
                    in_flight.clear();
                    expected = Some(n);
                }
            }
        }
        Ok(count)
    }
}

/// A spawned request that is cancelled when dropped: speculative requests past the end, or
/// past a short page, are abandoned without output.
struct AbortOnDrop(tokio::task::JoinHandle<Result<crate::fetch::Page, crate::fetch::FetchError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn join<T>(job: &str, handle: tokio::task::JoinHandle<Result<T, Error>>) -> Result<T, Error> {
    handle.await.map_err(|e| Error::Internal {
        job: job.to_string(),
        message: format!("a pipeline stage stopped unexpectedly: {e}"),
    })?
}

/// Infers the schema from the first page (unless a resumed run brings it), then decodes
/// every page into batches, each page followed by its end marker. A field that the schema
/// lacks is handled by the drift policy.
fn decode_stage(
    job: &str,
    page_size: usize,
    (drift, on_invalid): (crate::config::Drift, crate::config::OnInvalid),
    schema: Option<SchemaRef>,
    settled: Settled,
    mut pages: mpsc::Receiver<FetchedPage>,
    batches: mpsc::Sender<ToWriter>,
) -> Result<(), Error> {
    use crate::config::Drift;
    let strict = drift != Drift::Ignore;
    let make = |schema: SchemaRef| {
        PageDecoder::new(schema, page_size, strict).map_err(|e| Error::Internal {
            job: job.to_string(),
            message: format!("cannot build the decoder: {e}"),
        })
    };
    let mut current: Option<(SchemaRef, PageDecoder)> = None;
    if let Some(schema) = schema {
        if batches
            .blocking_send(ToWriter::Open(schema.clone()))
            .is_err()
        {
            return Ok(());
        }
        settled.set(&schema);
        current = Some((schema.clone(), make(schema)?));
    }
    while let Some(page) = pages.blocking_recv() {
        let fail = |message: String| Error::Decode {
            job: job.to_string(),
            position: page.position.to_string(),
            message,
        };
        let slice = &page.body[page.records.clone()];
        // The first page with records sets the columns (an empty first page has none).
        let undecided = current.as_ref().is_none_or(|(s, _)| s.fields().is_empty());
        if undecided && (current.is_none() || !slice.starts_with(b"[]")) {
            let schema = Arc::new(infer_schema(slice).map_err(fail)?);
            tracing::debug!(job, fields = schema.fields().len(), "schema inferred");
            if batches
                .blocking_send(ToWriter::Open(schema.clone()))
                .is_err()
            {
                return Ok(());
            }
            settled.set(&schema);
            current = Some((schema.clone(), make(schema)?));
        }
        let (schema, decoder) = current.as_mut().expect("set above");
        let mut nulled = Vec::new();
        let ahead = page
            .decoded
            .filter(|(with, _)| Arc::ptr_eq(with, schema))
            .map(|(_, batches)| batches);
        let decoded = match ahead.map_or_else(|| decoder.decode_all(slice), Ok) {
            Ok(b) => b,
            Err(e) => {
                let added = if strict {
                    crate::decode::new_fields(schema, slice).unwrap_or_default()
                } else {
                    Vec::new()
                };
                if added.is_empty() {
                    // Not a new field: a value the column's type cannot take.
                    if on_invalid == crate::config::OnInvalid::Null {
                        let (repaired, counts) =
                            crate::decode::null_invalid(schema, slice, strict).map_err(fail)?;
                        tracing::warn!(job, position = %page.position, values = ?counts, "values that cannot be read written as null (schema.on_invalid = null)");
                        nulled = counts;
                        // A failed decode leaves the decoder mid-batch: start a clean one.
                        *decoder = make(schema.clone())?;
                        decoder
                            .decode_all(&repaired)
                            .map_err(|e| fail(e.to_string()))?
                    } else {
                        let why = crate::decode::find_invalid(schema, slice, strict)
                            .map(|i| i.to_string())
                            .unwrap_or_else(|| e.to_string());
                        return Err(fail(format!(
                            "{why}. Fix the column file or set `schema.on_invalid = \"null\"` \
                             to write null instead (counted in the manifest)"
                        )));
                    }
                } else {
                    let names: Vec<String> =
                        added.iter().map(|f| format!("`{}`", f.name())).collect();
                    if drift == Drift::Fail {
                        return Err(fail(format!(
                            "the records have field(s) {} that the snapshot's columns do not \
                         (they are fixed by the column file, or else by the first page). Set \
                         `schema.drift = \"evolve\"` to add new fields as columns, or \
                         `\"ignore\"` to drop them",
                            names.join(", ")
                        )));
                    }
                    tracing::warn!(job, position = %page.position, fields = %names.join(", "), "new fields: adding columns (schema.drift = evolve)");
                    let mut fields: Vec<arrow_schema::FieldRef> =
                        schema.fields().iter().cloned().collect();
                    fields.extend(added.into_iter().map(Arc::new));
                    let evolved = Arc::new(arrow_schema::Schema::new(fields));
                    if batches
                        .blocking_send(ToWriter::Open(evolved.clone()))
                        .is_err()
                    {
                        return Ok(());
                    }
                    *decoder = make(evolved.clone())?;
                    settled.set(&evolved);
                    *schema = evolved;
                    decoder.decode_all(slice).map_err(|e| fail(e.to_string()))?
                }
            }
        };
        for batch in decoded {
            if batches.blocking_send(ToWriter::Batch(batch)).is_err() {
                return Ok(());
            }
        }
        if batches
            .blocking_send(ToWriter::PageEnd {
                next: page.next,
                nulled,
            })
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// The columns the decode stage has settled on, for pages decoded ahead.
#[derive(Clone, Default)]
struct Settled(Arc<std::sync::RwLock<Option<SchemaRef>>>);

impl Settled {
    fn set(&self, schema: &SchemaRef) {
        *self.0.write().expect("not poisoned") = Some(schema.clone());
    }

    fn get(&self) -> Option<SchemaRef> {
        self.0.read().expect("not poisoned").clone()
    }
}

/// Decodes pages ahead of the decode stage, several at a time on the blocking pool, and
/// hands them on in page order. A page that does not decode with the settled columns (or
/// arrives before there are any) goes on undecoded: the decode stage decides about it.
async fn decode_ahead(
    page_size: usize,
    strict: bool,
    settled: Settled,
    mut pages: mpsc::Receiver<FetchedPage>,
    out: mpsc::Sender<FetchedPage>,
) {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesOrdered;
    let depth = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            // Hand on finished pages first: the decode stage is waiting for them in order.
            biased;
            Some(page) = pending.next(), if !pending.is_empty() => {
                if out.send(page).await.is_err() {
                    return;
                }
            }
            page = pages.recv(), if open && pending.len() < depth => match page {
                Some(page) => pending.push_back(decode_one(page, page_size, strict, settled.get())),
                None => open = false,
            },
        }
    }
}

async fn decode_one(
    mut page: FetchedPage,
    page_size: usize,
    strict: bool,
    schema: Option<SchemaRef>,
) -> FetchedPage {
    let Some(schema) = schema else {
        return page;
    };

    let (body, range) = (page.body.clone(), page.records.clone());
    let with = schema.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        PageDecoder::new(schema, page_size, strict)
            .ok()?
            .decode_all(&body[range])
            .ok()
    })
    .await
    .ok()
    .flatten();
    page.decoded = decoded.map(|batches| (with, batches));
    page
}

/// Records not yet in a durable part: they join the checkpoint when their part closes.
#[derive(Default)]
struct Pending {
    records: u64,
    /// The highest cursor-field value among them (incremental jobs).
    mark: Option<serde_json::Value>,
    /// Values written as null among them, per column.
    nulled: std::collections::BTreeMap<String, u64>,
}

/// The writer's bookkeeping: the job's state, its checkpoint, and what is not yet in it.
struct Ledger<'a> {
    job: &'a str,
    store: &'a StateStore,
    state: JobState,
    checkpoint: Checkpoint,
    pending: Pending,
}

impl Ledger<'_> {
    /// Moves the checkpoint past the parts now durable, with the pending records, and saves it.
    fn commit(&mut self, parts: &[PartInfo], position: Option<Position>) -> Result<(), Error> {
        let p = std::mem::take(&mut self.pending);
        let checkpoint = &mut self.checkpoint;
        checkpoint.parts = parts.to_vec();
        checkpoint.records += p.records;
        checkpoint.high_water = crate::incremental::higher(checkpoint.high_water.take(), p.mark);
        for (field, n) in p.nulled {
            *checkpoint.nulled.entry(field).or_insert(0) += n;
        }
        checkpoint.position = position;
        self.state.in_progress = Some(checkpoint.clone());
        self.store
            .save(&self.state)
            .map_err(|source| Error::State {
                job: self.job.to_string(),
                source,
            })?;
        tracing::debug!(
            job = self.job,
            records = checkpoint.records,
            parts = checkpoint.parts.len(),
            "checkpoint"
        );
        Ok(())
    }
}

/// Appends batches to part files; at a page end, closes a full part (or the last one),
/// then moves the checkpoint past it. If the input ends early at a page boundary (an error
/// upstream, a stop request), the part being written holds whole pages only and is kept too;
/// otherwise it is dropped with its temporary file.
fn write_stage(
    job: &str,
    output: &OutputConfig,
    store: &StateStore,
    cursor_field: Option<&str>,
    state: JobState,
    mut batches: mpsc::Receiver<ToWriter>,
) -> Result<WriteOutcome, Error> {
    let sink_error = |source| Error::Sink {
        job: job.to_string(),
        source,
    };
    let checkpoint = state.in_progress.clone().expect("a run in progress");
    let mut snapshot: Option<SnapshotWriter> = None;
    let mut schema: Option<SchemaRef> = None;
    // The request after the last page received: where a part closed now would resume.
    let mut resume_at = checkpoint.position.clone();
    let mut ledger = Ledger {
        job,
        store,
        state,
        checkpoint,
        pending: Pending::default(),
    };
    // Whether everything received so far ends with a whole page.
    let mut at_boundary = true;
    while let Some(message) = batches.blocking_recv() {
        match message {
            ToWriter::Open(s) => {
                // A new schema mid-run (evolution): the part being written closes at this
                // page boundary, under the old schema, and the checkpoint moves past it.
                if let Some(previous) = snapshot.as_mut()
                    && previous.has_open_part()
                {
                    previous.close_part().map_err(sink_error)?;
                    let parts = previous.parts().to_vec();
                    ledger.commit(&parts, resume_at.clone())?;
                }
                if let Some(old) = &schema {
                    let first_part = ledger.checkpoint.parts.len();
                    for f in s.fields() {
                        if old.field_with_name(f.name()).is_err() && !old.fields().is_empty() {
                            ledger
                                .checkpoint
                                .columns_added
                                .push((f.name().clone(), first_part));
                        }
                    }
                }
                let target = Target::of(&ledger.checkpoint.snapshot_dir).map_err(sink_error)?;
                let shard = ledger.checkpoint.shard.as_ref().map(|s| s.index);
                snapshot = Some(
                    SnapshotWriter::new(target, output, s.clone(), ledger.checkpoint.parts.clone())
                        .map_err(sink_error)?
                        .named(&part_prefix(shard))
                        .claimed(ledger.state.claimed_by.as_deref(), store.clone()),
                );
                ledger.checkpoint.schema_fingerprint = Some(fingerprint(&s));
                ledger.checkpoint.schema = Some(s.as_ref().clone());
                schema = Some(s);
            }
            ToWriter::Batch(batch) => {
                at_boundary = false;
                ledger.pending.records += batch.num_rows() as u64;
                if let Some(field) = cursor_field {
                    ledger.pending.mark = crate::incremental::higher(
                        ledger.pending.mark.take(),
                        crate::incremental::column_max(&batch, field),
                    );
                }
                snapshot
                    .as_mut()
                    .expect("Open comes first")
                    .write(&batch)
                    .map_err(sink_error)?;
            }
            ToWriter::PageEnd { next, nulled } => {
                at_boundary = true;
                resume_at = next.clone();
                for (field, n) in nulled {
                    *ledger.pending.nulled.entry(field).or_insert(0) += n;
                }
                let writer = snapshot.as_mut().expect("Open comes first");
                let closed = if next.is_none() {
                    writer.close_part()
                } else {
                    writer.end_of_page()
                }
                .map_err(sink_error)?;
                if closed.is_some() || next.is_none() {
                    let parts = writer.parts().to_vec();
                    ledger.commit(&parts, next.clone())?;
                }
                if next.is_none() {
                    return Ok(WriteOutcome {
                        state: ledger.state,
                        complete: true,
                        schema,
                    });
                }
            }
        }
    }
    if let Some(writer) = snapshot.as_mut()
        && writer.has_open_part()
        && at_boundary
    {
        writer.close_part().map_err(sink_error)?;
        let parts = writer.parts().to_vec();
        ledger.commit(&parts, resume_at)?;
        tracing::info!(
            job,
            records = ledger.checkpoint.records,
            "the interrupted run's whole pages are committed"
        );
    }
    Ok(WriteOutcome {
        state: ledger.state,
        complete: false,
        schema,
    })
}
