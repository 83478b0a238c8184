//! Files written in a [`Staging`] directory and published under their name: on disk in
//! place, in object storage by an upload that is complete under its key or absent.

use std::path::{Path, PathBuf};

use object_store::multipart::PartId;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};

use super::disk::{parent, sync_dir};
use super::location::join_key;
use super::store::{Backend, Remote};
use super::{Location, StorageError, Store};

/// Parts larger than this are sent as multipart uploads.
const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// The size of each part of a multipart upload (S3's minimum is 5 MiB).
const MULTIPART_CHUNK: usize = 16 * 1024 * 1024;

/// A local directory in which files are written before [`Store::upload`] publishes them:
/// the store's own directory on disk, a temporary spool directory for object storage.
pub struct Staging {
    dir: PathBuf,
    _spool: Option<tempfile::TempDir>,
}

impl Staging {
    /// Where to write the file to be published as `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Spool directories are named `apisnap-spool-<pid>-<random>` in the temporary directory:
/// a process killed before it removed its own leaves one, which the next process to spool
/// removes once that pid is gone.
const SPOOL_PREFIX: &str = "apisnap-spool-";

/// Removes the spool directories in `tmp` that processes no longer running left (killed
/// runs: on a cron host they would pile up), and those of an older form (no pid) more than
/// a day old. Best effort: what cannot be removed stays for the next sweep.
pub(crate) fn sweep_spools(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(SPOOL_PREFIX)) else {
            continue;
        };
        let owner = rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let gone = match owner {
            Some(pid) if pid == me => false,
            Some(pid) => !process_alive(pid),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(86_400)),
        };
        if gone && entry.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed the spool a killed run left")
                }
                Err(e) => {
                    tracing::debug!(dir = %entry.path().display(), error = %e, "cannot remove a stale spool")
                }
            }
        }
    }
}

/// Whether a process with this pid runs (one of another user's counts as running).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A multipart upload that was started: enough to abort it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingUpload {
    /// The object being uploaded, `s3://bucket/key`.
    pub url: String,
    pub id: String,
}

/// A staged file on its way to its name: [`pending`](Upload::pending) says whether an
/// upload is open that a killed run would leave behind (note it before
/// [`finish`](Upload::finish)).
pub struct Upload<'a> {
    store: &'a Store,
    name: String,
    from: PathBuf,
    multipart: Option<(Key, String)>,
}

impl Store {
    /// Where to write files that [`upload`](Self::upload) then publishes.
    pub fn staging(&self) -> Result<Staging, StorageError> {
        match &self.backend {
            Backend::Local(dir) => Ok(Staging {
                dir: dir.clone(),
                _spool: None,
            }),
            Backend::Remote(_) => {
                // What killed runs left first, once per process.
                static SWEPT: std::sync::Once = std::sync::Once::new();
                SWEPT.call_once(|| sweep_spools(&std::env::temp_dir()));
                let spool = tempfile::Builder::new()
                    .prefix(&format!("{SPOOL_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .map_err(|e| StorageError::local(&std::env::temp_dir(), e))?;
                Ok(Staging {
                    dir: spool.path().to_path_buf(),
                    _spool: Some(spool),
                })
            }
        }
    }

    /// A file of this store on this machine's disk, to read: the file itself, or a copy
    /// downloaded into `staging`.
    pub async fn local_copy(&self, name: &str, staging: &Staging) -> Result<PathBuf, StorageError> {
        if let Backend::Local(dir) = &self.backend {
            return Ok(dir.join(name));
        }
        let (bytes, _) = self.get(name).await?.ok_or_else(|| StorageError::Remote {
            url: self.url_of(name),
            message: "it is missing".into(),
        })?;
        let path = staging.path(name);
        std::fs::write(&path, &bytes).map_err(|e| StorageError::local(&path, e))?;
        Ok(path)
    }

    /// Starts publishing the staged file `from` as `name`: complete under its name or not
    /// at all. For a large file in object storage this opens a multipart upload, to be
    /// noted where a run resuming after a kill finds it ([`Upload::pending`]).
    pub async fn upload(&self, name: &str, from: &Path) -> Result<Upload<'_>, StorageError> {
        let mut upload = Upload {
            store: self,
            name: name.to_string(),
            from: from.to_path_buf(),
            multipart: None,
        };
        if let Backend::Remote(r) = &self.backend {
            let size = std::fs::metadata(from)
                .map_err(|e| StorageError::local(from, e))?
                .len();
            if size > MULTIPART_THRESHOLD {
                let key = join_key(&r.prefix, name);
                let id = r
                    .multipart
                    .create_multipart(&key)
                    .await
                    .map_err(|e| self.failed(name, e))?;
                upload.multipart = Some((key, id));
            }
        }
        Ok(upload)
    }

    /// Aborts an upload a killed run left open; one already gone is not an error.
    pub async fn abort(upload: &PendingUpload) -> Result<(), StorageError> {
        let store = Store::open(&Location::parse(&upload.url)?)?;
        let Backend::Remote(r) = &store.backend else {
            return Ok(());
        };
        match r.multipart.abort_multipart(&r.prefix, &upload.id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store.failed("", e)),
        }
    }
}

