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

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::paginate::Position;
pub use crate::sink::PartInfo;
use crate::storage::{Location, Lock, PendingUpload, StorageError, Store, Version};

/// A run in progress: enough to resume it exactly where its last durable part ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// The snapshot directory the run writes into.
    pub snapshot_dir: Location,
    /// The complete snapshot this run replaces once it is complete itself: the run writes
    /// beside it (`snapshot_dir` is then a hidden sibling) and exchanges the two at the end,
    /// so that the old one stays readable until the new one takes its place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Location>,
    /// The request after the last committed record; `None` once the last page is committed.
    pub position: Option<Position>,
    /// Parts durable under their final names, in order.
    pub parts: Vec<PartInfo>,
    /// Where the run stood at the end of each part, in step with `parts`: a resumed run
    /// that finds a part missing or damaged goes back to the end of the last good one.
    /// Absent in checkpoints of older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_ends: Vec<PartEnd>,
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
    /// Cursor-field values past the run's start and its tolerance, left out of the mark.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub future_marks: u64,
    /// Records whose key came before in the run (`on_duplicate = "keep_newest"`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: u64,
    /// Columns added by schema evolution, with the first part that has them.
    #[serde(default)]
    pub columns_added: Vec<(String, usize)>,
    /// Values written as null because they could not be read (`on_invalid = "null"`), per
    /// column.
    #[serde(default)]
    pub nulled: std::collections::BTreeMap<String, u64>,
    /// Values of fields the columns lack, dropped (`schema.drift = "ignore"`), per field.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// The records the API stated the pages hold (a total pointer, a `Content-Range`
    /// total), once the last page has told: what the completed snapshot is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated_records: Option<u64>,
    /// The fingerprint of the pagination settings the positions were made under
    /// ([`crate::paginate::Paginator::fingerprint`]); absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<String>,
    /// For one shard of a sharded run: which, and where its pages end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRange>,
    /// For a sliced run (`[partitions]`, `[windows]`): its slices and where each stands.
    /// `position` is then the first page's while any slice remains, and `None` after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<crate::slice::SliceProgress>,
}

/// The run's bookkeeping at the end of one part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartEnd {
    /// The request after the part's last record (`None`: it was the last page).
    pub position: Option<Position>,
    /// Records in this part and the ones before it.
    pub records: u64,
    /// The highest cursor-field value in them.
    #[serde(default)]
    pub high_water: Option<serde_json::Value>,
    /// Cursor-field values past the run's start in them, left out of the mark.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub future_marks: u64,
    /// Records in them whose key came before in the run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: u64,
    /// Values written as null in them, per column.
    #[serde(default)]
    pub nulled: std::collections::BTreeMap<String, u64>,
    /// Values of fields the columns lack, dropped (`schema.drift = "ignore"`), per field.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped: std::collections::BTreeMap<String, u64>,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a finished run leaves for the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub finished_at: DateTime<Utc>,
    pub snapshot_dir: Location,
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
    /// A windowed job's marks: per partition, where its last complete run's windows ended
    /// (`windows.start = "mark"` starts there).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub window_marks: crate::slice::Marks,
    /// An incremental partitioned job's high-water marks, per partition (by
    /// [`crate::slice::partition_key`]).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub partition_high_water: std::collections::BTreeMap<String, serde_json::Value>,
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

/// The state of a job (or of one shard of a sharded run), and the small files kept beside
/// it (the run report, the note of an open upload), in its [`Store`].
#[derive(Clone, Debug)]
pub struct StateStore {
    store: Store,
    /// The job's name, or a shard's ([`shard_state_name`]).
    name: String,
    /// The version of the state this process last read or wrote.
    version: Arc<Mutex<Option<Version>>>,
}

/// The name a shard's state is kept under.
pub fn shard_state_name(job: &str, index: u64, count: u64) -> String {
    format!("{job}.shard-{index}-of-{count}")
}

