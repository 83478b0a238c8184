//! Where snapshots and state live: a local directory, or a prefix in object storage
//! (`s3://bucket/prefix`, `gs://…`, `az://…`) through the `object_store` crate.
//!
//! Object storage has no rename, so nothing here pretends to one: an object appears under
//! its key complete or not at all (one PUT, or a completed multipart upload), and the state
//! object is replaced with a conditional PUT (`If-Match` on the ETag read), which is what
//! keeps two pods from both committing one run. Credentials come from each cloud's standard
//! chain (environment, web identity, instance metadata), never from job files.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// Parts larger than this are sent as multipart uploads.
const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// The size of each part of a multipart upload (S3's minimum is 5 MiB).
const MULTIPART_CHUNK: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("`{location}`: {message}")]
    Location { location: String, message: String },
    #[error("{url}: {message}")]
    Remote { url: String, message: String },
    /// A conditional write lost: the object changed since it was read.
    #[error("{url} was changed by another writer since this run read it")]
    Conflict { url: String },
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where something lives.
#[derive(Clone, Debug)]
pub enum Location {
    Local(PathBuf),
    Remote(Remote),
}

/// The URL schemes that name object storage.
const SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// Whether `text` names object storage (rather than a local path).
pub fn is_remote(text: &str) -> bool {
    text.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme))
}

/// Checks the form of a location without building a client (for `apisnap validate`).
pub fn check(text: &str) -> Result<(), String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok(());
    };
    if scheme != "file" && !SCHEMES.contains(&scheme) {
        return Err(format!(
            "unknown scheme `{scheme}://` in `{text}`: expected s3://, gs://, az://, file:// or a path"
        ));
    }
    if scheme != "file" && rest.split('/').next().is_none_or(str::is_empty) {
        return Err(format!(
            "`{text}` names no bucket: expected {scheme}://BUCKET/PREFIX"
        ));
    }
    Ok(())
}

impl Location {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
    /// `file:///absolute/path` or a plain path. Builds the client (no request is made).
    pub fn parse(text: &str) -> Result<Location, StorageError> {
        let bad = |message: String| StorageError::Location {
            location: text.to_string(),
            message,
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        if scheme == "file" {
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if !SCHEMES.contains(&scheme) {
            return Err(bad(format!(
                "unknown scheme `{scheme}://`: expected s3://, gs://, az://, file:// or a path"
            )));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("no bucket: expected {scheme}://BUCKET/PREFIX")));
        }
        let built = |e: object_store::Error| {
            bad(format!(
                "cannot set up the client: {e} (credentials come from the cloud's standard \
                 environment variables, web identity or instance metadata)"
            ))
        };
        let root = format!("{scheme}://{bucket}");
        let (store, multipart) = match scheme {
            "s3" => both(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&root)
                    .build()
                    .map_err(built)?,
            ),
            "gs" => both(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(&root)
                    .build()
                    .map_err(built)?,
            ),
            _ => both(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(&root)
                    .build()
                    .map_err(built)?,
            ),
        };
        let prefix = Key::parse(prefix.trim_end_matches('/'))
            .map_err(|e| bad(format!("not a valid object key prefix: {e}")))?;
        Ok(Location::Remote(Remote {
            store,
            multipart,
            root,
            prefix,
        }))
    }
}

/// One client, seen through both interfaces.
fn both<S: ObjectStore + MultipartStore>(
    store: S,
) -> (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) {
    let store = Arc::new(store);
    (store.clone(), store)
}

/// A prefix in an object store.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    /// `s3://bucket`
    root: String,
    prefix: Key,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

impl Remote {
    /// `s3://bucket/prefix`
    pub fn url(&self) -> String {
        if self.prefix.as_ref().is_empty() {
            self.root.clone()
        } else {
            format!("{}/{}", self.root, self.prefix)
        }
    }

