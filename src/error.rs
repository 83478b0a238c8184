//! The library's error type, and the exit code each kind maps to.
//!
//! A concrete enum rather than a boxed error: the binary needs to tell a config mistake from
//! an authentication failure from an upstream outage, because each gets its own exit code and
//! schedulers and on-call people act differently on each.

use crate::config::ConfigErrors;
use crate::fetch::FetchError;
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A job or provider file is wrong, or a secret cannot be read.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The API failed, after retries, or rejected the credentials.
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The server's pages do not add up (a loop, records past the total, a foreign host).
    #[error("job `{job}`: pagination stopped at {position}: {message}")]
    Paginate {
        job: String,
        position: String,
        message: String,
    },
    /// A page's records could not be turned into rows.
    #[error("job `{job}`: the page at {position} could not be decoded: {message}")]
    Decode {
        job: String,
        position: String,
        message: String,
    },
    /// Writing the snapshot failed (disk full, permissions).
    #[error("job `{job}`: writing the snapshot failed: {source}")]
    Sink {
        job: String,
        #[source]
        source: SinkError,
    },
    /// The snapshot is complete, but merging it into the current table failed.
    #[error(
        "job `{job}`: the snapshot is complete, but merging it into the current table failed: \
         {source}. The previous table is unchanged; the next run merges again"
    )]
    Table {
        job: String,
        #[source]
        source: crate::table::TableError,
    },
    /// The job's state (checkpoint, lock) could not be read or written, or another run of
    /// the job holds the lock.
    #[error("job `{job}`: {source}")]
    State {
        job: String,
        #[source]
        source: crate::checkpoint::StateError,
    },
    /// A stop was requested (SIGTERM, Ctrl-C); whole pages are committed and the run resumes.
    #[error(
        "job `{job}`: interrupted; the pages received are committed and the next run resumes \
         from there"
    )]
    Interrupted { job: String },
    /// The records written do not add up to the count the API stated.
    #[error(
        "job `{job}`: the API stated {stated} records but the run wrote {written}: the \
         parts are committed and the snapshot is not marked complete. Run it again with \
         --fresh once the API answers consistently, or set `on_count_mismatch = \"warn\"` \
         in the job to accept the difference"
    )]
    Count {
        job: String,
        stated: u64,
        written: u64,
    },
    /// The count the API stated changed while the run read the pages: records were added or
    /// removed meanwhile, so pages by position may have repeated or skipped some.
    #[error(
        "job `{job}`: the API stated {first} records at first and {now} at {position}: the \
         collection changed while the run read it, so records may be repeated or missing. \
         The parts are committed and the snapshot is not marked complete; run it again with \
         --fresh when the data is quiet, page by a key that does not move (`type = \"keyset\"` \
         or a cursor) instead, or set `on_count_mismatch = \"warn\"` to accept it"
    )]
    CountChanged {
        job: String,
        first: u64,
        now: u64,
        position: String,
    },
    /// A record whose key came before in the same run (`on_duplicate = "fail"`).
    #[error(
        "job `{job}`: the record with {key} came twice in this run: the collection changed \
         while the run read it, or the API repeats records. The parts are committed and the \
         snapshot is not marked complete; run it again with --fresh, page by a key that does \
         not move (`type = \"keyset\"` or a cursor), or set `on_duplicate = \"keep_newest\"` \
         to keep the copy fetched last"
    )]
    Duplicate { job: String, key: String },
    /// Slices of a sliced run whose records do not add up to what the API stated for them.
    #[error(
        "job `{job}`: {count} slice(s) got other than the records the API stated: {slices}. \
         The parts are committed and the snapshot is not marked complete; run it again with \
         --fresh once the API answers consistently, or set `on_count_mismatch = \"warn\"`"
    )]
    SliceCount {
        job: String,
        count: usize,
        slices: String,
    },
    /// `apisnap finalize` of a sharded run while some shards are not complete.
    #[error(
        "job `{job}`: not every shard is complete ({waiting}); the snapshot is finalized once \
         they are (the last shard to finish does it, or run `apisnap finalize` again)"
    )]
    Incomplete { job: String, waiting: String },
    /// A file the user asked for (a deployment, a schema, a column file) cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Anything else that stopped a run (a panicked stage, a runtime failure).
    #[error("job `{job}`: {message}")]
    Internal { job: String, message: String },
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(ConfigErrors::from(e))
    }
}

/// Exit codes, documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    /// The run failed for a reason not listed below (decode, disk, internal).
    pub const FAILED: u8 = 1;
    /// A job or provider file (or the command line) is wrong.
    pub const CONFIG: u8 = 2;
    /// The API (or its login endpoint) answered that the credentials were refused.
    pub const AUTH: u8 = 3;
    /// The API kept failing after all retries, or answered with a non-retryable error.
    pub const UPSTREAM: u8 = 4;
    /// Another run of the same job holds its lock; this one did nothing.
    pub const LOCKED: u8 = 5;
    /// `apisnap finalize`: some shards of the run are not complete yet.
    pub const INCOMPLETE: u8 = 6;
    /// Stopped by SIGTERM or Ctrl-C; the checkpoint is resumable.
    pub const INTERRUPTED: u8 = 130;
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            // Only a server that answered about the credentials is exit 3.
            Error::Fetch(FetchError::Auth {
                source: crate::auth::AuthError::LoginUnreachable { .. },
                ..
            }) => exit::UPSTREAM,
            Error::Fetch(FetchError::Auth { .. }) => exit::AUTH,
            Error::Fetch(_)
            | Error::Paginate { .. }
            | Error::Count { .. }
            | Error::CountChanged { .. }
            | Error::Duplicate { .. }
            | Error::SliceCount { .. } => exit::UPSTREAM,
            Error::State {
                source:
                    crate::checkpoint::StateError::Locked { .. }
                    | crate::checkpoint::StateError::Conflict { .. },
                ..
            } => exit::LOCKED,
            Error::Interrupted { .. } => exit::INTERRUPTED,
            Error::Incomplete { .. } => exit::INCOMPLETE,
            Error::Decode { .. }
            | Error::Sink { .. }
            | Error::Table { .. }
            | Error::State { .. }
            | Error::Write { .. }
            | Error::Internal { .. } => exit::FAILED,
        }
    }
}
