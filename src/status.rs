//! `apisnap status`: per job, the last run, the last success, an interrupted run that the
//! next `run` resumes, and the next scheduled time. Only reads. One typed value, printed for
//! people ([`std::fmt::Display`]) and serialized for scripts (`--json`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Error;
use crate::checkpoint::StateStore;
use crate::config::JobDefinition;
use crate::report::RunReport;
use crate::storage::Location;

/// What `apisnap status` says of one job.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub job: String,
    /// The report of the job's last run (a whole run's, or a finalized sharded run's).
    pub last_run: Option<RunReport>,
    /// The reports of the shards of the job's latest sharded run, unless a later whole run
    /// reported since.
    pub last_sharded_run: Option<Vec<RunReport>>,
    pub last_success: Option<LastSuccess>,
    pub resumable: Option<Resumable>,
    /// The next scheduled time, in the schedule's time zone.
    pub next_run: Option<String>,
}

/// The job's last successful run.
#[derive(Clone, Debug, Serialize)]
pub struct LastSuccess {
    pub run_id: String,
    pub finished_at: DateTime<Utc>,
    pub records: u64,
    pub snapshot: Location,
}

/// An interrupted run that the next `apisnap run` resumes.
#[derive(Clone, Debug, Serialize)]
pub struct Resumable {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub records: u64,
    pub parts: usize,
    /// The request it resumes at; `None` when only the manifest is left to write.
    pub position: Option<String>,
    pub snapshot: Location,
}

impl JobStatus {
    /// Reads the job's state and reports (from disk or object storage) as of `now`.
    pub async fn of(def: &JobDefinition, now: DateTime<Utc>) -> Result<JobStatus, Error> {
        let state_error = |source| Error::State {
            job: def.name.clone(),
            source,
        };
        let store = StateStore::open(&def.job.state_dir, &def.name).map_err(state_error)?;
        let state = store.load().await.map_err(state_error)?;
        let next_run = def
            .job
            .schedule
            .as_ref()
            .and_then(|s| s.upcoming(now, 1).ok())
            .and_then(|t| t.into_iter().next())
            .map(|t| t.to_rfc3339());
        let last_run = crate::report::read(&store).await;
        let mut shards = crate::report::read_shards(&store, &def.name)
            .await
            .map_err(state_error)?;
        // A sharded run that a later whole run's report succeeded is history.
        if let Some(l) = &last_run
            && !shards
                .iter()
                .any(|r| r.run_id == l.run_id || r.finished_at >= l.finished_at)
        {
            shards.clear();
        }
        Ok(JobStatus {
            job: def.name.clone(),
            last_run,
            last_sharded_run: (!shards.is_empty()).then_some(shards),
            last_success: state.history.first().map(|r| LastSuccess {
                run_id: r.run_id.clone(),
                finished_at: r.finished_at,
                records: r.records,
                snapshot: r.snapshot_dir.clone(),
            }),
            resumable: state.in_progress.as_ref().map(|c| Resumable {
                run_id: c.run_id.clone(),
                started_at: c.started_at,
                records: c.records,
                parts: c.parts.len(),
                position: c.position.as_ref().map(|p| p.to_string()),
                snapshot: c.snapshot_dir.clone(),
            }),
            next_run,
        })
    }
}

/// A report's outcome, time and error, on one line.
fn ended(r: &RunReport) -> String {
    let error = r.error.as_ref().map(|e| format!(": {e}"));
    format!(
        "{} at {}{}",
        r.outcome,
        r.finished_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        error.unwrap_or_default()
    )
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.job)?;
        if let Some(r) = &self.last_run {
            writeln!(f, "  last run: {}", ended(r))?;
        }
        if let Some(shards) = &self.last_sharded_run {
            let first = &shards[0];
            writeln!(
                f,
                "  sharded run {}: {} of {} shards reported",
                first.run_id.as_deref().unwrap_or_default(),
                shards.len(),
                first.shard.map_or("?".into(), |s| s.count.to_string())
            )?;
            for r in shards {
                let shard = r.shard.map(|s| s.to_string()).unwrap_or_default();
                writeln!(f, "    shard {shard}: {}", ended(r))?;
            }
        }
        match &self.last_success {
            Some(l) => writeln!(
                f,
                "  last success: {} ({} records) -> {}",
                l.finished_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                l.records,
                l.snapshot
            )?,
            None => writeln!(f, "  last success: never")?,
        }
        if let Some(r) = &self.resumable {
            writeln!(
                f,
                "  interrupted run {}: {} records in {} part(s), resumes at {}",
                r.run_id,
                r.records,
                r.parts,
                r.position.as_deref().unwrap_or("the end")
            )?;
        }
        if let Some(n) = &self.next_run {
            writeln!(f, "  next run: {n}")?;
        }
        Ok(())
    }
}
