//! apisnap keeps analysts' files in sync with third-party REST APIs.
//!
//! # Layout
//!
//! One run flows through these modules, in this order (see `ARCHITECTURE.md`); each imports
//! only from those below it.
//!
//! - [`config`]: job and provider files (TOML), environment overrides, validation. The config
//!   is data; [`run::Job`] is built from it once.
//! - [`run`]: one run — open (lock, state, resume or start), the pipeline (fetch -> decode ->
//!   write with bounded channels), complete (manifest, `_SUCCESS`, `latest.json`) — and
//!   sharded runs.
//! - [`auth`]: turns credentials into request headers and keeps the token fresh.
//! - [`fetch`]: one page request, retried with backoff, errors that name the request.
//! - [`paginate`]: which page comes next and when to stop; one runtime type per strategy.
//! - [`slice`]: a job cut into partitions and date windows, each slice its own list of
//!   pages and its own place in the checkpoint.
//! - [`ratelimit`]: requests per second per provider, shared by its jobs; [`concurrency`]:
//!   requests in flight, fixed or tuned per provider (AIMD).
//! - [`incremental`]: high-water marks, so a run fetches only what is new.
//! - [`decode`] and [`columns`]: page bodies to Arrow record batches, with columns declared
//!   or inferred from the first page.
//! - [`sink`]: Arrow batches to Parquet or CSV parts, and the snapshot they make.
//! - [`checkpoint`]: the job's state between runs; [`report`] and [`metrics`]: what a run did.
//! - [`storage`]: the only module that knows a local directory from object storage.
//! - [`http`], [`secret`], [`env`], [`vocab`]: leaves — the HTTP client's helpers, redacted
//!   secrets, the environment, the words configs are written in.
//! - [`status`], [`schedule`] and [`scheduler`], [`deploy`], [`terminal`], [`demo`]: what the
//!   other commands need.
//! - [`sandbox`]: a real HTTP server that emulates the reference providers for tests, demos
//!   and benchmarks; never used by a real run.
//!
//! Library code returns typed errors ([`Error`]); the binary renders them and picks the exit
//! code.

pub mod auth;
pub mod checkpoint;
pub mod columns;
pub mod concurrency;
pub mod config;
pub mod decode;
pub mod demo;
pub mod deploy;
pub mod env;
pub mod error;
pub mod fetch;
pub mod http;
pub mod incremental;
pub mod metrics;
pub mod paginate;
pub mod ratelimit;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod sink;
pub mod slice;
pub mod status;
pub mod storage;
pub mod table;
pub mod terminal;
pub mod vocab;

pub use error::Error;

/// The default `User-Agent`, also used where a gateway rejects library defaults.
pub const USER_AGENT: &str = concat!("apisnap/", env!("CARGO_PKG_VERSION"));
