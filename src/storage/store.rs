//! [`Store`]: an opened location, and the operations on its objects.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::disk::{AtomicFile, Lock, parent, sync_dir};
use super::location::{Place, join_key};
use super::{Location, StorageError};

/// The version of an object as it was read or written, for [`Store::put_if`].
#[derive(Clone, Debug, Default)]
pub struct Version(Option<UpdateVersion>);

/// An opened [`Location`]: the operations apisnap needs, on disk or in object storage.
#[derive(Clone)]
pub struct Store {
    pub(super) location: Location,
    pub(super) backend: Backend,
}

#[derive(Clone)]
pub(super) enum Backend {
    Local(PathBuf),
    Remote(Remote),
}

#[derive(Clone)]
pub(super) struct Remote {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) multipart: Arc<dyn MultipartStore>,
    pub(super) prefix: Key,
}

/// Where [`Store::swap`] moves a directory aside: a hidden sibling.
fn aside_of(dir: &std::path::Path) -> std::path::PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(dir).join(format!(".{name}.apisnap-aside"))
}

/// One client per bucket for the life of the process: building one reads the environment
/// and sets up a connection pool.
type Clients = (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>);

fn clients(root: &str, location: &str) -> Result<Clients, StorageError> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Clients>>> = OnceLock::new();
    let mut cache = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    if let Some(found) = cache.get(root) {
        return Ok(found.clone());
    }
    let built = |e: object_store::Error| StorageError::Location {
        location: location.to_string(),
        message: format!(
            "cannot set up the client: {e} (credentials come from the cloud's standard \
             environment variables, web identity or instance metadata)"
        ),
    };
    let made = match root.split_once("://").map(|(s, _)| s) {
        Some("s3") => both(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(root)
                .build()
                .map_err(built)?,
        ),
        Some("gs") => both(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(root)
                .build()
                .map_err(built)?,
        ),
        _ => both(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(root)
                .build()
                .map_err(built)?,
        ),
    };
    cache.insert(root.to_string(), made.clone());
    Ok(made)
}

/// One client, seen through both interfaces.
fn both<S: ObjectStore + MultipartStore>(store: S) -> Clients {
    let store = Arc::new(store);
    (store.clone(), store)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.location)
    }
}

impl Store {
    /// Opens `location` (in object storage: the process's client for its bucket; no
    /// request is made).
    pub fn open(location: &Location) -> Result<Store, StorageError> {
        let backend = match &location.place {
            Place::Local(dir) => Backend::Local(dir.clone()),
            Place::Remote { root, prefix } => {
                let (store, multipart) = clients(root, &location.text)?;
                Backend::Remote(Remote {
                    store,
                    multipart,
                    prefix: prefix.clone(),
                })
            }
        };
        Ok(Store {
            location: location.clone(),
            backend,
        })
    }

