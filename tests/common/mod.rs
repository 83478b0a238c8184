//! Shared test helpers: a workspace with job files, the real binary as a child process, and
//! readers that compare written files with the sandbox's generator.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use apisnap::sandbox::{Sandbox, credentials};

pub mod certs;
pub mod tinyproxy;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_apisnap")
}

/// A temporary directory holding `jobs/` (a copy of the shipped jobs) and whatever a test
/// writes.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("jobs/providers")).unwrap();
        Workspace { dir }
    }

    /// A workspace with a copy of the repository's `jobs/`.
    pub fn with_shipped_jobs() -> Self {
        let ws = Workspace::empty();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        copy_dir(&src, &ws.path().join("jobs"));
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Runs `apisnap args...` in this workspace with exactly `env` (nothing inherited).
    pub async fn apisnap(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(args)
            .current_dir(self.path())
            .env_clear()
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().await.expect("run apisnap")
    }

    /// Every file under the workspace (relative paths), sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out.sort();
        out.into_iter()
            .map(|p| p.strip_prefix(self.path()).unwrap().to_path_buf())
            .collect()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        // Links (`latest`) lead to a snapshot already walked.
        if e.file_type().unwrap().is_symlink() {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let target = dst.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// A Seal Metrics job `name` on a sandbox endpoint: `endpoint` and `pagination` are the
/// bodies of those tables, `extra` top-level keys (or tables after them), the output in
/// `out/{job}`.
pub fn seal_job(ws: &Workspace, name: &str, endpoint: &str, pagination: &str, extra: &str) {
    ws.write(
        &format!("jobs/{name}.toml"),
        &format!(
            "provider = \"seal_metrics\"\n{extra}\n[endpoint]\n{endpoint}\n[pagination]\n\
             {pagination}\n[output]\ndir = \"out/{{job}}\"\n"
        ),
    );
}

/// The variables that point the shipped Seal Metrics provider at the sandbox.
pub fn seal_env(sandbox: &Sandbox) -> Vec<(String, String)> {
    vec![
        (
            "APISNAP_PROVIDER_SEAL_METRICS__BASE_URL".into(),
            sandbox.base_url("seal"),
        ),
        ("SEAL_METRICS_EMAIL".into(), credentials::SEAL_EMAIL.into()),
        (
            "SEAL_METRICS_PASSWORD".into(),
            credentials::SEAL_PASSWORD.into(),
        ),
    ]
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panics with the child's output when it did not exit with `code`.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The single data file under `dir` (recursively) with extension `ext`.
pub fn only_file(dir: &Path, ext: &str) -> PathBuf {
    let mut found = Vec::new();
    walk(dir, &mut found);
    let matching: Vec<_> = found
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one .{ext} file, found {matching:?}"
    );
    matching.into_iter().next().unwrap()
}

pub mod check {
    //! Compare written files with the generator, value by value.

    use std::path::Path;

    use apisnap::sandbox::data::{COLUMNS, record};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::{Array, RecordBatch};

    /// Reads a Parquet file and checks it holds records `0..count` exactly, in order.
    pub fn parquet(path: &Path, count: u64) {
        assert_eq!(parquet_from(path, 0), count, "record count");
    }

    /// Reads a Parquet file whose first record is `first`; checks every value and returns
    /// the number of records.
    pub fn parquet_from(path: &Path, first: u64) -> u64 {
        parquet_rows(path, first..)
    }

    /// Reads a Parquet file and checks its rows are the records `ids` names, in that order,
    /// every value; returns the number of rows.
    pub fn parquet_rows(path: &Path, mut ids: impl Iterator<Item = u64>) -> u64 {
        let file = std::fs::File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut rows = 0;
        for batch in reader {
            let batch = batch.unwrap();
            let names: Vec<_> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(names, COLUMNS, "columns in source order");
            for row in 0..batch.num_rows() {
                let i = ids.next().expect("no more rows than records");
                check_row(&batch, row, i);
                rows += 1;
            }
        }
        rows
    }

    fn check_row(batch: &RecordBatch, row: usize, i: u64) {
        let want = record(i);
        let col = |name: &str| batch.column_by_name(name).unwrap();
        assert_eq!(col("id").as_primitive::<Int64Type>().value(row), want.id);
        assert_eq!(
            col("name").as_string::<i32>().value(row),
            want.name,
            "record {i}"
        );
        let amount = col("amount").as_primitive::<Float64Type>();
        let got = (!amount.is_null(row)).then(|| amount.value(row));
        assert_eq!(got, want.amount, "amount of record {i}");
        assert_eq!(
            col("quantity").as_primitive::<Int64Type>().value(row),
            want.quantity
        );
        assert_eq!(col("active").as_boolean().value(row), want.active);
        // ISO-8601 with an offset: inferred as a UTC timestamp, to the microsecond.
        let created = col("created_at");
        assert_eq!(
            created.data_type(),
            &arrow_schema::DataType::Timestamp(
                arrow_schema::TimeUnit::Microsecond,
                Some("UTC".into())
            )
        );
        let micros = created
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
            .value(row);
        let want_at = chrono::DateTime::parse_from_rfc3339(&want.created_at).unwrap();
        assert_eq!(
            micros,
            want_at.timestamp_micros(),
            "created_at of record {i}"
        );
        let tags = col("tags").as_list::<i32>().value(row);
        let tags: Vec<String> = tags
            .as_string::<i32>()
            .iter()
            .map(|t| t.unwrap().to_string())
            .collect();
        assert_eq!(tags, want.tags, "tags of record {i}");
        let address = col("address").as_struct();
        let city = address.column_by_name("city").unwrap().as_string::<i32>();
        let zip = address.column_by_name("zip").unwrap().as_string::<i32>();
        assert_eq!(city.value(row), want.address.city);
        let got_zip = (!zip.is_null(row)).then(|| zip.value(row).to_string());
        assert_eq!(got_zip, want.address.zip, "zip of record {i}");
    }

    /// Reads a CSV file with the `csv` crate and checks it holds records `0..count` exactly.
    pub fn csv(path: &Path, count: u64) {
        let mut reader = ::csv::Reader::from_path(path).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, COLUMNS);
        let mut i = 0u64;
        for row in reader.records() {
            let row = row.unwrap();
            let want = record(i);
            assert_eq!(row[0].parse::<i64>().unwrap(), want.id);
            assert_eq!(&row[1], want.name, "name of record {i}");
            let amount = (!row[2].is_empty()).then(|| row[2].parse::<f64>().unwrap());
            assert_eq!(amount, want.amount, "amount of record {i}");
            assert_eq!(row[3].parse::<i64>().unwrap(), want.quantity);
            assert_eq!(row[4].parse::<bool>().unwrap(), want.active);
            assert_eq!(&row[5], want.created_at);
            let tags: Vec<String> = serde_json::from_str(&row[6]).unwrap();
            assert_eq!(tags, want.tags, "tags of record {i}");
            let address: serde_json::Value = serde_json::from_str(&row[7]).unwrap();
            assert_eq!(
                address,
                serde_json::json!({"city": want.address.city, "zip": want.address.zip}),
                "address of record {i}"
            );
            i += 1;
        }
        assert_eq!(i, count, "record count");
    }
}

/// Everything a job of `provider` (a shipped provider file's name) needs to reach the
/// sandbox, as the demo sets it, plus a token cache and output inside the workspace.
pub fn provider_env(sandbox: &Sandbox, ws: &Workspace, provider: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = apisnap::demo::sandbox_bindings(sandbox, ws.path())
        .into_iter()
        .find(|(p, _)| *p == provider)
        .unwrap_or_else(|| panic!("no sandbox binding for {provider}"))
        .1;
    // Token caches go under the workspace's XDG cache, as for a user.
    env.retain(|(k, _)| !k.ends_with("__CACHE_DIR"));
    env.push((
        "XDG_CACHE_HOME".into(),
        ws.path().join("cache").to_string_lossy().into(),
    ));
    for job in [
        "seal_metrics_events",
        "armor_events",
        "netography_alerts",
        "spreetail_orders",
        "kalibrate_prices",
        "armor_account_events",
        "seal_metrics_report",
    ] {
        env.push((
            format!("{}__OUTPUT__DIR", apisnap::env::job_prefix(job)),
            ws.path()
                .join("out/{job}/{run_id}")
                .to_string_lossy()
                .into(),
        ));
    }
    env
}

/// The shipped job of each provider, its sandbox path, and the file format it writes.
pub const PROVIDER_JOBS: [(&str, &str, &str, &str); 5] = [
    ("seal_metrics", "seal", "seal_metrics_events", "parquet"),
    ("armor", "armor", "armor_events", "parquet"),
    ("netography", "netography", "netography_alerts", "parquet"),
    ("spreetail", "spreetail", "spreetail_orders", "csv"),
    ("kalibrate", "kalibrate", "kalibrate_prices", "parquet"),
];

/// Checks the one snapshot under `out/` holds records `0..count`.
pub fn check_output(ws: &Workspace, format: &str, count: u64) {
    let file = only_file(&ws.path().join("out"), format);
    match format {
        "csv" => check::csv(&file, count),
        _ => check::parquet(&file, count),
    }
}

/// The snapshot directories (those holding part files) under `root`, sorted.
pub fn snapshot_dirs(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if root.exists() {
        walk(root, &mut files);
    }
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The part files of a snapshot directory, in order.
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    parts.sort();
    parts
}

/// Reads every part of a Parquet snapshot in order; checks they hold records `0..count`
/// exactly once, in order.
pub fn check_parquet_snapshot(dir: &Path, count: u64) {
    let mut next = 0u64;
    for part in parts(dir) {
        let n = check::parquet_from(&part, next);
        next += n;
    }
    assert_eq!(next, count, "records in {}", dir.display());
}

/// A Python with pyarrow, DuckDB, moto and Azure's client (tests/analysts/requirements.txt), in
/// `target/analyst-venv`. `.ci/run` creates it before the tests; on a developer's machine
/// the first test that needs it does (pip, from PyPI).
pub fn analyst_python() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let venv = root.join("target/analyst-venv");
            let python = venv.join("bin/python");
            let ready = || {
                std::process::Command::new(&python)
                    .args([
                        "-c",
                        "import pyarrow, duckdb, polars, pandas, moto.server, azure.storage.blob",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !ready() {
                let status = std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .expect("python3 is needed for the analysts' readers");
                assert!(status.success(), "python3 -m venv failed");
                let status = std::process::Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "-r"])
                    .arg(root.join("tests/analysts/requirements.txt"))
                    .status()
                    .unwrap();
                assert!(status.success(), "pip install of the test tools failed");
                assert!(ready(), "the test tools still do not import");
            }
            python
        })
        .clone()
}