impl Upload<'_> {
    /// The open multipart upload, if any: what a run resuming after a kill must abort.
    pub fn pending(&self) -> Option<PendingUpload> {
        self.multipart.as_ref().map(|(_, id)| PendingUpload {
            url: self.store.url_of(&self.name),
            id: id.clone(),
        })
    }

    /// Gives up: an open multipart upload is aborted (best effort).
    pub async fn abort(self) {
        if let (Backend::Remote(r), Some((key, id))) = (&self.store.backend, &self.multipart) {
            let _ = r.multipart.abort_multipart(key, id).await;
        }
    }

    /// Sends the file (in object storage, then removes the staged copy); on failure an open
    /// multipart upload is aborted.
    pub async fn finish(self) -> Result<(), StorageError> {
        let store = self.store;
        let Backend::Remote(r) = &store.backend else {
            // Staged in place: the writer made it durable under its name already.
            let to = store.local_path(&self.name);
            if to != self.from {
                std::fs::rename(&self.from, &to).map_err(|e| StorageError::local(&to, e))?;
                sync_dir(parent(&to))?;
            }
            return Ok(());
        };
        let local = |e| StorageError::local(&self.from, e);
        match &self.multipart {
            None => {
                let bytes = tokio::fs::read(&self.from).await.map_err(local)?;
                r.store
                    .put(&join_key(&r.prefix, &self.name), PutPayload::from(bytes))
                    .await
                    .map_err(|e| store.failed(&self.name, e))?;
            }
            Some((key, id)) => {
                let sent = self.send_parts(r, key, id).await;
                if sent.is_err() {
                    // Best effort: the next run aborts it too, and a bucket lifecycle rule
                    // for incomplete uploads is the backstop.
                    let _ = r.multipart.abort_multipart(key, id).await;
                }
                sent?;
            }
        }
        std::fs::remove_file(&self.from).map_err(local)
    }

    async fn send_parts(&self, r: &Remote, key: &Key, id: &String) -> Result<(), StorageError> {
        use tokio::io::AsyncReadExt;
        let local = |e| StorageError::local(&self.from, e);
        let failed = |e| self.store.failed(&self.name, e);
        let mut file = tokio::fs::File::open(&self.from).await.map_err(local)?;
        let mut parts: Vec<PartId> = Vec::new();
        loop {
            let mut chunk = Vec::with_capacity(MULTIPART_CHUNK);
            (&mut file)
                .take(MULTIPART_CHUNK as u64)
                .read_to_end(&mut chunk)
                .await
                .map_err(local)?;
            if chunk.is_empty() {
                break;
            }
            let part = r
                .multipart
                .put_part(key, id, parts.len(), PutPayload::from(chunk))
                .await
                .map_err(failed)?;
            parts.push(part);
        }
        r.multipart
            .complete_multipart(key, id, parts)
            .await
            .map_err(failed)?;
        Ok(())
    }
}

impl Store {
    fn local_path(&self, name: &str) -> PathBuf {
        match &self.backend {
            Backend::Local(dir) => dir.join(name),
            Backend::Remote(_) => PathBuf::from(self.url_of(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spools_of_processes_that_are_gone_are_removed_and_others_kept() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid that surely ran and is gone: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let make = |name: &str| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("part-00000.parquet"), b"x").unwrap();
            dir
        };
        let killed = make(&format!("{SPOOL_PREFIX}{dead}-abc123"));
        let mine = make(&format!("{SPOOL_PREFIX}{}-def456", std::process::id()));
        let running = make(&format!("{SPOOL_PREFIX}1-ghi789")); // init: always there
        let recent_old_form = make(&format!("{SPOOL_PREFIX}Xy12ab"));
        let other = make("someone-elses");
        sweep_spools(tmp.path());
        assert!(!killed.exists(), "a killed run's spool is removed");
        for kept in [mine, running, recent_old_form, other] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }
}
