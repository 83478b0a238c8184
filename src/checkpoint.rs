//! The job's state between runs: the checkpoint of a run in progress, the lock that keeps two
//! runs of one job apart, and what past runs left behind.
//!
//! The state file (`<state_dir>/<job>.json`) is replaced atomically (temporary file, fsync,
//! rename, directory fsync) after each part of the snapshot is durable, so it never points
//! past data that is on disk. It holds positions and counts, never a credential.
//!
//! In object storage (`state_dir = "s3://…"`) there is no lock file and no rename: the state
//! object is replaced with a conditional PUT on the version this process last read or wrote.
//! Each run first claims the state (a write naming it as the owner); a second pod that
//! claims it later makes the first one's next write fail, and that run stops.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object_store::UpdateVersion;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::paginate::Position;
use crate::sink::SinkError;
use crate::sink::snapshot::Claim;
use crate::storage::{Location, PendingUpload, Remote, StorageError, block_on};

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
    /// For one shard of a sharded run: which, and where its pages end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRange>,
}

/// A shard's part of a sharded run (`apisnap run --shard INDEX/COUNT`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    pub index: u64,
    pub count: u64,
    /// This shard's first offset or page (absent in checkpoints of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// The next shard's first offset or page; `None` for the last shard, which reads to the
    /// end.
    pub end: Option<u64>,
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
    /// The run (process) that last claimed the state: a fresh id per claim, so that a claim
    /// always changes the object (and so its ETag) even when nothing else does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
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
    #[error(
        "another apisnap (another pod or machine) took over this run's state at {url}, so \
         this one stops here without writing more; what it committed stays, and the other \
         run goes on from it"
    )]
    Conflict { job: String, url: String },
    #[error("state {url}: {message}")]
    Remote { url: String, message: String },
}

/// The state of a job: its files in a directory, or its objects under a prefix.
#[derive(Clone, Debug)]
pub struct StateStore {
    backend: Backend,
    job: String,
}

#[derive(Clone, Debug)]
enum Backend {
    Local(PathBuf),
    Remote {
        remote: Remote,
        /// The version of the state object this process last read or wrote.
        version: Arc<Mutex<Option<UpdateVersion>>>,
    },
}

/// The name a shard's state is kept under.
pub fn shard_state_name(job: &str, index: u64, count: u64) -> String {
    format!("{job}.shard-{index}-of-{count}")
}

impl StateStore {
    /// A state directory on this machine.
    pub fn new(dir: impl Into<PathBuf>, job: &str) -> Self {
        StateStore {
            backend: Backend::Local(dir.into()),
            job: job.to_string(),
        }
    }

    /// The job's `state_dir` setting: a path, or an object-storage prefix.
    pub fn open(location: &str, job: &str) -> Result<Self, StateError> {
        let backend = match Location::parse(location).map_err(|e| StateError::Remote {
            url: location.to_string(),
            message: e.to_string(),
        })? {
            Location::Local(dir) => Backend::Local(dir),
            Location::Remote(remote) => Backend::Remote {
                remote,
                version: Default::default(),
            },
        };
        Ok(StateStore {
            backend,
            job: job.to_string(),
        })
    }

    fn name(&self) -> String {
        format!("{}.json", self.job)
    }

    /// The name the state is kept under: the job's, or one shard's.
    pub fn state_name(&self) -> &str {
        &self.job
    }

