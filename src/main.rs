//! The `apisnap` command line: parse arguments, dispatch to one function per command, and
//! turn errors into one-line messages and documented exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use apisnap::Error;
use apisnap::config::{find_job, load_job, validate_paths};
use apisnap::env::Env;
use apisnap::error::exit;
use apisnap::run::RunSummary;

/// Keeps analysts' files in sync with REST APIs: authenticated, paginated, retried, and
/// written as Parquet or CSV snapshots.
#[derive(Parser)]
#[command(name = "apisnap", version, about, long_about = None)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info", env = "APISNAP_LOG")]
    log_level: String,
    /// Log format: text for people, json (one object per line) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "APISNAP_LOG_FORMAT")]
    log_format: LogFormat,
    /// After each run, write the job's metrics to DIR/apisnap_<job>.prom (a shard's to
    /// apisnap_<job>.shard-I-of-N.prom) for node_exporter's textfile collector.
    #[arg(long, global = true, env = "APISNAP_METRICS_DIR")]
    metrics_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run jobs now and write their snapshots.
    Run {
        /// Job names (looked up in --jobs) or job file paths.
        #[arg(required = true)]
        jobs: Vec<String>,
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// Discard the checkpoint of an interrupted run and start over.
        #[arg(long)]
        fresh: bool,
        /// Run one shard of the sync, INDEX/COUNT (0 <= INDEX < COUNT): the `offset` or
        /// `page` range split into COUNT disjoint parts, each with its own parts and
        /// checkpoint. The last shard to finish writes the manifest (see `finalize`).
        #[arg(long, env = "APISNAP_SHARD", value_name = "INDEX/COUNT")]
        shard: Option<apisnap::paginate::Shard>,
        /// Run this pod's shard of COUNT in a Kubernetes Indexed Job: the index is the
        /// `JOB_COMPLETION_INDEX` that Kubernetes sets in each of the Job's pods.
        #[arg(long, value_name = "COUNT", conflicts_with = "shard")]
        shards: Option<u64>,
        /// The run's id (the snapshot's `{run_id}`), shared by the shards of one sharded run;
        /// the Kubernetes deployment sets it from the Job's name.
        #[arg(long, env = "APISNAP_RUN_ID")]
        run_id: Option<String>,
        /// Benchmarks only: send the run's requests but only fetch (and parse) the answers;
        /// write nothing, touch no state (see benches/matrix.rs).
        #[arg(long, value_enum, hide = true)]
        floor: Option<FloorArg>,
    },
    /// Complete a sharded run's snapshot once every shard is complete: one manifest,
    /// `_SUCCESS`, `latest.json`. Refuses (exit code 6) while any shard is not.
    Finalize {
        /// Job name (looked up in --jobs-dir) or job file path.
        job: String,
        /// The number of shards the run was split into.
        #[arg(long)]
        shards: u64,
        /// The run to finalize (default: the one the shards are running).
        #[arg(long, env = "APISNAP_RUN_ID")]
        run_id: Option<String>,
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
    },
    /// Authenticate and fetch one page; show what came back. Writes nothing.
    Check {
        /// Job name (looked up in --jobs-dir) or job file path.
        job: String,
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
    },
    /// Check job and provider files without making a request.
    Validate {
        /// Files or directories (default: jobs/).
        paths: Vec<PathBuf>,
        /// Treat secrets that cannot be read here (unset variable, missing file) as errors.
        #[arg(long)]
        secrets: bool,
    },
    /// Run each job at its scheduled times, in the foreground, until SIGTERM or Ctrl-C (for
    /// hosts without cron; see `apisnap deploy` for systemd and Kubernetes).
    Schedule {
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
    },
    /// Print each job's next scheduled runs, in its time zone.
    Next {
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// How many upcoming runs per job.
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
    },
    /// Per job: the last successful run, the latest snapshot, an interrupted run that the
    /// next `run` resumes, and the next scheduled time.
    Status {
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// Print JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Render deployment files (systemd units, Kubernetes CronJobs) from the job definitions.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Start the sandbox: a local server that emulates the reference providers.
    Sandbox {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// Records in the data set.
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        /// The most records one page returns.
        #[arg(long, default_value_t = 10_000)]
        max_page_size: u64,
        /// Milliseconds added to every data request.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Render the records once at start (about 230 bytes of memory each) and serve pages
        /// as copies: for benchmarks, so that apisnap is what they measure.
        #[arg(long)]
        prerender: bool,
        /// The share of data requests that fail (0.0-1.0).
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Which faults: 500, 502, 503, 429, 429-date, close, slow, malformed (default: all).
        #[arg(long, value_delimiter = ',')]
        faults: Vec<String>,
        /// Seed of the fault injector.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds a token lives.
        #[arg(long, default_value_t = 3600)]
        token_ttl_secs: u64,
        /// Revoke the token after every K data requests.
        #[arg(long)]
        revoke_every: Option<u64>,
        /// Compress answers when the client accepts it.
        #[arg(long)]
        compress: bool,
    },
    /// JSON Schemas of the job and provider files.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Run the shipped jobs against the sandbox and show what they wrote.
    Demo {
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// Where the demo writes its snapshots.
        #[arg(long, default_value = "apisnap-demo")]
        out: PathBuf,
        /// Records the sandbox serves.
        #[arg(long, default_value_t = 25_000)]
        records: u64,
    },
}

