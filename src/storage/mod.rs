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

/// One line a person can act on, from an object store's error about `url`: the service's
/// error code and message rather than its XML, and what to check for the common ones (a
/// bucket that does not exist, credentials refused).
pub(crate) fn readable(url: &str, e: &object_store::Error) -> String {
    let text = e.to_string();
    let bucket = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .unwrap_or(url);
    let code = between(&text, "<Code>", "</Code>");
    let message = between(&text, "<Message>", "</Message>")
        .map(|m| m.lines().next().unwrap_or_default().trim().to_string());
    let detail = match (&code, &message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.clone(),
        _ => String::new(),
    };
    let denied = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || code.as_deref().is_some_and(|c| {
        [
            "AccessDenied",
            "AuthorizationFailure",
            "AuthenticationFailed",
            "AuthorizationPermissionMismatch",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "AllAccessDisabled",
        ]
        .contains(&c)
    });
    match code.as_deref() {
        Some("NoSuchBucket" | "ContainerNotFound") => format!(
            "bucket `{bucket}` does not exist ({detail}): create it, or correct the bucket in \
             output.dir or state_dir"
        ),
        _ if denied => format!(
            "access denied for bucket `{bucket}`{}: check the credentials in the environment \
             (AWS_*, AZURE_STORAGE_*, GOOGLE_*) and the bucket's permissions for them",
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            }
        ),
        Some(_) => detail,
        // No answer from the service: the first line of what the client says, without a body.
        None => {
            let line = text.lines().next().unwrap_or_default();
            line.split("<?xml")
                .next()
                .unwrap_or(line)
                .trim_end_matches([' ', ':'])
                .to_string()
        }
    }
}

/// The text between the first `open` and the next `close`.
fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].trim().to_string())
}
