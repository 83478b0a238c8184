//! The run report: one small JSON file per job beside its state (`<state_dir>/<job>.report.json`),
//! replaced after every run, for people and scripts asking "did last night's run work?".

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How the last run of a job ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub job: String,
    /// The run's id (that of the checkpoint it continued, when resumed).
    pub run_id: Option<String>,
    /// `success`, `failed` or `interrupted`.
    pub outcome: String,
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
    pub snapshot: Option<PathBuf>,
}

/// Where a job's report lives.
pub fn path(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join(format!("{job}.report.json"))
}

/// Replaces the report atomically.
pub fn write(state_dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.report.", report.job))
        .suffix(".tmp")
        .tempfile_in(state_dir)?;
    file.write_all(&serde_json::to_vec_pretty(report).expect("reports serialize"))?;
    file.as_file().sync_all()?;
    file.persist(path(state_dir, &report.job))
        .map_err(|e| e.error)?;
    Ok(())
}

/// The last report of a job, if any.
pub fn read(state_dir: &Path, job: &str) -> Option<RunReport> {
    serde_json::from_slice(&std::fs::read(path(state_dir, job)).ok()?).ok()
}