    /// A directory on this machine.
    pub fn local(dir: impl Into<PathBuf>) -> Store {
        let dir = dir.into();
        Store {
            location: Location {
                text: dir.display().to_string(),
                place: Place::Local(dir.clone()),
            },
            backend: Backend::Local(dir),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// `name` below this store, for messages: a path or a URL.
    pub fn url_of(&self, name: &str) -> String {
        self.location.join(name).to_string()
    }

    /// The store one level down.
    pub fn child(&self, name: &str) -> Store {
        let backend = match &self.backend {
            Backend::Local(dir) => Backend::Local(dir.join(name)),
            Backend::Remote(r) => Backend::Remote(Remote {
                prefix: join_key(&r.prefix, name),
                ..r.clone()
            }),
        };
        Store {
            location: self.location.join(name),
            backend,
        }
    }

    /// The store one level up.
    pub fn parent(&self) -> Option<Store> {
        let location = self.location.parent()?;
        let backend = match (&self.backend, &location.place) {
            (Backend::Local(_), Place::Local(dir)) => Backend::Local(dir.clone()),
            (Backend::Remote(r), Place::Remote { prefix, .. }) => Backend::Remote(Remote {
                prefix: prefix.clone(),
                ..r.clone()
            }),
            _ => unreachable!("a parent is of its child's kind"),
        };
        Some(Store { location, backend })
    }

    /// Whether [`swap`](Self::swap) can exchange this place with another at once: two
    /// directories of one disk can; prefixes of a bucket cannot.
    pub fn can_swap(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// Exchanges two directories of one disk in one step (`renameat2` with
    /// `RENAME_EXCHANGE`): a reader of either path sees the old contents or the new, never
    /// neither. Where the file system cannot exchange (NFS), `other` is moved aside and
    /// this one put in its place; a swap stopped between those renames is finished by the
    /// next call (`other` missing: this one goes in, the one aside comes back here).
    pub async fn swap(&self, other: &Store) -> Result<(), StorageError> {
        let (Backend::Local(a), Backend::Local(b)) = (&self.backend, &other.backend) else {
            return Err(StorageError::Location {
                location: self.location.to_string(),
                message: "object storage cannot exchange two prefixes".into(),
            });
        };
        let aside = aside_of(b);
        if !b.exists() {
            std::fs::rename(a, b).map_err(|e| StorageError::local(a, e))?;
            if aside.exists() {
                std::fs::rename(&aside, a).map_err(|e| StorageError::local(&aside, e))?;
            }
            return sync_dir(parent(b));
        }
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &std::path::Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| StorageError::local(p, std::io::Error::other("a NUL in the path")))
        };
        let (ca, cb) = (c(a)?, c(b)?);
        // SAFETY: both are NUL-terminated paths that outlive the call.
        let done = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if done != 0 {
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
                return Err(StorageError::local(a, e));
            }
            tracing::warn!(dir = %b.display(), "the file system cannot exchange directories: replacing in two renames");
            if aside.exists() {
                std::fs::remove_dir_all(&aside).map_err(|e| StorageError::local(&aside, e))?;
            }
            std::fs::rename(b, &aside).map_err(|e| StorageError::local(b, e))?;
            std::fs::rename(a, b).map_err(|e| StorageError::local(a, e))?;
            std::fs::rename(&aside, a).map_err(|e| StorageError::local(&aside, e))?;
        }
        sync_dir(parent(a))?;
        if parent(a) != parent(b) {
            sync_dir(parent(b))?;
        }
        Ok(())
    }

    /// Removes what a swap into this directory stopped midway may have left beside it.
    pub async fn clear_swap_leftovers(&self) -> Result<(), StorageError> {
        let Backend::Local(dir) = &self.backend else {
            return Ok(());
        };
        let aside = aside_of(dir);
        match std::fs::remove_dir_all(&aside) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::local(&aside, e)),
        }
    }

    /// Whether writers on other machines may write here at the same time, unseen by
    /// [`lock`](Self::lock) (object storage): what they write must carry names of their
    /// own.
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }

    pub(super) fn failed(&self, name: &str, e: object_store::Error) -> StorageError {
        let url = self.url_of(name);
        StorageError::Remote {
            message: super::readable(&url, &e),
            url,
        }
    }
}

impl Store {
    /// The object `name` and its version, or `None` if there is none.
    pub async fn get(&self, name: &str) -> Result<Option<(Bytes, Version)>, StorageError> {
        match &self.backend {
            Backend::Local(dir) => {
                let path = dir.join(name);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some((Bytes::from(bytes), Version::default()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StorageError::local(&path, e)),
                }
            }
            Backend::Remote(r) => match r.store.get(&join_key(&r.prefix, name)).await {
                Ok(got) => {
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    let bytes = got.bytes().await.map_err(|e| self.failed(name, e))?;
                    Ok(Some((bytes, Version(Some(version)))))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.failed(name, e)),
            },
        }
    }

