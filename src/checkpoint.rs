//! The job's state between runs: the checkpoint of a run in progress, the lock that keeps two
//! runs of one job apart, and what past runs left behind.
//!
//! The state file (`<state_dir>/<job>.json`) is replaced atomically (temporary file, fsync,
//! rename, directory fsync) after each part of the snapshot is durable, so it never points
//! past data that is on disk. It holds positions and counts, never a credential.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::paginate::Position;

/// A run in progress: enough to resume it exactly where its last durable part ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// The snapshot directory the run writes into.
    pub snapshot_dir: PathBuf,
    /// The request after the last committed record; `None` once the last page is committed.
    pub position: Option<Position>,
    /// Parts durable under their final names, in order.
    pub parts: Vec<PartInfo>,
    pub records: u64,
    /// The frozen column schema (Arrow's JSON form) and its fingerprint.
    pub schema: Option<arrow_schema::Schema>,
    pub schema_fingerprint: Option<String>,
    /// The incremental value this run sends (kept, so a resumed run sends the same).
    #[serde(default)]
    pub since: Option<String>,
    /// The highest cursor-field value among the committed records.
    #[serde(default)]
    pub high_water: Option<serde_json::Value>,
    /// Columns added by schema evolution, with the first part that has them.
    #[serde(default)]
    pub columns_added: Vec<(String, usize)>,
    /// Values written as null because they could not be read (`on_invalid = "null"`), per
    /// column.
    #[serde(default)]
    pub nulled: std::collections::BTreeMap<String, u64>,
}

/// One part file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The file name, in the snapshot directory.
    pub file: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// What a finished run leaves for the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub finished_at: DateTime<Utc>,
    pub snapshot_dir: PathBuf,
    pub records: u64,
    /// The run's high-water mark, for incremental jobs.
    #[serde(default)]
    pub high_water: Option<serde_json::Value>,
}

/// Everything apisnap keeps about one job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub job: String,
    /// The run to resume, if the last one did not finish.
    pub in_progress: Option<Checkpoint>,
    /// The last few successful runs, newest first.
    #[serde(default)]
    pub history: Vec<RunRecord>,
}

/// How many finished runs the state remembers.
const HISTORY: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "job `{job}` is already running: another apisnap holds the lock {path}. This run did \
         nothing; cron, systemd or Kubernetes started it while the previous one was still \
         going (the next run will pick up the work)"
    )]
    Locked { job: String, path: PathBuf },
}

/// The state directory of a job, and its files.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
    job: String,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>, job: &str) -> Self {
        StateStore {
            dir: dir.into(),
            job: job.to_string(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.job))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, path: &Path, e: impl std::fmt::Display) -> StateError {
        StateError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Takes the job's lock (`flock` on `<job>.lock`), released when the guard drops — also
    /// when the process is killed, so a crash never leaves a stale lock.
    pub fn lock(&self) -> Result<JobLock, StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        let path = self.dir.join(format!("{}.lock", self.job));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                self.remove_stale_temporaries();
                Ok(JobLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Locked {
                job: self.job.clone(),
                path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(self.io(&path, e)),
        }
    }

    /// Temporary state files of a run killed while saving: with the lock held, no one else
    /// is writing them.
    fn remove_stale_temporaries(&self) {
        let prefix = format!(".{}.", self.job);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The job's state; empty when there is none yet.
    pub fn load(&self) -> Result<JobState, StateError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                self.io(
                    &path,
                    format!("{e}: the file is damaged; move it away to start the job afresh"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JobState {
                job: self.job.clone(),
                ..JobState::default()
            }),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    /// Replaces the state atomically and durably.
    pub fn save(&self, state: &JobState) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        let path = self.path();
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{}.", self.job))
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(|e| self.io(&path, e))?;
        let text = serde_json::to_vec_pretty(state).expect("state serializes");
        file.write_all(&text).map_err(|e| self.io(&path, e))?;
        file.as_file().sync_all().map_err(|e| self.io(&path, e))?;
        file.persist(&path).map_err(|e| self.io(&path, e.error))?;
        crate::sink::sync_dir(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        Ok(())
    }

    /// Records a finished run and clears the checkpoint.
    pub fn finish(&self, state: &mut JobState, record: RunRecord) -> Result<(), StateError> {
        state.in_progress = None;
        state.history.insert(0, record);
        state.history.truncate(HISTORY);
        self.save(state)
    }
}

/// Held while a run of the job is going.
pub struct JobLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path(), "events");
        let first = store.lock().unwrap();
        assert!(matches!(store.lock(), Err(StateError::Locked { .. })));
        drop(first);
        store.lock().unwrap();
    }

    #[test]
    fn the_lock_removes_temporaries_of_a_killed_save() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".events.abc123.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join(".other.abc123.tmp"), b"{").unwrap();
        let _lock = StateStore::new(dir.path(), "events").lock().unwrap();
        assert!(!dir.path().join(".events.abc123.tmp").exists());
        assert!(
            dir.path().join(".other.abc123.tmp").exists(),
            "another job's file stays"
        );
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path(), "events");
        let mut state = store.load().unwrap();
        assert_eq!(state.job, "events");
        state.in_progress = Some(Checkpoint {
            run_id: "r".into(),
            started_at: Utc::now(),
            snapshot_dir: "out/x".into(),
            position: Some(Position::Offset { offset: 7 }),
            parts: vec![],
            records: 7,
            schema: Some(arrow_schema::Schema::empty()),
            schema_fingerprint: None,
            since: None,
            high_water: None,
            columns_added: Vec::new(),
            nulled: Default::default(),
        });
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
    }
}
