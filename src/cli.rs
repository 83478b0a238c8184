//! The command line's arguments: every command, every flag, its default and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps analysts' files in sync with REST APIs: authenticated, paginated, retried, and
/// written as Parquet or CSV snapshots.
#[derive(Parser)]
#[command(name = "apisnap", version, about, long_about = None)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info", env = "APISNAP_LOG")]
    pub log_level: String,
    /// Log format: text for people, json (one object per line) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "APISNAP_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// After each run, write the job's metrics to DIR/apisnap_<job>.prom (a shard's to
    /// apisnap_<job>.shard-I-of-N.prom) for node_exporter's textfile collector.
    #[arg(long, global = true, env = "APISNAP_METRICS_DIR")]
    pub metrics_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the jobs are: every command that reads jobs takes it.
#[derive(Args, Clone)]
pub struct JobsDir {
    /// The jobs directory (job files, and `providers/` beside them).
    #[arg(long, default_value = "jobs")]
    pub jobs_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run jobs now and write their snapshots.
    Run(RunArgs),
    /// Complete a sharded run's snapshot once every shard is complete: one manifest,
    /// `_SUCCESS`, `latest.json`. Refuses (exit code 6) while any shard is not.
    Finalize {
        /// Job name (looked up in --jobs-dir) or job file path.
        job: String,
        /// The number of shards the run was split into.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        shards: u64,
        /// The run to finalize (default: the one the shards are running).
        #[arg(long, env = "APISNAP_RUN_ID")]
        run_id: Option<String>,
        #[command(flatten)]
        jobs: JobsDir,
    },
    /// Load a range of a windowed job's history: its windows in `[FROM, TO)`, every
    /// partition, into a snapshot of its own (`<job dir>/backfill/FROM_TO`), with a
    /// checkpoint of its own (run it again to resume); the job's marks are left alone.
    Backfill {
        /// Job name (looked up in --jobs-dir) or job file path.
        job: String,
        /// The first window's start: a date, an ISO-8601 time, or relative (`-90d`).
        #[arg(long)]
        from: String,
        /// The end, excluded.
        #[arg(long)]
        to: String,
        /// Discard the checkpoint of an interrupted backfill of this range and start over.
        #[arg(long)]
        fresh: bool,
        #[command(flatten)]
        jobs: JobsDir,
    },
    /// Authenticate and fetch one page; show what came back. Writes nothing.
    Check {
        /// Job name (looked up in --jobs-dir) or job file path.
        job: String,
        #[command(flatten)]
        jobs: JobsDir,
    },
    /// Check job and provider files without making a request.
    Validate {
        /// Files or directories (default: the jobs directory).
        paths: Vec<PathBuf>,
        /// Treat secrets that cannot be read here (unset variable, missing file) as errors.
        #[arg(long)]
        secrets: bool,
        #[command(flatten)]
        jobs: JobsDir,
    },
    /// Run each job at its scheduled times, in the foreground, until SIGTERM or Ctrl-C (for
    /// hosts without cron; see `apisnap deploy` for systemd and Kubernetes).
    Schedule {
        #[command(flatten)]
        jobs: JobsDir,
    },
    /// Print each job's next scheduled runs, in its time zone.
    Next {
        #[command(flatten)]
        jobs: JobsDir,
        /// How many upcoming runs per job.
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
    },
    /// Per job: the last successful run, the latest snapshot, an interrupted run that the
    /// next `run` resumes, and the next scheduled time.
    Status {
        #[command(flatten)]
        jobs: JobsDir,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Render deployment files (systemd units, Kubernetes CronJobs) from the job definitions.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Start the sandbox: a local server that emulates the reference providers.
    Sandbox(SandboxArgs),
    /// JSON Schemas of the job and provider files.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Run the shipped jobs against the sandbox and show what they wrote.
    Demo {
        #[command(flatten)]
        jobs: JobsDir,
        /// Where the demo writes its snapshots.
        #[arg(long, default_value = "apisnap-demo")]
        out: PathBuf,
        /// Records the sandbox serves.
        #[arg(long, default_value_t = 25_000)]
        records: u64,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// Job names (looked up in --jobs-dir) or job file paths.
    #[arg(required = true)]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub dir: JobsDir,
    /// Discard the checkpoint of an interrupted run and start over.
    #[arg(long)]
    pub fresh: bool,
    /// Run one shard of the sync, INDEX/COUNT (0 <= INDEX < COUNT): the `offset` or
    /// `page` range split into COUNT disjoint parts, each with its own parts and
    /// checkpoint. The last shard to finish writes the manifest (see `finalize`).
    #[arg(long, env = "APISNAP_SHARD", value_name = "INDEX/COUNT")]
    pub shard: Option<apisnap::paginate::Shard>,
    /// Run this pod's shard of COUNT in a Kubernetes Indexed Job: the index is the
    /// `JOB_COMPLETION_INDEX` that Kubernetes sets in each of the Job's pods.
    #[arg(long, value_name = "COUNT", conflicts_with = "shard")]
    pub shards: Option<u64>,
    /// The run's id (the snapshot's `{run_id}`), shared by the shards of one sharded run;
    /// the Kubernetes deployment sets it from the Job's name.
    #[arg(long, env = "APISNAP_RUN_ID")]
    pub run_id: Option<String>,
    /// Benchmarks only: send the run's requests but only fetch (and parse) the answers;
    /// write nothing, touch no state (see benches/matrix.rs).
    #[arg(long, value_enum, hide = true)]
    pub floor: Option<FloorArg>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FloorArg {
    Fetch,
    Parse,
}

#[derive(Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Records in the data set.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// The most records one page returns.
    #[arg(long, default_value_t = 10_000)]
    pub max_page_size: u64,
    /// Milliseconds added to every data request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Render the records once at start (about 230 bytes of memory each) and serve pages
    /// as copies: for benchmarks, so that apisnap is what they measure.
    #[arg(long)]
    pub prerender: bool,
    /// The share of data requests that fail (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Which faults: 500, 502, 503, 429, 429-date, close, slow, malformed (default: all).
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    /// Seed of the fault injector.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// At most this many requests at once; those past it are answered 429 (a gateway's cap).
    #[arg(long)]
    pub capacity: Option<usize>,
    /// Requests served at once; the others wait their turn (a server that slows under load).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seconds a token lives.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// Revoke the token after every K data requests.
    #[arg(long)]
    pub revoke_every: Option<u64>,
    /// Compress answers when the client accepts it.
    #[arg(long)]
    pub compress: bool,
    /// Serve HTTPS with this certificate chain (PEM), with `--tls-key`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM), as a gateway with mutual TLS does.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum DeployCommand {
    /// A hardened service and a timer per scheduled job.
    Systemd {
        #[command(flatten)]
        jobs: JobsDir,
        /// Where to write the units.
        #[arg(long, default_value = "deploy/systemd")]
        out: PathBuf,
        #[command(flatten)]
        options: apisnap::deploy::systemd::SystemdOptions,
    },
    /// A CronJob per scheduled job, the jobs as a ConfigMap, a volume claim, and the shape of
    /// the credentials Secret.
    Kubernetes {
        #[command(flatten)]
        jobs: JobsDir,
        /// Where to write the manifests.
        #[arg(long, default_value = "deploy/kubernetes")]
        out: PathBuf,
        #[command(flatten)]
        options: apisnap::deploy::kubernetes::KubernetesOptions,
    },
}

#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Write `job.schema.json` and `provider.schema.json` (editors use them to check and
    /// complete job files).
    Export {
        /// Directory to write to.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Fetch a job's first page and print a column file (types as inferred) to review,
    /// commit, and name in the job's `schema.file`.
    Infer {
        /// Job name (looked up in --jobs-dir) or job file path.
        job: String,
        #[command(flatten)]
        jobs: JobsDir,
        /// Write it to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}