    /// Whether `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool, StorageError> {
        match &self.backend {
            Backend::Local(dir) => Ok(dir.join(name).is_file()),
            Backend::Remote(r) => match r.store.head(&join_key(&r.prefix, name)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.failed(name, e)),
            },
        }
    }

    /// Whether `name` is still at `version`: nobody else has written it since. On disk the
    /// job's lock keeps other writers out, so it always is.
    pub async fn unchanged(&self, name: &str, version: &Version) -> Result<bool, StorageError> {
        let Backend::Remote(r) = &self.backend else {
            return Ok(true);
        };
        let Some(ours) = &version.0 else {
            return Ok(false);
        };
        match r.store.head(&join_key(&r.prefix, name)).await {
            Ok(meta) => Ok(meta.e_tag == ours.e_tag),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// Writes `name` durably, replacing what is there: complete under its name or not at all.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<Version, StorageError> {
        match &self.backend {
            Backend::Local(dir) => {
                let path = dir.join(name);
                let (file, mut handle) = AtomicFile::create(&path)?;
                handle
                    .write_all(&bytes)
                    .map_err(|e| StorageError::local(&path, e))?;
                file.commit(handle)?;
                Ok(Version::default())
            }
            Backend::Remote(r) => r
                .store
                .put(&join_key(&r.prefix, name), PutPayload::from(bytes))
                .await
                .map(|done| Version(Some(done.into())))
                .map_err(|e| self.failed(name, e)),
        }
    }

    /// Makes `name` lead to `relative` (a place below this one, `2026-12-01` or
    /// `_current/v000007`), replacing what it led to in one step so that tools open the
    /// newest version by a fixed path without reading JSON: on disk a relative symlink, made
    /// under a temporary name and renamed over the old one; in object storage, which has no
    /// links, the object `NAME.txt` holding the place's URL on one line.
    pub async fn point(&self, name: &str, relative: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(dir) => {
                let link = dir.join(name);
                if link.exists() && !link.is_symlink() {
                    return Err(StorageError::local(
                        &link,
                        std::io::Error::other(
                            "is not a link apisnap made: move it away so that it can point to \
                             the newest version",
                        ),
                    ));
                }
                let temporary = dir.join(format!(".{name}.{}.tmp", fastrand::u64(..)));
                std::os::unix::fs::symlink(relative, &temporary)
                    .map_err(|e| StorageError::local(&temporary, e))?;
                if let Err(e) = std::fs::rename(&temporary, &link) {
                    let _ = std::fs::remove_file(&temporary);
                    return Err(StorageError::local(&link, e));
                }
                sync_dir(dir)
            }
            Backend::Remote(_) => {
                let line = format!("{}\n", self.url_of(relative));
                self.put(&format!("{name}.txt"), line.into_bytes().into())
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Makes the names in this place durable (a directory's fsync); nothing to do in
    /// object storage, where a write is durable once acknowledged.
    pub async fn sync(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(dir) => sync_dir(dir),
            Backend::Remote(_) => Ok(()),
        }
    }

    /// Where `name` leads ([`point`](Self::point)), relative to this place; `None` if it
    /// leads nowhere yet; an error if it leads outside.
    pub async fn pointed(&self, name: &str) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Local(dir) => match std::fs::read_link(dir.join(name)) {
                Ok(target) => target.to_str().map(|t| Some(t.to_string())).ok_or_else(|| {
                    StorageError::local(
                        &dir.join(name),
                        std::io::Error::other("leads to a path that is not UTF-8"),
                    )
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StorageError::local(&dir.join(name), e)),
            },
            Backend::Remote(_) => {
                let Some((bytes, _)) = self.get(&format!("{name}.txt")).await? else {
                    return Ok(None);
                };
                let url = String::from_utf8_lossy(&bytes).trim().to_string();
                let base = format!("{}/", self.location);
                match url.strip_prefix(&base) {
                    Some(relative) => Ok(Some(relative.to_string())),
                    None => Err(StorageError::Remote {
                        url: self.url_of(&format!("{name}.txt")),
                        message: format!("leads to {url}, outside {}", self.location),
                    }),
                }
            }
        }
    }

    /// Copies `name` to the same name in `to`, another place of the same disk or bucket,
    /// without reading it here: a hard link on disk, a copy made by the service in object
    /// storage.
    pub async fn copy_to(&self, name: &str, to: &Store) -> Result<(), StorageError> {
        match (&self.backend, &to.backend) {
            (Backend::Local(from), Backend::Local(dir)) => {
                let (src, dst) = (from.join(name), dir.join(name));
                std::fs::create_dir_all(dir).map_err(|e| StorageError::local(dir, e))?;
                let _ = std::fs::remove_file(&dst);
                if std::fs::hard_link(&src, &dst).is_err() {
                    // Another file system: a real copy, made durable.
                    std::fs::copy(&src, &dst).map_err(|e| StorageError::local(&dst, e))?;
                    File::open(&dst)
                        .and_then(|f| f.sync_all())
                        .map_err(|e| StorageError::local(&dst, e))?;
                }
                sync_dir(dir)
            }
            (Backend::Remote(a), Backend::Remote(b)) => a
                .store
                .copy(&join_key(&a.prefix, name), &join_key(&b.prefix, name))
                .await
                .map_err(|e| self.failed(name, e)),
            _ => Err(StorageError::Location {
                location: to.location.to_string(),
                message: "a copy between disk and object storage".into(),
            }),
        }
    }

    /// Writes `name` only if it is still at `expected` (or, with `None`, does not exist yet),
    /// and returns the new version; [`StorageError::Conflict`] if another writer came first.
    /// On disk the lock stands in for the condition.
    pub async fn put_if(
        &self,
        name: &str,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Version, StorageError> {
        let Backend::Remote(r) = &self.backend else {
            return self.put(name, bytes).await;
        };
        let mode = match expected.and_then(|v| v.0.clone()) {
            Some(version) => PutMode::Update(version),
            None => PutMode::Create,
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match r
            .store
            .put_opts(&join_key(&r.prefix, name), PutPayload::from(bytes), options)
            .await
        {
            Ok(done) => Ok(Version(Some(done.into()))),
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
        match &self.backend {
            Backend::Local(dir) => {
                let path = dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => sync_dir(parent(&path)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(StorageError::local(&path, e)),
                }
            }
            Backend::Remote(r) => match r.store.delete(&join_key(&r.prefix, name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.failed(name, e)),
            },
        }
    }

    /// Takes the lock `name` (`flock`), or fails with [`StorageError::Locked`]. Object
    /// storage has no lock: there the conditional writes of [`put_if`](Self::put_if) stand
    /// in for it.
    pub fn lock(&self, name: &str) -> Result<Lock, StorageError> {
        let Backend::Local(dir) = &self.backend else {
            return Ok(Lock { _file: None });
        };
        std::fs::create_dir_all(dir).map_err(|e| StorageError::local(dir, e))?;
        let path = dir.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::local(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Lock { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(StorageError::local(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_local_store_on_a_current_thread_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path());
        store
            .put("a.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let (bytes, version) = store.get("a.json").await.unwrap().unwrap();
        assert_eq!(&bytes[..], b"{}");
        assert!(store.unchanged("a.json", &version).await.unwrap());
        std::fs::write(dir.path().join(".a.json.xyz.tmp"), b"{").unwrap();
        std::fs::write(dir.path().join(".b.json.xyz.tmp"), b"{").unwrap();
        let removed = store.remove_temporaries(|n| n == "a.json").await.unwrap();
        assert_eq!(removed, [".a.json.xyz.tmp"]);
        let mut names = store.names().await.unwrap();
        names.sort();
        assert_eq!(names, [".b.json.xyz.tmp", "a.json"]);
        let lock = store.lock("a.lock").unwrap();
        assert!(matches!(
            store.lock("a.lock"),
            Err(StorageError::Locked { .. })
        ));
        drop(lock);
        store.delete("a.json").await.unwrap();
        assert!(!store.exists("a.json").await.unwrap());
        // Two directories exchanged in one step.
        let (old, new) = (store.child("old"), store.child("new"));
        old.put("x", Bytes::from_static(b"old")).await.unwrap();
        new.put("x", Bytes::from_static(b"new")).await.unwrap();
        assert!(old.can_swap());
        new.swap(&old).await.unwrap();
        assert_eq!(&old.get("x").await.unwrap().unwrap().0[..], b"new");
        assert_eq!(&new.get("x").await.unwrap().unwrap().0[..], b"old");
        // A two-rename replacement stopped after moving the target aside is finished.
        std::fs::rename(
            dir.path().join("old"),
            dir.path().join(".old.apisnap-aside"),
        )
        .unwrap();
        new.swap(&old).await.unwrap();
        assert_eq!(&old.get("x").await.unwrap().unwrap().0[..], b"old");
        assert_eq!(&new.get("x").await.unwrap().unwrap().0[..], b"new");
        assert!(!dir.path().join(".old.apisnap-aside").exists());
    }
}
