//! apisnap keeps analysts' files in sync with third-party REST APIs.
//!
//! # Layout
//!
//! One run flows through these modules, in this order (see `ARCHITECTURE.md`):
//!
//! - [`config`]: job and provider files (TOML), environment overrides, validation. The config
//!   is data; each piece `build()`s the runtime object that does the work.
//! - [`secret`]: `env:`/`file:` secret references and the redacted [`secret::Secret`] type.
//! - [`auth`]: turns credentials into request headers and keeps the token fresh.
//! - [`fetch`]: the HTTP client: one request, retried with backoff, errors that name the request.
//! - [`paginate`]: which page comes next and when to stop.
//! - [`ratelimit`]: requests per second per provider, shared by its jobs.
//! - [`incremental`]: high-water marks, so a run fetches only what is new.
//! - [`decode`]: page bodies to Arrow record batches, schema inferred from the first page.
//! - [`sink`]: Arrow batches to Parquet or CSV files that appear under their final name only
//!   when complete.
//! - [`run`]: the pipeline that wires fetch -> decode -> write with bounded channels.
//! - [`schedule`]: cron expressions as users write them, translated for the `cron` crate.
//! - [`sandbox`]: a real HTTP server that emulates the reference providers for tests and demos.
//! - [`demo`]: the first command a newcomer runs.
//!
//! Library code returns typed errors ([`Error`]); the binary renders them and picks the exit
//! code.

pub mod auth;
pub mod checkpoint;
pub mod columns;
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
pub mod status;
pub mod storage;
pub mod terminal;
pub mod vocab;

pub use error::Error;

/// The default `User-Agent`, also used where a gateway rejects library defaults.
pub const USER_AGENT: &str = concat!("apisnap/", env!("CARGO_PKG_VERSION"));