#[derive(Subcommand)]
enum DeployCommand {
    /// A hardened service and a timer per scheduled job.
    Systemd {
        /// The jobs directory to read.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// Where to write the units.
        #[arg(long, default_value = "deploy/systemd")]
        out: PathBuf,
        /// The apisnap binary on the target host.
        #[arg(long, default_value = "/usr/local/bin/apisnap")]
        bin: PathBuf,
        /// The jobs directory on the target host.
        #[arg(long, default_value = "/etc/apisnap/jobs")]
        target_jobs_dir: PathBuf,
        /// The working directory on the target host (relative output and state go there).
        #[arg(long, default_value = "/var/lib/apisnap")]
        workdir: PathBuf,
        /// The directory of credential files on the target host, one per secret variable.
        #[arg(long, default_value = "/etc/apisnap/credentials")]
        credentials_dir: PathBuf,
        /// Run as this user instead of a dynamic one.
        #[arg(long)]
        user: Option<String>,
        /// Spread each start over up to this many seconds.
        #[arg(long)]
        randomized_delay_secs: Option<u64>,
        /// node_exporter's textfile collector directory (passed as --metrics-dir).
        #[arg(long)]
        metrics_dir: Option<PathBuf>,
    },
    /// A CronJob per scheduled job, the jobs as a ConfigMap, a volume claim, and the shape of
    /// the credentials Secret.
    Kubernetes {
        /// The jobs directory to read.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// Where to write the manifests.
        #[arg(long, default_value = "deploy/kubernetes")]
        out: PathBuf,
        /// The container image (see deploy/Dockerfile).
        #[arg(long, default_value = concat!("apisnap:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// The namespace; default: none (kubectl's current one).
        #[arg(long)]
        namespace: Option<String>,
        /// The Secret holding the credentials, one key per variable.
        #[arg(long, default_value = "apisnap-credentials")]
        secret: String,
        /// Secrets as environment variables or as mounted files.
        #[arg(long, value_enum, default_value_t = SecretsAs::Env)]
        secrets_as: SecretsAs,
        /// The PersistentVolumeClaim for snapshots and state.
        #[arg(long, default_value = "apisnap-data")]
        claim: String,
        /// Its size.
        #[arg(long, default_value = "10Gi")]
        storage: String,
        /// Skip a run that could not start within this many seconds of its time.
        #[arg(long, default_value_t = 3600)]
        starting_deadline_secs: u64,
        /// Pods retried (each resuming the checkpoint) before the Job fails.
        #[arg(long, default_value_t = 3)]
        backoff_limit: u32,
        /// Split each run into N shards, one pod each (an Indexed Job); the job's state and
        /// output must be in object storage.
        #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
        shards: Option<u64>,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 120)]
        grace_secs: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FloorArg {
    Fetch,
    Parse,
}

