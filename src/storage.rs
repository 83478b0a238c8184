//! Where snapshots and state live: a local directory, or a prefix in object storage
//! (`s3://bucket/prefix`, `gs://…`, `az://…`) through the `object_store` crate.
//!
//! This is the only module that knows whether a place is on this machine's disk or in a
//! bucket. A [`Location`] is the validated text of a place and holds no client; a [`Store`]
//! opened on it offers the operations apisnap needs, the same for both:
//!
//! - durable [`put`](Store::put): on disk a temporary name, fsync, rename and a directory
//!   fsync; in object storage one PUT, which makes the object appear whole or not at all;
//! - [`get`](Store::get) with a [`Version`], and [`put_if`](Store::put_if), which replaces an
//!   object only if it is still at the version read (`If-Match`): what keeps two pods from
//!   both committing one run. On disk the job's [`lock`](Store::lock) keeps other writers out
//!   instead, so there a version never goes stale;
//! - files written in a [`Staging`] directory and then published under their name
//!   ([`Store::upload`]): on disk they were written in place, in object storage they are
//!   uploaded (one PUT, or a multipart upload completed last);
//! - list, delete, and a lock.
//!
//! Every operation is async, so callers never block a runtime worker; the writer's thread
//! reaches them through its runtime handle. Credentials come from each cloud's standard chain
//! (environment, web identity, instance metadata), never from job files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
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
    /// Another process holds the lock.
    #[error("{path} is locked by another process")]
    Locked { path: PathBuf },
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn local(path: &Path, source: std::io::Error) -> Self {
        StorageError::Local {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The URL schemes that name object storage.
const SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// A place, as the user wrote it, checked: a path, `file:///path`, or
/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`. Written in state and
/// reports as that text; two locations are equal when they name the same place.
#[derive(Clone)]
pub struct Location {
    text: String,
    place: Place,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Remote {
        /// `s3://bucket`
        root: String,
        prefix: Key,
    },
}

