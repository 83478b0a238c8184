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
                let spool = tempfile::Builder::new()
                    .prefix("apisnap-spool-")
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