#[derive(Clone, Copy, ValueEnum)]
enum SecretsAs {
    Env,
    Files,
}

#[derive(Subcommand)]
enum SchemaCommand {
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
        /// The jobs directory.
        #[arg(long, default_value = "jobs")]
        jobs_dir: PathBuf,
        /// Write it to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: the Seal Metrics guide keeps credentials in .env. Variables
    // already set win.
    let _ = dotenvy::dotenv();
    init_logging(&cli);
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

fn report(e: &Error) {
    for line in e.to_string().lines() {
        eprintln!("error: {line}");
    }
}

fn try_main(cli: Cli) -> Result<u8, Error> {
    let env = Env::from_process();
    match cli.command {
        Command::Run {
            jobs,
            jobs_dir,
            floor: Some(floor),
            ..
        } => run_floor(
            &jobs,
            &jobs_dir,
            match floor {
                FloorArg::Fetch => apisnap::run::Floor::Fetch,
                FloorArg::Parse => apisnap::run::Floor::Parse,
            },
            &env,
        ),
        Command::Run {
            jobs,
            jobs_dir,
            fresh,
            shard,
            shards,
            run_id,
            floor: None,
        } => run(
            &jobs,
            &jobs_dir,
            apisnap::run::RunOptions {
                fresh,
                metrics_dir: cli.metrics_dir,
                shard: match shards {
                    Some(count) => Some(completion_index_shard(count, &env)?),
                    None => shard,
                },
                run_id,
                stop: None,
            },
            &env,
        ),
        Command::Finalize {
            job,
            shards,
            run_id,
            jobs_dir,
        } => finalize(
            &job,
            &jobs_dir,
            shards,
            run_id.as_deref(),
            cli.metrics_dir.as_deref(),
            &env,
        ),
        Command::Check { job, jobs_dir } => check(&job, &jobs_dir, &env),
        Command::Validate { paths, secrets } => Ok(validate(paths, secrets, &env)),
        Command::Schedule { jobs_dir } => schedule(&jobs_dir, cli.metrics_dir, &env),
        Command::Next { jobs_dir, count } => next(&jobs_dir, count, &env),
        Command::Status { jobs_dir, json } => status(&jobs_dir, json, &env),
        Command::Sandbox {
            port,
            records,
            max_page_size,
            latency_ms,
            prerender,
            fault_rate,
            faults,
            seed,
            token_ttl_secs,
            revoke_every,
            compress,
        } => {
            let kinds = if faults.is_empty() {
                apisnap::sandbox::Fault::all(std::time::Duration::from_secs(5))
            } else {
                faults
                    .iter()
                    .map(|f| {
                        apisnap::sandbox::Fault::parse(f).ok_or_else(|| {
                            Error::from(apisnap::config::ConfigError::field(
                                "--faults",
                                format!("unknown fault `{f}`: expected 500, 502, 503, 429, 429-date, close, slow or malformed"),
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            sandbox(
                apisnap::sandbox::SandboxConfig {
                    records,
                    max_page_size,
                    token_ttl: std::time::Duration::from_secs(token_ttl_secs),
                    revoke_every,
                    latency: std::time::Duration::from_millis(latency_ms),
                    faults: apisnap::sandbox::FaultConfig {
                        rate: fault_rate,
                        seed,
                        kinds,
                    },
                    compress,
                    new_field_from: None,
                    bad_value_every: None,
                    prerender,
                },
                port,
            )
        }
        Command::Deploy(command) => deploy(command, &env),
        Command::Schema(SchemaCommand::Export { out }) => export_schemas(&out),
        Command::Schema(SchemaCommand::Infer { job, jobs_dir, out }) => {
            infer_columns(&job, &jobs_dir, out.as_deref(), &env)
        }
        Command::Demo {
            jobs_dir,
            out,
            records,
        } => demo(jobs_dir, out, records, env),
    }
}

/// This pod's shard of `count`, from the index Kubernetes gives each pod of an Indexed Job.
fn completion_index_shard(count: u64, env: &Env) -> Result<apisnap::paginate::Shard, Error> {
    const VAR: &str = "JOB_COMPLETION_INDEX";
    let bad =
        |message: String| Error::from(apisnap::config::ConfigError::field("--shards", message));
    let index = env.get(VAR).ok_or_else(|| {
        bad(format!(
            "takes this pod's index from {VAR}, which Kubernetes sets in the pods of an \
             Indexed Job, and it is not set here: use --shard INDEX/COUNT instead"
        ))
    })?;
    format!("{}/{count}", index.trim())
        .parse()
        .map_err(|e| bad(format!("{VAR}={index} with --shards {count}: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal {
            job: "-".into(),
            message: format!("cannot start the async runtime: {e}"),
        })
}

/// `apisnap run`: every job named, one after another. A failed job does not stop the next;
/// the exit code is the first failure's.
fn run(
    jobs: &[String],
    jobs_dir: &std::path::Path,
    mut options: apisnap::run::RunOptions,
    env: &Env,
) -> Result<u8, Error> {
    let rt = runtime()?;
    options.stop = Some(stop_on_signals(&rt));
    let mut code = exit::OK;
    for name in jobs {
        let result = find_job(name, jobs_dir)
            .map_err(Error::from)
            .and_then(|file| Ok(load_job(&file, env)?.build(env)?))
            .and_then(|job| {
                let progress = ProgressDisplay::start(&rt, &job);
                let result = rt.block_on(job.run(&options));
                progress.finish();
                result
            });
        match result {
            Ok(summary) => print_summary(&summary),
            Err(e) => {
                report(&e);
                if code == exit::OK {
                    code = e.exit_code();
                }
            }
        }
    }
    Ok(code)
}

/// `apisnap finalize`.
fn finalize(
    name: &str,
    jobs_dir: &std::path::Path,
    shards: u64,
    run_id: Option<&str>,
    metrics_dir: Option<&std::path::Path>,
    env: &Env,
) -> Result<u8, Error> {
    let file = find_job(name, jobs_dir)?;
    let job = load_job(&file, env)?.build(env)?;
    let done = runtime()?.block_on(job.finalize_shards(shards, run_id, metrics_dir))?;
    if done.already {
        println!(
            "{}: run {} was already finalized: {} records in {}",
            done.job,
            done.run_id,
            done.records,
            done.snapshot_dir.display()
        );
    } else {
        println!(
            "{}: run {} finalized: {} records in {} parts from {shards} shards, {}",
            done.job,
            done.run_id,
            done.records,
            done.parts,
            done.snapshot_dir.display()
        );
    }
    Ok(exit::OK)
}

/// SIGTERM (Kubernetes, systemd) and Ctrl-C: the returned signal turns true, and runs stop at
/// their next page boundary with their checkpoint resumable. A second signal is left to the
/// default (immediate) action.
fn stop_on_signals(rt: &tokio::runtime::Runtime) -> tokio::sync::watch::Receiver<bool> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        tracing::warn!("stop requested: finishing the pages received, then stopping");
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// `apisnap schedule`: run each job at its fire times until stopped.
fn schedule(dir: &std::path::Path, metrics_dir: Option<PathBuf>, env: &Env) -> Result<u8, Error> {
    use apisnap::schedule::Plan;
    use apisnap::scheduler::{Daemon, RunJob, SystemClock, job_schedule};
    let rt = runtime()?;
    let stop = stop_on_signals(&rt);
    let defs = definitions(dir, env)?;
    let mut jobs = Vec::new();
    for def in &defs {
        match job_schedule(def)? {
            Some(j) => jobs.push(j),
            None => tracing::info!(job = %def.name, "no [schedule]: not run by the scheduler"),
        }
    }
    if jobs.is_empty() {
        return Err(apisnap::config::ConfigError::file(
            dir,
            "no job here has a [schedule] table: add one (cron = \"30 2 * * *\") or run \
             jobs with `apisnap run`",
        )
        .into());
    }
    for j in &jobs {
        tracing::info!(job = %j.job, timezone = %j.timezone, "scheduled");
    }
    let files: std::collections::HashMap<String, PathBuf> = defs
        .iter()
        .map(|d| (d.name.clone(), d.file.clone()))
        .collect();
    let env = std::sync::Arc::new(env.clone());
    let options = apisnap::run::RunOptions {
        stop: Some(stop.clone()),
        metrics_dir,
        ..Default::default()
    };
    let run: RunJob = std::sync::Arc::new(move |job: String| {
        let file = files[&job].clone();
        let env = env.clone();
        let options = options.clone();
        Box::pin(async move {
            // Read again for every run: edited credentials or fields take effect without a
            // restart (the schedule itself is read at start).
            let job = load_job(&file, &env)?.build(&env)?;
            let summary = job.run(&options).await?;
            print_summary(&summary);
            Ok(summary)
        })
    });
    let plan = Plan::new(jobs, chrono::Utc::now());
    rt.block_on(Daemon::new(SystemClock, plan, run).run(stop));
    Ok(exit::OK)
}

/// `apisnap run --floor`: the benchmark floors.
fn run_floor(
    jobs: &[String],
    jobs_dir: &std::path::Path,
    floor: apisnap::run::Floor,
    env: &Env,
) -> Result<u8, Error> {
    let rt = runtime()?;
    for name in jobs {
        let file = find_job(name, jobs_dir)?;
        let job = load_job(&file, env)?.build(env)?;
        let s = rt.block_on(job.floor(floor))?;
        println!(
            "{}: floor {:?}: {} pages, {} records, {} bytes in {:.2}s",
            s.job, floor, s.pages, s.records, s.bytes, s.duration_secs
        );
    }
    Ok(exit::OK)
}

/// The job definitions in `dir` (secrets are not needed).
fn definitions(
    dir: &std::path::Path,
    env: &Env,
) -> Result<Vec<apisnap::config::JobDefinition>, Error> {
    let files = apisnap::config::job_files(dir)?;
    files
        .iter()
        .map(|f| load_job(f, env).map_err(Error::Config))
        .collect()
}

/// `apisnap next`.
fn next(dir: &std::path::Path, count: usize, env: &Env) -> Result<u8, Error> {
    let now = chrono::Utc::now();
    for def in definitions(dir, env)? {
        match &def.job.schedule {
            None => println!("{}: no schedule", def.name),
            Some(s) => {
                println!("{} ({} in {}):", def.name, s.cron, s.timezone);
                // Validated at load time; an error here would be a bug, so say so plainly.
                let times = s.upcoming(now, count).map_err(|message| Error::Internal {
                    job: def.name.clone(),
                    message,
                })?;
                for t in times {
                    println!("  {}", t.to_rfc3339());
                }
            }
        }
    }
    Ok(exit::OK)
}

/// `apisnap status`.
fn status(dir: &std::path::Path, json: bool, env: &Env) -> Result<u8, Error> {
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for def in definitions(dir, env)? {
        let state_error = |source| Error::State {
            job: def.name.clone(),
            source,
        };
        let store = apisnap::checkpoint::StateStore::open(&def.job.state_dir, &def.name)
            .map_err(state_error)?;
        let state = store.load().map_err(state_error)?;
        let next = def
            .job
            .schedule
            .as_ref()
            .and_then(|s| s.upcoming(now, 1).ok())
            .and_then(|t| t.into_iter().next())
            .map(|t| t.to_rfc3339());
        let last = apisnap::report::read(&store);
        let mut shards = apisnap::report::read_shards(&store, &def.name).map_err(state_error)?;
        // A sharded run that a later whole run's report succeeded is history.
        if let Some(l) = &last
            && !shards
                .iter()
                .any(|r| r.run_id == l.run_id || r.finished_at >= l.finished_at)
        {
            shards.clear();
        }
        out.push(serde_json::json!({
            "job": def.name,
            "last_run": last,
            "last_sharded_run": (!shards.is_empty()).then_some(&shards),
            "last_success": state.history.first().map(|r| serde_json::json!({
                "run_id": r.run_id,
                "finished_at": r.finished_at,
                "records": r.records,
                "snapshot": r.snapshot_dir,
            })),
            "resumable": state.in_progress.as_ref().map(|c| serde_json::json!({
                "run_id": c.run_id,
                "started_at": c.started_at,
                "records": c.records,
                "parts": c.parts.len(),
                "position": c.position.as_ref().map(|p| p.to_string()),
                "snapshot": c.snapshot_dir,
            })),
            "next_run": next,
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializes")
        );
        return Ok(exit::OK);
    }
    for s in &out {
        println!("{}", s["job"].as_str().unwrap_or_default());
        // A report's outcome, time and error, on one line.
        let ended = |r: &serde_json::Value| {
            let error = r["error"].as_str().map(|e| format!(": {e}"));
            format!(
                "{} at {}{}",
                r["outcome"].as_str().unwrap_or_default(),
                r["finished_at"].as_str().unwrap_or_default(),
                error.unwrap_or_default()
            )
        };
        if s["last_run"].is_object() {
            println!("  last run: {}", ended(&s["last_run"]));
        }
        if let Some(shards) = s["last_sharded_run"].as_array() {
            let first = &shards[0];
            let count = first["shard"].as_str().unwrap_or_default();
            println!(
                "  sharded run {}: {} of {} shards reported",
                first["run_id"].as_str().unwrap_or_default(),
                shards.len(),
                count.split_once('/').map_or("?", |(_, n)| n)
            );
            for r in shards {
                let shard = r["shard"].as_str().unwrap_or_default();
                println!("    shard {shard}: {}", ended(r));
            }
        }
        match s["last_success"].as_object() {
            Some(l) => println!(
                "  last success: {} ({} records) -> {}",
                l["finished_at"].as_str().unwrap_or_default(),
                l["records"],
                l["snapshot"].as_str().unwrap_or_default()
            ),
            None => println!("  last success: never"),
        }
        if let Some(r) = s["resumable"].as_object() {
            println!(
                "  interrupted run {}: {} records in {} part(s), resumes at {}",
                r["run_id"].as_str().unwrap_or_default(),
                r["records"],
                r["parts"],
                r["position"].as_str().unwrap_or("the end")
            );
        }
        if let Some(n) = s["next_run"].as_str() {
            println!("  next run: {n}");
        }
    }
    Ok(exit::OK)
}

/// `apisnap check`: the first thing to run against a new API.
fn check(name: &str, jobs_dir: &std::path::Path, env: &Env) -> Result<u8, Error> {
    let file = find_job(name, jobs_dir)?;
    let job = load_job(&file, env)?.build(env)?;
    let report = runtime()?.block_on(job.check())?;
    println!("{}: {} -> {}", report.job, report.request, report.status);
    println!(
        "  authentication: ok ({} login{})",
        report.logins,
        if report.logins == 1 { "" } else { "s" }
    );
    match report.total {
        Some(total) => println!(
            "  records on the first page: {} of {total} ({} bytes)",
            report.records, report.bytes
        ),
        None => println!(
            "  records on the first page: {} ({} bytes)",
            report.records, report.bytes
        ),
    }
    if report.fields.is_empty() {
        println!("  fields: none (the page is empty)");
    } else {
        println!("  fields, as they would be written:");
        let width = report
            .fields
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(0);
        for (name, data_type) in &report.fields {
            println!("    {name:width$}  {data_type}");
        }
    }
    println!("nothing was written");
    Ok(exit::OK)
}

fn print_summary(s: &RunSummary) {
    let bytes: u64 = s.parts.iter().map(|p| p.bytes).sum();
    println!(
        "{}: wrote {} records ({} bytes, {} part{}) to {} in {:.2}s ({} pages, {} retries{})",
        s.job,
        s.records,
        bytes,
        s.parts.len(),
        if s.parts.len() == 1 { "" } else { "s" },
        s.snapshot_dir.display(),
        s.duration_secs,
        s.pages,
        s.retries,
        if s.resumed { ", resumed" } else { "" }
    );
}

/// `apisnap validate`: exit 2 when any file has a mistake.
fn validate(paths: Vec<PathBuf>, secrets: bool, env: &Env) -> u8 {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("jobs")]
    } else {
        paths
    };
    let report = validate_paths(&paths, env, secrets);
    for w in &report.warnings.0 {
        eprintln!("warning: {w}");
    }
    if !report.warnings.is_empty() {
        eprintln!(
            "warning: secrets that cannot be read here are not errors unless --secrets is given; \
             `apisnap run` fails on them before any request"
        );
    }
    for e in &report.errors.0 {
        eprintln!("error: {e}");
    }
    for ok in &report.ok {
        println!("ok: {}", ok.display());
    }
    if report.errors.is_empty() {
        exit::OK
    } else {
        eprintln!("{} error(s)", report.errors.0.len());
        exit::CONFIG
    }
}

/// `apisnap sandbox`: serve until Ctrl-C.
fn sandbox(config: apisnap::sandbox::SandboxConfig, port: u16) -> Result<u8, Error> {
    let rt = runtime()?;
    rt.block_on(async {
        let sandbox = apisnap::sandbox::Sandbox::start(config, port)
            .await
            .map_err(|e| Error::Internal {
                job: "sandbox".into(),
                message: format!("cannot listen on 127.0.0.1:{port}: {e}"),
            })?;
        println!("sandbox listening on http://{}", sandbox.addr());
        for p in apisnap::sandbox::PROVIDERS {
            println!("  {p}: {}", sandbox.base_url(p));
        }
        println!("  counters: http://{}/_sandbox/stats", sandbox.addr());
        println!("Ctrl-C stops it.");
        let _ = tokio::signal::ctrl_c().await;
        sandbox.stop().await;
        Ok(exit::OK)
    })
}

/// `apisnap demo`: run the shipped jobs against the sandbox and print what they wrote.
fn demo(jobs_dir: PathBuf, out: PathBuf, records: u64, env: Env) -> Result<u8, Error> {
    let rt = runtime()?;
    let options = apisnap::demo::DemoOptions {
        jobs_dir,
        out_dir: out,
        records,
    };
    let summaries = rt.block_on(apisnap::demo::run_demo(&options, env))?;
    for s in &summaries {
        print_summary(s);
        if let Some(part) = s.parts.first() {
            let path = s.snapshot_dir.join(&part.file);
            match apisnap::demo::preview(&path, 5) {
                Ok(table) => println!("{table}\n"),
                Err(e) => eprintln!("warning: cannot preview {}: {e}", path.display()),
            }
        }
    }
    Ok(exit::OK)
}

/// `apisnap schema infer`.
fn infer_columns(
    name: &str,
    jobs_dir: &std::path::Path,
    out: Option<&std::path::Path>,
    env: &Env,
) -> Result<u8, Error> {
    let file = find_job(name, jobs_dir)?;
    let job = load_job(&file, env)?.build(env)?;
    let schema = runtime()?.block_on(job.infer_columns())?;
    let text = format!(
        "# Columns of job `{}`, inferred from its first page. Review the types (timestamp,\n\
         # decimal, json...), then name this file in the job: [schema] file = \"...\".\n\n{}",
        job.name,
        apisnap::columns::to_toml(&apisnap::columns::ColumnsFile::from_schema(&schema))
    );
    match out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| Error::Internal {
                job: job.name.clone(),
                message: format!("cannot write {}: {e}", path.display()),
            })?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(exit::OK)
}

/// `apisnap deploy`.
fn deploy(command: DeployCommand, env: &Env) -> Result<u8, Error> {
    use apisnap::deploy::{deployables, kubernetes, systemd};
    let config_error = |e: apisnap::deploy::DeployError| {
        Error::from(apisnap::config::ConfigError::file(&e.file, e.message))
    };
    let (jobs_dir, out) = match &command {
        DeployCommand::Systemd { jobs_dir, out, .. }
        | DeployCommand::Kubernetes { jobs_dir, out, .. } => (jobs_dir.clone(), out.clone()),
    };
    let defs = definitions(&jobs_dir, env)?;
    let jobs = deployables(&defs).map_err(config_error)?;
    if jobs.is_empty() {
        return Err(apisnap::config::ConfigError::file(
            &jobs_dir,
            "no job here has a [schedule] table, so there is nothing to deploy",
        )
        .into());
    }
    let files = match command {
        DeployCommand::Systemd {
            bin,
            target_jobs_dir,
            workdir,
            credentials_dir,
            user,
            randomized_delay_secs,
            metrics_dir,
            ..
        } => systemd::render(
            &jobs,
            &systemd::SystemdOptions {
                bin,
                jobs_dir: target_jobs_dir,
                workdir,
                credentials_dir,
                user,
                randomized_delay_secs,
                metrics_dir,
                ..Default::default()
            },
        ),
        DeployCommand::Kubernetes {
            image,
            namespace,
            secret,
            secrets_as,
            claim,
            storage,
            starting_deadline_secs,
            backoff_limit,
            grace_secs,
            shards,
            ..
        } => kubernetes::render(
            &jobs,
            &kubernetes::KubernetesOptions {
                image,
                namespace,
                secret,
                secrets_as: match secrets_as {
                    SecretsAs::Env => kubernetes::SecretsAs::Env,
                    SecretsAs::Files => kubernetes::SecretsAs::Files,
                },
                claim,
                storage,
                starting_deadline_secs,
                backoff_limit,
                grace_secs,
                shards,
            },
        ),
    }
    .map_err(config_error)?;
    let io = |e: std::io::Error| Error::Internal {
        job: "-".into(),
        message: format!("cannot write to {}: {e}", out.display()),
    };
    std::fs::create_dir_all(&out).map_err(io)?;
    for f in files {
        let path = out.join(&f.file);
        std::fs::write(&path, f.text).map_err(io)?;
        println!("wrote {}", path.display());
    }
    Ok(exit::OK)
}

/// `apisnap schema export`.
fn export_schemas(out: &std::path::Path) -> Result<u8, Error> {
    let io = |e: std::io::Error| Error::Internal {
        job: "-".into(),
        message: format!("cannot write to {}: {e}", out.display()),
    };
    std::fs::create_dir_all(out).map_err(io)?;
    for (name, text) in apisnap::config::json_schemas() {
        std::fs::write(out.join(name), text).map_err(io)?;
        println!("wrote {}", out.join(name).display());
    }
    Ok(exit::OK)
}

/// The progress bar being drawn, if any: log lines are written above it, not through it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Where log lines go: stderr, around the progress bar.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().map(|b| b.clone()).unwrap_or(None);
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A progress bar for a run on a terminal: pages, records, records/s, bytes, retries. Nothing
/// at all when stderr is not a terminal (cron, systemd, Kubernetes, a pipe).
struct ProgressDisplay {
    bar: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl ProgressDisplay {
    fn start(rt: &tokio::runtime::Runtime, job: &apisnap::run::Job) -> ProgressDisplay {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return ProgressDisplay { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner().with_prefix(job.name.clone());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {elapsed_precise} {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut slot) = BAR.lock() {
            *slot = Some(bar.clone());
        }
        let handle = job.progress();
        let ticker = {
            let bar = bar.clone();
            rt.spawn(async move {
                let started = std::time::Instant::now();
                loop {
                    let p = handle.read();
                    let rate = p.records as f64 / started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{} pages, {} records, {:.0} records/s, {}, {} retries",
                        p.pages,
                        p.records,
                        rate,
                        indicatif::HumanBytes(p.bytes),
                        p.retries
                    ));
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            })
        };
        ProgressDisplay {
            bar: Some((bar, ticker)),
        }
    }

    fn finish(self) {
        if let Some((bar, ticker)) = self.bar {
            ticker.abort();
            bar.finish_and_clear();
            if let Ok(mut slot) = BAR.lock() {
                *slot = None;
            }
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our own events at the chosen level; dependencies only when they warn.
        EnvFilter::new(format!("warn,apisnap={}", cli.log_level))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        // Colours for a person at a terminal; plain text in files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
