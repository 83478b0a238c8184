//! The `apisnap` command line: parse arguments, dispatch to one function per command, and
//! turn errors into one-line messages and documented exit codes (`apisnap::error::exit`).
//!
//! Read it as a table of contents: [`try_main`] names every command and the function that
//! carries it out; `cli.rs` declares the arguments; the library does the work.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use apisnap::Error;
use apisnap::config::{JobDefinition, find_job, load_job, validate_paths};
use apisnap::env::Env;
use apisnap::error::exit;
use apisnap::run::{Job, RunOptions, RunSummary};
use cli::{
    Cli, Command, DeployCommand, FloorArg, JobsDir, LogFormat, RunArgs, SandboxArgs, SchemaCommand,
};

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    // Before any thread starts: the Seal Metrics guide keeps credentials in .env. Variables
    // already set win.
    let _ = dotenvy::dotenv();
    apisnap::terminal::init_logging(&cli.log_level, matches!(cli.log_format, LogFormat::Json));
    match try_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// glibc gives threads that allocate their own arenas, up to eight per core, and each keeps
/// the page buffers freed in it. One arena is about 10 MB less peak memory at a million
/// records than glibc's default, at the same speed (two arenas were 2-3 MB more;
/// BENCHMARKS.md). `MALLOC_ARENA_MAX` still wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first in `main`, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Every command, and the function that carries it out.
fn try_main(cli: Cli) -> Result<u8, Error> {
    let env = Env::from_process();
    let metrics_dir = cli.metrics_dir;
    match cli.command {
        Command::Run(args) => run(args, metrics_dir, &env),
        Command::Finalize {
            job,
            shards,
            run_id,
            jobs,
        } => finalize(&job, &jobs, shards, run_id.as_deref(), metrics_dir, &env),
        Command::Backfill {
            job,
            from,
            to,
            fresh,
            jobs,
        } => backfill(&job, &jobs, (&from, &to), fresh, metrics_dir, &env),
        Command::Check { job, jobs } => check(&job, &jobs, &env),
        Command::Validate {
            paths,
            secrets,
            jobs,
        } => Ok(validate(paths, &jobs, secrets, &env)),
        Command::Schedule { jobs } => schedule(&jobs, metrics_dir, &env),
        Command::Next { jobs, count } => next(&jobs, count, &env),
        Command::Status { jobs, json } => status(&jobs, json, &env),
        Command::Deploy(command) => deploy(command, &env),
        Command::Sandbox(args) => sandbox(args),
        Command::Schema(SchemaCommand::Export { out }) => export_schemas(&out),
        Command::Schema(SchemaCommand::Infer { job, jobs, out }) => {
            infer_columns(&job, &jobs, out.as_deref(), &env)
        }
        Command::Demo { jobs, out, records } => demo(jobs, out, records, env),
    }
}

fn report(e: &Error) {
    for line in e.to_string().lines() {
        eprintln!("error: {line}");
    }
}