/// Azurite's Blob Storage server (tests/azurite/package.json, npm), in `target/azurite`.
/// `.ci/run` installs it before the tests; on a developer's machine the first test that
/// needs it does (`npm ci`, from the npm registry).
pub fn azurite_blob() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let prefix = root.join("target/azurite");
            let server = prefix.join("node_modules/.bin/azurite-blob");
            if !server.exists() {
                std::fs::create_dir_all(&prefix).unwrap();
                for file in ["package.json", "package-lock.json"] {
                    std::fs::copy(root.join("tests/azurite").join(file), prefix.join(file))
                        .unwrap();
                }
                let status = std::process::Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--silent", "--prefix"])
                    .arg(&prefix)
                    .status()
                    .expect("npm (Node.js) is needed for the Azure Blob Storage tests");
                assert!(status.success(), "npm ci of Azurite failed");
            }
            server
        })
        .clone()
}

/// `apisnap status --json`'s entry for `job` (the command must succeed).
pub async fn status_of(ws: &Workspace, env: &[(String, String)], job: &str) -> serde_json::Value {
    let out = ws.apisnap(&["status", "--json"], env).await;
    assert_exit(&out, 0);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job)
        .unwrap_or_else(|| panic!("no {job} in {all}"))
        .clone()
}

/// Every batch of a Parquet file; panics naming the file if it does not open.
pub fn read_parquet(path: &Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} does not open: {e}", path.display()))
        .build()
        .unwrap()
        .map(|b| b.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// A sandbox on a free loopback port.
pub async fn start_sandbox(config: apisnap::sandbox::SandboxConfig) -> Sandbox {
    Sandbox::start(config, 0).await.expect("the sandbox starts")
}

/// Starts `apisnap args...` in the workspace with exactly `env`, its output piped (read it
/// with `wait_with_output`); killed if the test drops it.
pub fn spawn(ws: &Workspace, env: &[(String, String)], args: &[&str]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args)
        .current_dir(ws.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("start apisnap")
}

/// Runs `job` as `count` shards at once (`--shards count`, `JOB_COMPLETION_INDEX=i`), as an
/// Indexed Job's pods do; each must succeed.
pub async fn run_shards(ws: &Workspace, env: &[(String, String)], job: &str, count: u64) {
    // As the pods of a Kubernetes Indexed Job: each is told its index in the environment.
    let shards: Vec<_> = (0..count)
        .map(|i| {
            let mut env = env.to_vec();
            env.push(("JOB_COMPLETION_INDEX".into(), i.to_string()));
            spawn(ws, &env, &["run", job, "--shards", &count.to_string()])
        })
        .collect();
    for (i, shard) in shards.into_iter().enumerate() {
        let out = shard.wait_with_output().await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "shard {i}: {}",
            text(&out.stderr)
        );
    }
}

