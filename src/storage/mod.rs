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
//! Every operation is async, and object storage is reached only by awaiting; the writer's
//! blocking thread reaches the store through its runtime handle (on disk, the small writes of
//! state and markers are done in place). Credentials come from each cloud's standard chain
//! (environment, web identity, instance metadata), never from job files.

mod disk;
mod listing;
mod location;
mod store;
mod upload;

use std::path::{Path, PathBuf};

pub use disk::{AtomicFile, Lock};
pub use location::{Location, check, local_dir};
pub use store::{Store, Version};
pub use upload::{PendingUpload, Staging, Upload};

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