/// `apisnap run`: every job named, one after another. A failed job does not stop the next;
/// the exit code is the first failure's.
fn run(args: RunArgs, metrics_dir: Option<PathBuf>, env: &Env) -> Result<u8, Error> {
    if let Some(floor) = args.floor {
        return run_floor(&args.jobs, &args.dir, floor, env);
    }
    let rt = runtime()?;
    let options = RunOptions {
        fresh: args.fresh,
        metrics_dir,
        shard: match args.shards {
            Some(count) => Some(completion_index_shard(count, env)?),
            None => args.shard,
        },
        run_id: args.run_id,
        stop: Some(stop_on_signals(&rt)),
        backfill: None,
    };
    let mut code = exit::OK;
    for name in &args.jobs {
        let result = build_job(name, &args.dir, env).and_then(|job| {
            let progress = apisnap::terminal::ProgressDisplay::start(&rt, &job);
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

/// `apisnap backfill`: one windowed job over `[from, to)`, resumable, its marks untouched.
fn backfill(
    name: &str,
    dir: &JobsDir,
    (from, to): (&str, &str),
    fresh: bool,
    metrics_dir: Option<PathBuf>,
    env: &Env,
) -> Result<u8, Error> {
    let now = chrono::Utc::now();
    let time = |flag: &str, text: &str| {
        apisnap::slice::window::parse_time(text, now)
            .map_err(|e| Error::from(apisnap::config::ConfigError::field(flag, e)))
    };
    // Whole seconds, so that the same command names (and resumes) the same backfill.
    let second = |t: chrono::DateTime<chrono::Utc>| {
        chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
    };
    let range = apisnap::run::Backfill {
        from: second(time("--from", from)?),
        to: second(time("--to", to)?),
    };
    if range.from >= range.to {
        return Err(apisnap::config::ConfigError::field(
            "--to",
            format!("`{to}` is not after `--from` `{from}`"),
        )
        .into());
    }
    let rt = runtime()?;
    let options = RunOptions {
        fresh,
        metrics_dir,
        stop: Some(stop_on_signals(&rt)),
        backfill: Some(range),
        ..RunOptions::default()
    };
    let job = build_job(name, dir, env)?;
    let progress = apisnap::terminal::ProgressDisplay::start(&rt, &job);
    let result = rt.block_on(job.run(&options));
    progress.finish();
    let summary = result?;
    print_summary(&summary);
    Ok(exit::OK)
}

/// `apisnap run --floor`: the benchmark floors.
fn run_floor(jobs: &[String], dir: &JobsDir, floor: FloorArg, env: &Env) -> Result<u8, Error> {
    let floor = match floor {
        FloorArg::Fetch => apisnap::run::Floor::Fetch,
        FloorArg::Parse => apisnap::run::Floor::Parse,
    };
    let rt = runtime()?;
    for name in jobs {
        let s = rt.block_on(build_job(name, dir, env)?.floor(floor))?;
        println!(
            "{}: floor {:?}: {} pages, {} records, {} bytes in {:.2}s",
            s.job, floor, s.pages, s.records, s.bytes, s.duration_secs
        );
    }
    Ok(exit::OK)
}

/// `apisnap finalize`.
fn finalize(
    name: &str,
    dir: &JobsDir,
    shards: u64,
    run_id: Option<&str>,
    metrics_dir: Option<PathBuf>,
    env: &Env,
) -> Result<u8, Error> {
    let job = build_job(name, dir, env)?;
    let done = runtime()?.block_on(job.finalize_shards(shards, run_id, metrics_dir.as_deref()))?;
    if done.already {
        println!(
            "{}: run {} was already finalized: {} records in {}",
            done.job, done.run_id, done.records, done.snapshot_dir
        );
    } else {
        println!(
            "{}: run {} finalized: {} records in {} parts from {shards} shards, {}",
            done.job, done.run_id, done.records, done.parts, done.snapshot_dir
        );
    }
    Ok(exit::OK)
}

/// `apisnap check`: the first thing to run against a new API.
fn check(name: &str, dir: &JobsDir, env: &Env) -> Result<u8, Error> {
    let job = build_job(name, dir, env)?;
    let report = runtime()?.block_on(job.check())?;
    println!("{}: {} -> {}", report.job, report.request, report.status);
    println!(
        "  authentication: ok ({} login{})",
        report.logins,
        if report.logins == 1 { "" } else { "s" }
    );
    if let Some(tls) = &report.tls {
        let version = tls.version.as_deref().unwrap_or("TLS");
        match &tls.certificate {
            Some(cert) => {
                println!("  {version}: certificate of {}", cert.subject);
                println!("    issued by {}", cert.issuer);
                println!(
                    "    valid {} to {}, for {}",
                    cert.not_before.format("%Y-%m-%d"),
                    cert.not_after.format("%Y-%m-%d"),
                    if cert.names.is_empty() {
                        "no names".to_string()
                    } else {
                        cert.names.join(", ")
                    }
                );
            }
            None => println!("  {version}: the server's certificate could not be read"),
        }
    }
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

/// `apisnap validate`: exit 2 when any file has a mistake.
fn validate(paths: Vec<PathBuf>, dir: &JobsDir, secrets: bool, env: &Env) -> u8 {
    let paths = if paths.is_empty() {
        vec![dir.jobs_dir.clone()]
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

/// `apisnap schedule`: run each job at its fire times until stopped; SIGHUP reads the jobs
/// directory again.
fn schedule(dir: &JobsDir, metrics_dir: Option<PathBuf>, env: &Env) -> Result<u8, Error> {
    use apisnap::schedule::Plan;
    use apisnap::scheduler::{Daemon, RunJob, SystemClock};
    let rt = runtime()?;
    let stop = stop_on_signals(&rt);
    let (jobs, files) = rt.block_on(schedules(dir, env))?;
    if jobs.is_empty() {
        return Err(apisnap::config::ConfigError::file(
            &dir.jobs_dir,
            "no job here has a [schedule] table: add one (cron = \"30 2 * * *\") or run \
             jobs with `apisnap run`",
        )
        .into());
    }
    let files = std::sync::Arc::new(std::sync::RwLock::new(files));
    let reloads = reload_on_hangup(&rt, dir.clone(), env.clone(), files.clone());
    let env = std::sync::Arc::new(env.clone());
    let options = RunOptions {
        stop: Some(stop.clone()),
        metrics_dir,
        ..Default::default()
    };
    let run: RunJob = std::sync::Arc::new(move |job: String| {
        let file = files.read().expect("not poisoned").get(&job).cloned();
        let env = env.clone();
        let options = options.clone();
        Box::pin(async move {
            let file = file.ok_or_else(|| Error::Internal {
                job: job.clone(),
                message: "its job file is gone from the jobs directory".into(),
            })?;
            // Read again for every run: edited credentials or fields take effect without a
            // restart (the schedule itself on SIGHUP).
            let job = load_job(&file, &env)?.build(&env)?;
            let summary = job.run(&options).await?;
            print_summary(&summary);
            Ok(summary)
        })
    });
    let plan = Plan::new(jobs, chrono::Utc::now());
    rt.block_on(
        Daemon::new(SystemClock, plan, run)
            .with_reloads(reloads)
            .run(stop),
    );
    Ok(exit::OK)
}

/// The schedules of the jobs directory's jobs that have one, and every job's file.
async fn schedules(
    dir: &JobsDir,
    env: &Env,
) -> Result<
    (
        Vec<apisnap::schedule::JobSchedule>,
        std::collections::HashMap<String, PathBuf>,
    ),
    Error,
> {
    let defs = definitions(dir, env)?;
    let mut jobs = Vec::new();
    for def in &defs {
        match apisnap::scheduler::job_schedule(def).await? {
            Some(j) => {
                let next = j.schedule.upcoming(j.timezone).next();
                tracing::info!(job = %j.job, timezone = %j.timezone, next = ?next.map(|t| t.to_rfc3339()), "scheduled");
                jobs.push(j);
            }
            None => tracing::info!(job = %def.name, "no [schedule]: not run by the scheduler"),
        }
    }
    let files = defs.into_iter().map(|d| (d.name, d.file)).collect();
    Ok((jobs, files))
}

/// Reads the jobs directory again at every SIGHUP and hands the new schedules over; a
/// directory that no longer loads is logged, and the schedules stay as they were.
fn reload_on_hangup(
    rt: &tokio::runtime::Runtime,
    dir: JobsDir,
    env: Env,
    files: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, PathBuf>>>,
) -> tokio::sync::mpsc::UnboundedReceiver<Vec<apisnap::schedule::JobSchedule>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Installed before the scheduler starts: a SIGHUP before it would end the process.
    let hangups = {
        let _runtime = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    let Ok(mut hangups) = hangups else {
        tracing::warn!("cannot listen for SIGHUP: restart the scheduler to read edited job files");
        return rx;
    };
    tracing::info!(
        pid = std::process::id(),
        "send SIGHUP to read the jobs directory again"
    );
    rt.spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!(jobs_dir = %dir.jobs_dir.display(), "SIGHUP: reading the jobs directory again");
            match schedules(&dir, &env).await {
                Ok((jobs, new_files)) => {
                    *files.write().expect("not poisoned") = new_files;
                    if tx.send(jobs).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the jobs directory does not load: keeping the schedules as they were; fix it and send SIGHUP again");
                }
            }
        }
    });
    rx
}

/// `apisnap next`.
fn next(dir: &JobsDir, count: usize, env: &Env) -> Result<u8, Error> {
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
fn status(dir: &JobsDir, json: bool, env: &Env) -> Result<u8, Error> {
    let now = chrono::Utc::now();
    let rt = runtime()?;
    let mut statuses = Vec::new();
    for def in definitions(dir, env)? {
        statuses.push(rt.block_on(apisnap::status::JobStatus::of(&def, now))?);
    }
    if json {
        let text = serde_json::to_string_pretty(&statuses).expect("statuses serialize");
        println!("{text}");
    } else {
        for s in &statuses {
            print!("{s}");
        }
    }
    Ok(exit::OK)
}

/// `apisnap deploy`.
fn deploy(command: DeployCommand, env: &Env) -> Result<u8, Error> {
    use apisnap::deploy::{deployables, kubernetes, systemd};
    let config_error = |e: apisnap::deploy::DeployError| {
        Error::from(apisnap::config::ConfigError::file(&e.file, e.message))
    };
    let (dir, out) = match &command {
        DeployCommand::Systemd { jobs, out, .. } | DeployCommand::Kubernetes { jobs, out, .. } => {
            (jobs.clone(), out.clone())
        }
    };
    let defs = definitions(&dir, env)?;
    let jobs = deployables(&defs).map_err(config_error)?;
    if jobs.is_empty() {
        return Err(apisnap::config::ConfigError::file(
            &dir.jobs_dir,
            "no job here has a [schedule] table, so there is nothing to deploy",
        )
        .into());
    }
    let files = match command {
        DeployCommand::Systemd { options, .. } => systemd::render(&jobs, &options),
        DeployCommand::Kubernetes { options, .. } => kubernetes::render(&jobs, &options),
    }
    .map_err(config_error)?;
    for f in files {
        let path = out.join(&f.file);
        write_file(&path, f.text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(exit::OK)
}

/// `apisnap sandbox`: serve until Ctrl-C.
fn sandbox(args: SandboxArgs) -> Result<u8, Error> {
    use apisnap::sandbox::{Fault, FaultConfig, Sandbox, SandboxConfig};
    use std::time::Duration;
    let kinds = if args.faults.is_empty() {
        Fault::all(Duration::from_secs(5))
    } else {
        args.faults
            .iter()
            .map(|f| {
                Fault::parse(f).ok_or_else(|| {
                    Error::from(apisnap::config::ConfigError::field(
                        "--faults",
                        format!(
                            "unknown fault `{f}`: expected 500, 502, 503, 429, 429-date, \
                             close, slow or malformed"
                        ),
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let read = |flag: &str, path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            Error::from(apisnap::config::ConfigError::field(
                flag,
                format!("cannot read `{}`: {e}", path.display()),
            ))
        })
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(apisnap::sandbox::SandboxTls {
            cert_pem: read("--tls-cert", cert)?,
            key_pem: read("--tls-key", key)?,
            client_ca_pem: match &args.client_ca {
                Some(ca) => Some(read("--client-ca", ca)?),
                None => None,
            },
            tls12_only: false,
            client_certificate_optional: false,
        }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = SandboxConfig {
        tls,
        records: args.records,
        max_page_size: args.max_page_size,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        revoke_every: args.revoke_every,
        latency: Duration::from_millis(args.latency_ms),
        faults: FaultConfig {
            rate: args.fault_rate,
            seed: args.seed,
            kinds,
            ..Default::default()
        },
        compress: args.compress,
        prerender: args.prerender,
        capacity: args.capacity,
        workers: args.workers,
        ..SandboxConfig::default()
    };
    let port = args.port;
    runtime()?.block_on(async {
        let sandbox = Sandbox::start(config, port)
            .await
            .map_err(|e| Error::Internal {
                job: "sandbox".into(),
                message: format!("cannot listen on 127.0.0.1:{port}: {e}"),
            })?;
        println!("sandbox listening on {scheme}://{}", sandbox.addr());
        for p in apisnap::sandbox::PROVIDERS {
            println!("  {p}: {}", sandbox.base_url(p));
        }
        println!("  counters: {scheme}://{}/_sandbox/stats", sandbox.addr());
        println!("Ctrl-C stops it.");
        let _ = tokio::signal::ctrl_c().await;
        sandbox.stop().await;
        Ok(exit::OK)
    })
}

/// `apisnap schema export`.
fn export_schemas(out: &Path) -> Result<u8, Error> {
    for (name, text) in apisnap::config::json_schemas() {
        let path = out.join(name);
        write_file(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(exit::OK)
}

/// `apisnap schema infer`.
fn infer_columns(name: &str, dir: &JobsDir, out: Option<&Path>, env: &Env) -> Result<u8, Error> {
    let job = build_job(name, dir, env)?;
    let schema = runtime()?.block_on(job.infer_columns())?;
    let text = format!(
        "# Columns of job `{}`, inferred from its first page. Review the types (timestamp,\n\
         # decimal, json...), then name this file in the job: [schema] file = \"...\".\n\n{}",
        job.name,
        apisnap::columns::to_toml(&apisnap::columns::ColumnsFile::from_schema(&schema))
    );
    match out {
        Some(path) => {
            write_file(path, text.as_bytes())?;
            println!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(exit::OK)
}

/// `apisnap demo`: run the shipped jobs against the sandbox and print what they wrote.
fn demo(dir: JobsDir, out: PathBuf, records: u64, env: Env) -> Result<u8, Error> {
    let options = apisnap::demo::DemoOptions {
        jobs_dir: dir.jobs_dir,
        out_dir: out,
        records,
    };
    let summaries = runtime()?.block_on(apisnap::demo::run_demo(&options, env))?;
    for s in &summaries {
        print_summary(s);
        let first = s.parts.first().map(|p| s.snapshot_dir.join(&p.file));
        if let Some(path) = first.as_ref().and_then(|p| p.local_path()) {
            match apisnap::demo::preview(path, 5) {
                Ok(table) => println!("{table}\n"),
                Err(e) => eprintln!("warning: cannot preview {}: {e}", path.display()),
            }
        }
    }
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
        s.snapshot_dir,
        s.duration_secs,
        s.pages,
        s.retries,
        if s.resumed { ", resumed" } else { "" }
    );
}

/// The one way from a job's name (or file) to a job ready to run.
fn build_job(name: &str, dir: &JobsDir, env: &Env) -> Result<Job, Error> {
    Ok(definition(name, dir, env)?.build(env)?)
}

/// A job's definition, by name (looked up in the jobs directory) or file.
fn definition(name: &str, dir: &JobsDir, env: &Env) -> Result<JobDefinition, Error> {
    let file = find_job(name, &dir.jobs_dir)?;
    Ok(load_job(&file, env)?)
}

/// Every job definition in the jobs directory (secrets are not needed).
fn definitions(dir: &JobsDir, env: &Env) -> Result<Vec<JobDefinition>, Error> {
    let files = apisnap::config::job_files(&dir.jobs_dir)?;
    files
        .iter()
        .map(|f| load_job(f, env).map_err(Error::Config))
        .collect()
}

/// Writes a file the user asked for (deployment files, schemas, a column file).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let written = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| std::fs::write(path, bytes)),
        None => std::fs::write(path, bytes),
    };
    written.map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        // clap checks names, defaults and conflicts of every subcommand only when it is
        // used; this checks them all.
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
