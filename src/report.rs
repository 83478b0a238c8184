//! The run report: one small JSON file per job beside its state (`<state_dir>/<job>.report.json`),
//! replaced after every run, for people and scripts asking "did last night's run work?".
//! Each shard of a sharded run reports beside its own state
//! (`<job>.shard-I-of-N.report.json`), so a failed shard is never hidden by another's success.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{StateError, StateStore};
use crate::paginate::Shard;
use crate::storage::Location;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A complete snapshot (or, for a shard, its part of one).
    Success,
    Failed,
    /// Stopped by SIGTERM or Ctrl-C; the checkpoint is resumable.
    Interrupted,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        })
    }
}

/// How the last run of a job ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub job: String,
    /// `INDEX/COUNT`, for one shard of a sharded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The run's id (that of the checkpoint it continued, when resumed).
    pub run_id: Option<String>,
    pub outcome: Outcome,
    pub exit_code: u8,
    /// The error, for a run that did not succeed.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_secs: f64,
    /// Records in the snapshot (or committed so far, for a run that did not finish).
    pub records: u64,
    pub pages: u64,
    pub bytes: u64,
    pub requests: u64,
    pub retries: u64,
    pub logins: u64,
    /// Tokens renewed after a 401.
    #[serde(default)]
    pub reauthentications: u64,
    /// Requests in flight: adaptive or fixed, the limit at the end and the highest it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<crate::concurrency::ConcurrencyReport>,
    /// The most pages held at once ahead of one that was waiting (a `Retry-After`), and the
    /// bytes of them held in a temporary file.
    #[serde(default)]
    pub held_pages_peak: u64,
    #[serde(default)]
    pub held_on_disk_bytes: u64,
    /// Records whose cursor value was past the run's start (and its tolerance): left out of
    /// the high-water mark, each an anomaly to look into.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub future_marks: u64,
    pub snapshot: Option<Location>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The report's name beside the state it reports on (the job's, or one shard's).
pub fn name(state_name: &str) -> String {
    format!("{state_name}.report.json")
}

/// Replaces the report beside the store's state (the job's, or one shard's).
pub async fn write(store: &StateStore, report: &RunReport) -> Result<(), StateError> {
    store
        .put_file(
            &name(store.state_name()),
            &serde_json::to_vec_pretty(report).expect("reports serialize"),
        )
        .await
}

/// The last report beside the store's state, if any.
pub async fn read(store: &StateStore) -> Option<RunReport> {
    serde_json::from_slice(&store.get_file(&name(store.state_name())).await?).ok()
}

/// The reports of the shards of the job's latest sharded run, in shard order.
pub async fn read_shards(store: &StateStore, job: &str) -> Result<Vec<RunReport>, StateError> {
    let prefix = format!("{job}.shard-");
    let mut reports: Vec<RunReport> = Vec::new();
    for n in store.file_names().await? {
        if !(n.starts_with(&prefix) && n.ends_with(".report.json")) {
            continue;
        }
        let Some(bytes) = store.get_file(&n).await else {
            continue;
        };
        match serde_json::from_slice::<RunReport>(&bytes) {
            // A shard refused before it knew its run (no `--run-id`) belongs to no run.
            Ok(r) if r.job == job && r.shard.is_some() && r.run_id.is_some() => reports.push(r),
            _ => {}
        }
    }
    let latest = reports
        .iter()
        .max_by_key(|r| r.finished_at)
        .and_then(|r| r.run_id.clone());
    reports.retain(|r| r.run_id == latest);
    reports.sort_by_key(|r| r.shard.map(|s| s.index));
    Ok(reports)
}