    /// The state file or object, for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(dir) => dir.join(self.name()).display().to_string(),
            Backend::Remote { remote, .. } => remote.url_of(&self.name()),
        }
    }

    /// Writes a small file beside the state (the run report), replacing it.
    pub fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        match &self.backend {
            Backend::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
                let path = dir.join(name);
                let mut file = tempfile::Builder::new()
                    .prefix(&format!(".{name}."))
                    .suffix(".tmp")
                    .tempfile_in(dir)
                    .map_err(|e| self.io(&path, e))?;
                file.write_all(bytes).map_err(|e| self.io(&path, e))?;
                file.as_file().sync_all().map_err(|e| self.io(&path, e))?;
                file.persist(&path).map_err(|e| self.io(&path, e.error))?;
                Ok(())
            }
            Backend::Remote { remote, .. } => {
                block_on(remote.put(name, bytes.to_vec().into())).map_err(|e| self.remote(e))
            }
        }
    }

    /// The names of the files beside the state.
    pub fn file_names(&self) -> Result<Vec<String>, StateError> {
        match &self.backend {
            Backend::Local(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => Ok(entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.io(dir, e)),
            },
            Backend::Remote { remote, .. } => block_on(remote.names()).map_err(|e| self.remote(e)),
        }
    }

    /// A small file beside the state, if there is one.
    pub fn get_file(&self, name: &str) -> Option<Vec<u8>> {
        match &self.backend {
            Backend::Local(dir) => std::fs::read(dir.join(name)).ok(),
            Backend::Remote { remote, .. } => block_on(remote.get(name))
                .ok()
                .flatten()
                .map(|(bytes, _)| bytes.to_vec()),
        }
    }

    fn remote(&self, e: StorageError) -> StateError {
        match e {
            StorageError::Conflict { url } => StateError::Conflict {
                job: self.job.clone(),
                url,
            },
            other => StateError::Remote {
                url: self.describe(),
                message: other.to_string(),
            },
        }
    }

    fn io(&self, path: &Path, e: impl std::fmt::Display) -> StateError {
        StateError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Takes the job's lock (`flock` on `<job>.lock`), released when the guard drops — also
    /// when the process is killed, so a crash never leaves a stale lock. Object storage has
    /// no lock: the conditional writes of the state stand in for it.
    pub fn lock(&self) -> Result<JobLock, StateError> {
        let Backend::Local(dir) = &self.backend else {
            return Ok(JobLock { _file: None });
        };
        std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let path = dir.join(format!("{}.lock", self.job));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                self.remove_stale_temporaries(dir);
                Ok(JobLock { _file: Some(file) })
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
    fn remove_stale_temporaries(&self, dir: &Path) {
        let prefix = format!(".{}.", self.job);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.<job>.<random>.tmp` only: `.<job>.shard-1-of-4.<random>.tmp` belongs to a
            // shard, whose run holds its own lock and may be saving right now.
            let ours = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .is_some_and(|random| !random.contains('.'));
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The job's state; empty when there is none yet.
    pub fn load(&self) -> Result<JobState, StateError> {
        let bytes = match &self.backend {
            Backend::Local(dir) => match std::fs::read(dir.join(self.name())) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(self.io(&dir.join(self.name()), e)),
            },
            Backend::Remote { remote, version } => {
                let got = block_on(remote.get(&self.name())).map_err(|e| self.remote(e))?;
                let (bytes, at) = got.unzip();
                *version.lock().expect("not poisoned") = at;
                bytes.map(|b| b.to_vec())
            }
        };
        match bytes {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
                path: PathBuf::from(self.describe()),
                message: format!("{e}: the state is damaged; move it away to start the job afresh"),
            }),
            None => Ok(JobState {
                job: self.job.clone(),
                ..JobState::default()
            }),
        }
    }

    /// Takes the state over for this run: saves it naming this process as the owner. In
    /// object storage, whoever claims later wins, and the earlier run's next save fails.
    pub fn claim(&self, state: &mut JobState) -> Result<(), StateError> {
        state.claimed_by = Some(uuid::Uuid::new_v4().to_string());
        self.save(state)
    }

    /// In object storage: fails with [`StateError::Conflict`] if another run has written the
    /// state since this process last did (asked before each upload, so that a run that lost
    /// its claim stops before writing more).
    pub fn check_claim(&self) -> Result<(), StateError> {
        let Backend::Remote { remote, version } = &self.backend else {
            return Ok(());
        };
        let ours = version.lock().expect("not poisoned").clone();
        let now = block_on(remote.version(&self.name())).map_err(|e| self.remote(e))?;
        if ours.is_some() && now.as_ref().map(|v| &v.e_tag) == ours.as_ref().map(|v| &v.e_tag) {
            Ok(())
        } else {
            Err(StateError::Conflict {
                job: self.job.clone(),
                url: self.describe(),
            })
        }
    }

    fn upload_name(&self) -> String {
        format!("{}.upload.json", self.job)
    }

    /// Aborts the multipart upload a killed run left unfinished, if any.
    pub fn abort_pending_upload(&self) -> Result<Option<PendingUpload>, StateError> {
        let Some(bytes) = self.get_file(&self.upload_name()) else {
            return Ok(None);
        };
        let Ok(upload) = serde_json::from_slice::<PendingUpload>(&bytes) else {
            return Ok(None);
        };
        block_on(upload.abort()).map_err(|e| self.remote(e))?;
        self.remove_file(&self.upload_name())?;
        Ok(Some(upload))
    }

    fn remove_file(&self, name: &str) -> Result<(), StateError> {
        match &self.backend {
            Backend::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io(&dir.join(name), e)),
            },
            Backend::Remote { remote, .. } => {
                block_on(remote.delete(name)).map_err(|e| self.remote(e))
            }
        }
    }

    /// Replaces the state atomically and durably (in object storage: only if no one else
    /// has written it since this process last did).
    pub fn save(&self, state: &JobState) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(state).expect("state serializes");
        let dir = match &self.backend {
            Backend::Local(dir) => dir,
            Backend::Remote { remote, version } => {
                let mut version = version.lock().expect("not poisoned");
                let written = block_on(remote.put_if(&self.name(), text.into(), version.clone()))
                    .map_err(|e| self.remote(e))?;
                *version = Some(written);
                return Ok(());
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let path = dir.join(self.name());
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{}.", self.job))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| self.io(&path, e))?;
        file.write_all(&text).map_err(|e| self.io(&path, e))?;
        file.as_file().sync_all().map_err(|e| self.io(&path, e))?;
        file.persist(&path).map_err(|e| self.io(&path, e.error))?;
        crate::sink::sync_dir(dir).map_err(|e| self.io(dir, e))?;
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

impl Claim for StateStore {
    fn check(&self) -> Result<(), SinkError> {
        Ok(self.check_claim()?)
    }

    fn uploading(&self, upload: Option<&PendingUpload>) -> Result<(), SinkError> {
        match upload {
            Some(upload) => self.put_file(
                &self.upload_name(),
                &serde_json::to_vec(upload).expect("serializes"),
            )?,
            None => self.remove_file(&self.upload_name())?,
        }
        Ok(())
    }
}

/// Held while a run of the job is going.
pub struct JobLock {
    _file: Option<File>,
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
        let shard = dir.path().join(".events.shard-0-of-2.abc123.tmp");
        std::fs::write(&shard, b"{").unwrap();
        let _lock = StateStore::new(dir.path(), "events").lock().unwrap();
        assert!(!dir.path().join(".events.abc123.tmp").exists());
        assert!(
            dir.path().join(".other.abc123.tmp").exists(),
            "another job's file stays"
        );
        assert!(
            shard.exists(),
            "a shard's file stays: its run holds its own lock"
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
            shard: None,
        });
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
    }
}