/// Sends SIGTERM, as Kubernetes and systemd do to stop a job.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

/// The fenced blocks of README.md in `lang` (```toml, ```python, ...), with the line each
/// starts at; only those under the heading `section` (up to the next heading of its level),
/// if given.
pub fn readme_blocks(lang: &str, section: Option<&str>) -> Vec<(usize, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let fence = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut inside = section.is_none();
    // Inside a fenced block of another language: its `#` lines are not headings.
    let mut other = false;
    for (i, line) in readme.lines().enumerate() {
        let trimmed = line.trim_start();
        if current.is_none()
            && trimmed.starts_with("```")
            && (!trimmed.starts_with(&fence) || !inside)
        {
            other = !other;
            continue;
        }
        if other {
            continue;
        }
        if current.is_none()
            && let Some(section) = section
            && line.starts_with('#')
        {
            let level = line.chars().take_while(|c| *c == '#').count();
            let title = line[level..].trim();
            if title == section {
                inside = true;
            } else if inside && level <= section_level(&readme, section) {
                inside = false;
            }
        }
        match (&mut current, trimmed) {
            (None, l) if inside && l.starts_with(&fence) => current = Some((i + 1, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.push(current.take().unwrap()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn section_level(readme: &str, section: &str) -> usize {
    readme
        .lines()
        .find(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == section)
        .map(|l| l.chars().take_while(|c| *c == '#').count())
        .unwrap_or(1)
}

/// Whether `script` (util-linux) is here to give a run a pseudo-terminal; CI installs it,
/// so there a missing one fails the test instead of skipping it.
pub fn have_script() -> bool {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "`script` (util-linux) is not installed (.ci/run installs it)"
    );
    eprintln!("`script` (util-linux) is not installed: skipping");
    false
}

/// `apisnap ARGS` on a pseudo-terminal (from `script`), with `env` and a terminal's
/// `TERM` and `PATH`: what its screen showed, after checking it succeeded.
pub async fn on_terminal(ws: &Workspace, env: &[(String, String)], args: &str) -> String {
    let mut env = env.to_vec();
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    env.push(("TERM".into(), "xterm-256color".into()));
    let out = tokio::process::Command::new("script")
        .args(["-qec", &format!("{} {args}", bin()), "/dev/null"])
        .current_dir(ws.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    screen
}