    /// The URL of `name` below this prefix.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{}", self.url(), name)
    }

    /// The prefix one level down.
    pub fn child(&self, name: &str) -> Remote {
        Remote {
            prefix: self.key(name),
            ..self.clone()
        }
    }

    /// The prefix one level up (`None` at the bucket).
    pub fn parent(&self) -> Option<Remote> {
        let parts: Vec<_> = self.prefix.parts().collect();
        let (_, up) = parts.split_last()?;
        Some(Remote {
            prefix: Key::from_iter(up.iter().cloned()),
            ..self.clone()
        })
    }

    fn key(&self, name: &str) -> Key {
        name.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.prefix.clone(), |key, part| key.join(part))
    }

    fn failed(&self, name: &str, e: object_store::Error) -> StorageError {
        StorageError::Remote {
            url: self.url_of(name),
            message: e.to_string(),
        }
    }

    /// The object `name` and its version, or `None` if there is none.
    pub async fn get(&self, name: &str) -> Result<Option<(Bytes, UpdateVersion)>, StorageError> {
        match self.store.get(&self.key(name)).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got.bytes().await.map_err(|e| self.failed(name, e))?;
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// The current version of `name`, or `None` if there is none.
    pub async fn version(&self, name: &str) -> Result<Option<UpdateVersion>, StorageError> {
        match self.store.head(&self.key(name)).await {
            Ok(meta) => Ok(Some(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// Writes `name`, replacing what is there.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.key(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.failed(name, e))
    }

    /// Writes `name` only if it is still at `expected` (or, with `None`, does not exist yet).
    /// Returns the new version.
    pub async fn put_if(
        &self,
        name: &str,
        bytes: Bytes,
        expected: Option<UpdateVersion>,
    ) -> Result<UpdateVersion, StorageError> {
        let mode = match expected {
            Some(version) => PutMode::Update(version),
            None => PutMode::Create,
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.key(name), PutPayload::from(bytes), options)
            .await
        {
            Ok(done) => Ok(done.into()),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Err(StorageError::Conflict {
                url: self.url_of(name),
            }),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// Deletes `name`; one that is not there is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.key(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// The objects below this prefix, as names relative to it.
    pub async fn list(&self) -> Result<Vec<String>, StorageError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.failed("", e))?;
        let depth = self.prefix.parts().count();
        Ok(metas
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(depth)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    /// The names of the objects directly below this prefix (not in "subdirectories").
    pub async fn names(&self) -> Result<Vec<String>, StorageError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.failed("", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect())
    }

    /// Uploads the local file `from` as `name`: complete under its key or not at all (one
    /// PUT, or for a large file a multipart upload that is completed last and aborted on
    /// failure). `started` hears of a multipart upload before its first part, so that it can
    /// be kept where a run resuming after a kill finds it and aborts it.
    pub async fn upload<E: From<StorageError>>(
        &self,
        name: &str,
        from: &Path,
        started: impl FnOnce(&PendingUpload) -> Result<(), E>,
    ) -> Result<(), E> {
        let local = |source| StorageError::Local {
            path: from.to_path_buf(),
            source,
        };
        let size = tokio::fs::metadata(from).await.map_err(local)?.len();
        if size <= MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(from).await.map_err(local)?;
            return Ok(self.put(name, Bytes::from(bytes)).await?);
        }
        let key = self.key(name);
        let id = self
            .multipart
            .create_multipart(&key)
            .await
            .map_err(|e| self.failed(name, e))?;
        let pending = PendingUpload {
            url: self.url_of(name),
            id: id.clone(),
        };
        let sent = async {
            started(&pending)?;
            use tokio::io::AsyncReadExt;
            let mut file = tokio::fs::File::open(from).await.map_err(local)?;
            let mut parts = Vec::new();
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
                let part = self
                    .multipart
                    .put_part(&key, &id, parts.len(), PutPayload::from(chunk))
                    .await
                    .map_err(|e| self.failed(name, e))?;
                parts.push(part);
            }
            self.multipart
                .complete_multipart(&key, &id, parts)
                .await
                .map_err(|e| self.failed(name, e))?;
            Ok(())
        }
        .await;
        if sent.is_err() {
            // Best effort: the next run aborts it too, and a bucket lifecycle rule for
            // incomplete uploads is the backstop.
            let _ = self.multipart.abort_multipart(&key, &id).await;
        }
        sent
    }
}

/// A multipart upload that was started: enough to abort it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingUpload {
    /// The object being uploaded, `s3://bucket/key`.
    pub url: String,
    pub id: String,
}

impl PendingUpload {
    /// Aborts the upload (left behind by a killed run); one already gone is not an error.
    pub async fn abort(&self) -> Result<(), StorageError> {
        let Location::Remote(remote) = Location::parse(&self.url)? else {
            return Ok(());
        };
        match remote
            .multipart
            .abort_multipart(&remote.prefix, &self.id.clone())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote.failed("", e)),
        }
    }
}

/// Runs an object-store call from synchronous code: the writer's thread, or a runtime
/// worker (which hands its other tasks to another worker meanwhile).
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(future)),
        // Outside any runtime (`apisnap status`): a small one for this call.
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime starts")
            .block_on(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert!(
            matches!(Location::parse("out/x").unwrap(), Location::Local(p) if p == Path::new("out/x"))
        );
        assert!(
            matches!(Location::parse("file:///srv/x").unwrap(), Location::Local(p) if p == Path::new("/srv/x"))
        );
        let Location::Remote(r) = Location::parse("s3://bucket/a/b/").unwrap() else {
            panic!("remote");
        };
        assert_eq!(r.url(), "s3://bucket/a/b");
        assert_eq!(r.child("c").url_of("d.json"), "s3://bucket/a/b/c/d.json");
        assert_eq!(r.parent().unwrap().url(), "s3://bucket/a");
        assert_eq!(r.parent().unwrap().parent().unwrap().url(), "s3://bucket");
        assert!(r.parent().unwrap().parent().unwrap().parent().is_none());
        let e = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
        assert!(
            Location::parse("s3:///x")
                .unwrap_err()
                .to_string()
                .contains("no bucket")
        );
        assert!(is_remote("gs://b/p") && !is_remote("file:///x") && !is_remote("out"));
    }
}
