//! `apisnap demo`: the shipped jobs, run against the built-in sandbox.
//!
//! It starts the sandbox on a free loopback port and points the jobs at it with the same
//! environment variables a user would set (`APISNAP_PROVIDER_<NAME>__BASE_URL`, the
//! credential variables, `APISNAP_JOB_<NAME>__OUTPUT__DIR`), so it exercises exactly the code
//! path of a real run.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::config::{ConfigErrors, find_job, job_files, load_job};
use crate::env::{Env, job_prefix, provider_prefix};
use crate::run::RunSummary;
use crate::sandbox::{Sandbox, SandboxConfig, credentials};

/// The variables that point a shipped provider file at the sandbox, by provider name.
/// Everything else about the provider (its auth kind, pointers, token lifecycle) is the
/// shipped file's own.
pub fn sandbox_bindings(
    sandbox: &Sandbox,
    state_dir: &Path,
) -> Vec<(&'static str, Vec<(String, String)>)> {
    use credentials as c;
    let base = |provider: &str, path: &str| {
        (
            format!("{}__BASE_URL", provider_prefix(provider)),
            sandbox.base_url(path),
        )
    };
    let var = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        (
            "seal_metrics",
            vec![
                base("seal_metrics", "seal"),
                var("SEAL_METRICS_EMAIL", c::SEAL_EMAIL),
                var("SEAL_METRICS_PASSWORD", c::SEAL_PASSWORD),
            ],
        ),
        (
            "armor",
            vec![
                base("armor", "armor"),
                var("ARMOR_USERNAME", c::ARMOR_USERNAME),
                var("ARMOR_PASSWORD", c::ARMOR_PASSWORD),
            ],
        ),
        (
            "netography",
            vec![
                base("netography", "netography"),
                var("NETOGRAPHY_SHARED_SECRET", c::NETOGRAPHY_SHARED_SECRET),
                var("NETOGRAPHY_APPKEY", c::NETOGRAPHY_APPKEY),
                var(
                    "APISNAP_PROVIDER_NETOGRAPHY__AUTH__CLAIMS__APPNAME",
                    c::NETOGRAPHY_APPNAME,
                ),
                var(
                    "APISNAP_PROVIDER_NETOGRAPHY__AUTH__CLAIMS__SHORTNAME",
                    c::NETOGRAPHY_SHORTNAME,
                ),
                var(
                    "APISNAP_PROVIDER_NETOGRAPHY__AUTH__TOKEN__CACHE_DIR",
                    &state_dir.join("tokens").to_string_lossy(),
                ),
            ],
        ),
        (
            "spreetail",
            vec![
                base("spreetail", "spreetail"),
                var("SPREETAIL_CLIENT_ID", c::SPREETAIL_CLIENT_ID),
                var("SPREETAIL_CLIENT_SECRET", c::SPREETAIL_CLIENT_SECRET),
            ],
        ),
        (
            "kalibrate",
            vec![
                base("kalibrate", "kalibrate"),
                var(
                    "APISNAP_PROVIDER_KALIBRATE__AUTH__TOKEN_URL",
                    &sandbox
                        .localhost_url(&format!("/aad/{}/oauth2/v2.0/token", c::KALIBRATE_TENANT)),
                ),
                var("KALIBRATE_CLIENT_ID", c::KALIBRATE_CLIENT_ID),
                var("KALIBRATE_CLIENT_SECRET", c::KALIBRATE_CLIENT_SECRET),
            ],
        ),
    ]
}

pub struct DemoOptions {
    pub jobs_dir: PathBuf,
    pub out_dir: PathBuf,
    pub records: u64,
}

/// Starts the sandbox, runs every job in `jobs_dir` whose provider it emulates, and returns
/// the summaries.
pub async fn run_demo(options: &DemoOptions, env: Env) -> Result<Vec<RunSummary>, Error> {
    let sandbox = Sandbox::start(
        SandboxConfig {
            records: options.records,
            ..SandboxConfig::default()
        },
        0,
    )
    .await
    .map_err(|e| Error::Internal {
        job: "demo".into(),
        message: format!("cannot start the sandbox: {e}"),
    })?;
    let env = sandbox_env(&sandbox, env, &options.jobs_dir, &options.out_dir)?;
    let mut summaries = Vec::new();
    let providers: Vec<&str> = sandbox_bindings(&sandbox, &options.out_dir)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for file in demo_jobs(&options.jobs_dir, &env, &providers)? {
        let def = load_job(&file, &env)?;
        let job = def.build(&env)?;
        summaries.push(job.run(&crate::run::RunOptions::default()).await?);
    }
    sandbox.stop().await;
    Ok(summaries)
}

/// The environment that points the shipped jobs at `sandbox` and their output at `out_dir`.
pub fn sandbox_env(
    sandbox: &Sandbox,
    mut env: Env,
    jobs_dir: &Path,
    out_dir: &Path,
) -> Result<Env, Error> {
    for (_, vars) in sandbox_bindings(sandbox, out_dir) {
        for (name, value) in vars {
            env.set(name, value);
        }
    }
    let dir = out_dir.join("{job}").join("{date}");
    for file in job_files(jobs_dir).map_err(ConfigErrors::from)? {
        let name = file.file_stem().unwrap_or_default().to_string_lossy();
        env.set(
            format!("{}__OUTPUT__DIR", job_prefix(&name)),
            dir.to_string_lossy(),
        );
        // The demo's checkpoints and history stay with its output, apart from real runs'.
        env.set(
            format!("{}__STATE_DIR", job_prefix(&name)),
            out_dir.join("state").to_string_lossy(),
        );
    }
    Ok(env)
}

/// The jobs in `dir` whose provider the sandbox emulates.
fn demo_jobs(dir: &Path, env: &Env, providers: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for file in job_files(dir).map_err(ConfigErrors::from)? {
        let def = load_job(&file, env)?;
        if providers.contains(&def.job.provider.as_str()) {
            out.push(find_job(&file.to_string_lossy(), dir).map_err(ConfigErrors::from)?);
        }
    }
    Ok(out)
}

/// The first `rows` rows of a written file as a table.
pub fn preview(path: &Path, rows: usize) -> Result<String, String> {
    use arrow_array::RecordBatch;
    let batches: Vec<RecordBatch> = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| e.to_string())?
                    .with_batch_size(rows)
                    .with_limit(rows)
                    .build()
                    .map_err(|e| e.to_string())?;
            reader
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        }
        _ => {
            use std::io::BufRead;
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            let lines: Vec<String> = std::io::BufReader::new(file)
                .lines()
                .take(rows + 1)
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            return Ok(lines.join("\n"));
        }
    };
    arrow_cast::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .map_err(|e| e.to_string())
}