impl StateStore {
    /// A state directory on this machine.
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        Self::on(Store::local(dir), name)
    }

    /// The job's `state_dir`: a path, or an object-storage prefix.
    pub fn open(location: &Location, name: &str) -> Result<Self, StateError> {
        let store = Store::open(location).map_err(|e| StateError::Remote {
            url: location.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::on(store, name))
    }

    /// The state `name` in the same store.
    pub fn sibling(&self, name: &str) -> Self {
        Self::on(self.store.clone(), name)
    }

    fn on(store: Store, name: &str) -> Self {
        StateStore {
            store,
            name: name.to_string(),
            version: Default::default(),
        }
    }

    fn file(&self) -> String {
        format!("{}.json", self.name)
    }

    /// The name the state is kept under: the job's, or one shard's.
    pub fn state_name(&self) -> &str {
        &self.name
    }

    /// The state file or object, for messages.
    pub fn describe(&self) -> String {
        self.store.url_of(&self.file())
    }

    fn failed(&self, e: StorageError) -> StateError {
        match e {
            StorageError::Conflict { url } => StateError::Conflict {
                job: self.name.clone(),
                url,
            },
            StorageError::Locked { path } => StateError::Locked {
                job: self.name.clone(),
                path,
            },
            StorageError::Local { path, source } => StateError::Io {
                path,
                message: source.to_string(),
            },
            StorageError::Remote { url, message } => StateError::Remote { url, message },
            other => StateError::Remote {
                url: self.describe(),
                message: other.to_string(),
            },
        }
    }

    /// Writes a small file beside the state (the run report), replacing it.
    pub async fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.store
            .put(name, bytes.to_vec().into())
            .await
            .map(|_| ())
            .map_err(|e| self.failed(e))
    }

    /// The names of the files beside the state.
    pub async fn file_names(&self) -> Result<Vec<String>, StateError> {
        self.store.names().await.map_err(|e| self.failed(e))
    }

    /// A small file beside the state, if there is one.
    pub async fn get_file(&self, name: &str) -> Option<Vec<u8>> {
        let (bytes, _) = self.store.get(name).await.ok().flatten()?;
        Some(bytes.to_vec())
    }

    async fn remove_file(&self, name: &str) -> Result<(), StateError> {
        self.store.delete(name).await.map_err(|e| self.failed(e))
    }

    /// Takes the job's lock (`<job>.lock`), released when the guard drops — also when the
    /// process is killed, so a crash never leaves a stale lock. Object storage has no lock:
    /// the conditional writes of the state stand in for it.
    pub async fn lock(&self) -> Result<Lock, StateError> {
        let lock = self
            .store
            .lock(&format!("{}.lock", self.name))
            .map_err(|e| self.failed(e))?;
        // Temporary state files of a run killed while saving: with the lock held, no one
        // else is writing them. A shard's (`.<job>.shard-1-of-4.json.…`) stay: its run
        // holds its own lock and may be saving right now.
        let file = self.file();
        let _ = self.store.remove_temporaries(|of| of == file).await;
        Ok(lock)
    }

    /// The job's state; empty when there is none yet.
    pub async fn load(&self) -> Result<JobState, StateError> {
        let got = self
            .store
            .get(&self.file())
            .await
            .map_err(|e| self.failed(e))?;
        let (bytes, version) = got.unzip();
        *self.version.lock().expect("not poisoned") = version;
        match bytes {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Io {
                path: PathBuf::from(self.describe()),
                message: format!("{e}: the state is damaged; move it away to start the job afresh"),
            }),
            None => Ok(JobState {
                job: self.name.clone(),
                ..JobState::default()
            }),
        }
    }

    /// Takes the state over for this run: saves it naming this process as the owner. In
    /// object storage, whoever claims later wins, and the earlier run's next save fails.
    pub async fn claim(&self, state: &mut JobState) -> Result<(), StateError> {
        state.claimed_by = Some(uuid::Uuid::new_v4().to_string());
        self.save(state).await
    }

    /// Fails with [`StateError::Conflict`] if another run has written the state since this
    /// process last did (asked before each upload, so that a run that lost its claim stops
    /// before writing more).
    pub async fn check_claim(&self) -> Result<(), StateError> {
        let ours = self.version.lock().expect("not poisoned").clone();
        let unchanged = self
            .store
            .unchanged(&self.file(), &ours.unwrap_or_default())
            .await
            .map_err(|e| self.failed(e))?;
        if unchanged {
            Ok(())
        } else {
            Err(StateError::Conflict {
                job: self.name.clone(),
                url: self.describe(),
            })
        }
    }

    fn upload_note(&self) -> String {
        format!("{}.upload.json", self.name)
    }

    /// Notes an open multipart upload, so that a run resuming after a kill aborts it.
    pub async fn note_upload(&self, upload: &PendingUpload) -> Result<(), StateError> {
        self.put_file(
            &self.upload_note(),
            &serde_json::to_vec(upload).expect("serializes"),
        )
        .await
    }

    /// The noted upload has completed.
    pub async fn clear_upload_note(&self) -> Result<(), StateError> {
        self.remove_file(&self.upload_note()).await
    }

    /// Aborts the multipart upload a killed run left unfinished, if any.
    pub async fn abort_pending_upload(&self) -> Result<Option<PendingUpload>, StateError> {
        let Some(bytes) = self.get_file(&self.upload_note()).await else {
            return Ok(None);
        };
        let Ok(upload) = serde_json::from_slice::<PendingUpload>(&bytes) else {
            return Ok(None);
        };
        Store::abort(&upload).await.map_err(|e| self.failed(e))?;
        self.clear_upload_note().await?;
        Ok(Some(upload))
    }

    /// Replaces the state atomically and durably (in object storage: only if no one else
    /// has written it since this process last did).
    pub async fn save(&self, state: &JobState) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(state).expect("state serializes");
        let expected = self.version.lock().expect("not poisoned").clone();
        let written = self
            .store
            .put_if(&self.file(), text.into(), expected.as_ref())
            .await
            .map_err(|e| self.failed(e))?;
        *self.version.lock().expect("not poisoned") = Some(written);
        Ok(())
    }

    /// Records a finished run and clears the checkpoint.
    pub async fn finish(&self, state: &mut JobState, record: RunRecord) -> Result<(), StateError> {
        state.in_progress = None;
        state.history.insert(0, record);
        state.history.truncate(HISTORY);
        self.save(state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path(), "events");
        let first = store.lock().await.unwrap();
        assert!(matches!(store.lock().await, Err(StateError::Locked { .. })));
        drop(first);
        store.lock().await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_lock_removes_temporaries_of_a_killed_save() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".events.json.abc123.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join(".other.json.abc123.tmp"), b"{").unwrap();
        let shard = dir.path().join(".events.shard-0-of-2.json.abc123.tmp");
        std::fs::write(&shard, b"{").unwrap();
        let _lock = StateStore::new(dir.path(), "events").lock().await.unwrap();
        assert!(!dir.path().join(".events.json.abc123.tmp").exists());
        assert!(
            dir.path().join(".other.json.abc123.tmp").exists(),
            "another job's file stays"
        );
        assert!(
            shard.exists(),
            "a shard's file stays: its run holds its own lock"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path(), "events");
        let mut state = store.load().await.unwrap();
        assert_eq!(state.job, "events");
        state.in_progress = Some(Checkpoint {
            run_id: "r".into(),
            started_at: Utc::now(),
            snapshot_dir: Location::parse("out/x").unwrap(),
            replaces: None,
            position: Some(Position::Offset { offset: 7 }),
            parts: vec![],
            part_ends: vec![],
            records: 7,
            schema: Some(arrow_schema::Schema::empty()),
            schema_fingerprint: None,
            since: None,
            high_water: None,
            future_marks: 0,
            duplicates: 0,
            columns_added: Vec::new(),
            nulled: Default::default(),
            dropped: Default::default(),
            stated_records: None,
            pagination: None,
            shard: None,
            slices: None,
        });
        store.save(&state).await.unwrap();
        assert_eq!(store.load().await.unwrap(), state);
    }
}