impl Location {
    /// Checks the form of `text`; builds no client and makes no request.
    pub fn parse(text: &str) -> Result<Location, StorageError> {
        let bad = |message: String| StorageError::Location {
            location: text.to_string(),
            message,
        };
        let local = |path: &str| Location {
            text: text.to_string(),
            place: Place::Local(PathBuf::from(path)),
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(local(text));
        };
        if scheme == "file" {
            return Ok(local(rest));
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
        let prefix = Key::parse(prefix.trim_end_matches('/'))
            .map_err(|e| bad(format!("not a valid object key prefix: {e}")))?;
        Ok(Location {
            text: text.to_string(),
            place: Place::Remote {
                root: format!("{scheme}://{bucket}"),
                prefix,
            },
        })
    }

    /// The place `name` below this one.
    pub fn join(&self, name: &str) -> Location {
        let text = format!("{}/{}", self.text.trim_end_matches('/'), name);
        let place = match &self.place {
            Place::Local(dir) => Place::Local(dir.join(name)),
            Place::Remote { root, prefix } => Place::Remote {
                root: root.clone(),
                prefix: join_key(prefix, name),
            },
        };
        Location { text, place }
    }

    /// The place one level up (`None` at a bucket, or for a bare relative name).
    pub fn parent(&self) -> Option<Location> {
        match &self.place {
            Place::Local(dir) => {
                let up = dir.parent().filter(|p| !p.as_os_str().is_empty())?;
                let text = match self.text.strip_prefix("file://") {
                    Some(_) => format!("file://{}", up.display()),
                    None => up.display().to_string(),
                };
                Some(Location {
                    text,
                    place: Place::Local(up.to_path_buf()),
                })
            }
            Place::Remote { root, prefix } => {
                let parts: Vec<_> = prefix.parts().collect();
                let (_, up) = parts.split_last()?;
                let prefix = Key::from_iter(up.iter().cloned());
                Some(Location {
                    text: remote_url(root, &prefix),
                    place: Place::Remote {
                        root: root.clone(),
                        prefix,
                    },
                })
            }
        }
    }

    /// The directory on this machine's disk, for a place that is one (deployments list the
    /// paths a service may write; the demo previews a part).
    pub fn local_path(&self) -> Option<&Path> {
        match &self.place {
            Place::Local(dir) => Some(dir),
            Place::Remote { .. } => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
    }
}

impl Eq for Location {}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Location::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Location {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Location".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

/// Checks the form of a location (for `apisnap validate`).
pub fn check(text: &str) -> Result<(), String> {
    match Location::parse(text) {
        Ok(_) => Ok(()),
        Err(StorageError::Location { message, .. }) => Err(format!("`{text}`: {message}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The directory on this machine that `text` names, if it names one (`None` for object
/// storage, and for text that is not a location).
pub fn local_dir(text: &str) -> Option<PathBuf> {
    Location::parse(text)
        .ok()?
        .local_path()
        .map(Path::to_path_buf)
}

fn join_key(prefix: &Key, name: &str) -> Key {
    name.split('/')
        .filter(|s| !s.is_empty())
        .fold(prefix.clone(), |key, part| key.join(part))
}

fn remote_url(root: &str, prefix: &Key) -> String {
    if prefix.as_ref().is_empty() {
        root.to_string()
    } else {
        format!("{root}/{prefix}")
    }
}

/// The version of an object as it was read or written, for [`Store::put_if`].
#[derive(Clone, Debug, Default)]
pub struct Version(Option<UpdateVersion>);

/// An opened [`Location`]: the operations apisnap needs, on disk or in object storage.
#[derive(Clone)]
pub struct Store {
    location: Location,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(PathBuf),
    Remote(Remote),
}

#[derive(Clone)]
struct Remote {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    prefix: Key,
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

/// Held while a run of the job is going; released when dropped, also when the process is
/// killed, so a crash never leaves a stale lock.
pub struct Lock {
    _file: Option<File>,
}

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

    /// Whether writers on other machines may write here at the same time, unseen by
    /// [`lock`](Self::lock) (object storage): what they write must carry names of their
    /// own.
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }

    fn failed(&self, name: &str, e: object_store::Error) -> StorageError {
        StorageError::Remote {
            url: self.url_of(name),
            message: e.to_string(),
        }
    }

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

    /// The names of the files directly below (not in subdirectories); none when the place
    /// does not exist.
    pub async fn names(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.entries().await?.0)
    }

    /// The names of the directories (prefixes) directly below.
    pub async fn dirs(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.entries().await?.1)
    }

    async fn entries(&self) -> Result<(Vec<String>, Vec<String>), StorageError> {
        match &self.backend {
            Backend::Local(dir) => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(Default::default());
                    }
                    Err(e) => return Err(StorageError::local(dir, e)),
                };
                let (mut files, mut dirs) = (Vec::new(), Vec::new());
                for entry in entries {
                    let entry = entry.map_err(|e| StorageError::local(dir, e))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    match entry.file_type() {
                        Ok(t) if t.is_dir() => dirs.push(name),
                        _ => files.push(name),
                    }
                }
                Ok((files, dirs))
            }
            Backend::Remote(r) => {
                let listed = r
                    .store
                    .list_with_delimiter(Some(&r.prefix))
                    .await
                    .map_err(|e| self.failed("", e))?;
                let files = listed
                    .objects
                    .into_iter()
                    .filter_map(|m| m.location.filename().map(str::to_string))
                    .collect();
                let dirs = listed
                    .common_prefixes
                    .into_iter()
                    .filter_map(|p| p.filename().map(str::to_string))
                    .collect();
                Ok((files, dirs))
            }
        }
    }

    /// Removes everything below, and the place itself.
    pub async fn remove_all(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(dir) => match std::fs::remove_dir_all(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StorageError::local(dir, e)),
            },
            Backend::Remote(r) => {
                let metas: Vec<_> = r
                    .store
                    .list(Some(&r.prefix))
                    .try_collect()
                    .await
                    .map_err(|e| self.failed("", e))?;
                for meta in metas {
                    match r.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.failed(meta.location.as_ref(), e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Removes an empty directory left behind (nothing to do in object storage, where
    /// prefixes exist only through their objects).
    pub async fn remove_if_empty(&self) {
        if let Backend::Local(dir) = &self.backend {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Removes the hidden temporary files (`.<name>.<random>.tmp`) of a writer killed
    /// mid-write, for the names `ours` accepts; returns what it removed. Object storage has
    /// none: an object appears whole or not at all.
    pub async fn remove_temporaries(
        &self,
        ours: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StorageError> {
        let Backend::Local(dir) = &self.backend else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for name in self.names().await? {
            let temporary = name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(|rest| rest.rsplit_once('.'))
                .filter(|(of, _random)| ours(of));
            if temporary.is_some() {
                let path = dir.join(&name);
                std::fs::remove_file(&path).map_err(|e| StorageError::local(&path, e))?;
                removed.push(name);
            }
        }
        if !removed.is_empty() {
            sync_dir(dir)?;
        }
        Ok(removed)
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

/// A file written under a hidden temporary name beside its final path
/// (`.<name>.<random>.tmp`). Dropping it without [`commit`](Self::commit) removes the
/// temporary file.
pub struct AtomicFile {
    temp: tempfile::TempPath,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the directory if needed and a temporary file in it.
    pub fn create(path: &Path) -> Result<(AtomicFile, File), StorageError> {
        let dir = parent(path);
        std::fs::create_dir_all(dir).map_err(|e| StorageError::local(dir, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| StorageError::local(dir, e))?;
        let (file, temp) = file.into_parts();
        Ok((
            AtomicFile {
                temp,
                path: path.to_path_buf(),
            },
            file,
        ))
    }

    /// fsyncs `file`, renames it to the final name and fsyncs the directory, so that after a
    /// crash the file is either absent or complete. Returns its size.
    pub fn commit(self, file: File) -> Result<u64, StorageError> {
        let local = |e| StorageError::local(&self.path, e);
        file.sync_all().map_err(local)?;
        let bytes = file.metadata().map_err(local)?.len();
        drop(file);
        self.temp
            .persist(&self.path)
            .map_err(|e| StorageError::local(&self.path, e.error))?;
        sync_dir(parent(&self.path))?;
        Ok(bytes)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::local(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let local = Location::parse("out/x").unwrap();
        assert_eq!(local.local_path(), Some(Path::new("out/x")));
        assert_eq!(local.join("y").to_string(), "out/x/y");
        assert_eq!(local.parent().unwrap().to_string(), "out");
        let file = Location::parse("file:///srv/x").unwrap();
        assert_eq!(file.local_path(), Some(Path::new("/srv/x")));
        assert_eq!(file.parent().unwrap().to_string(), "file:///srv");
        let r = Location::parse("s3://bucket/a/b/").unwrap();
        assert!(r.local_path().is_none());
        assert_eq!(
            r.join("c").join("d.json").to_string(),
            "s3://bucket/a/b/c/d.json"
        );
        assert_eq!(r.parent().unwrap().to_string(), "s3://bucket/a");
        assert_eq!(
            r.parent().unwrap().parent().unwrap().to_string(),
            "s3://bucket"
        );
        assert!(r.parent().unwrap().parent().unwrap().parent().is_none());
        let e = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
        assert!(
            Location::parse("s3:///x")
                .unwrap_err()
                .to_string()
                .contains("no bucket")
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"s3://bucket/a/b/\"");
        assert_eq!(serde_json::from_str::<Location>(&json).unwrap(), r);
    }

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
    }
}
