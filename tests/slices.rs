//! Sliced jobs through the binary: the sandbox's report API (`/seal/accounts`, and
//! `/seal/report?account&from&to`, events every three hours, so day windows meet events on
//! their boundaries) read per account and per window, every record once with its partition
//! column, and still once after twenty `kill -9`s.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use apisnap::sandbox::{REPORT_ACCOUNTS, SandboxConfig, report_events};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use common::{Workspace, assert_exit, provider_env, snapshot_dirs, spawn, text};

const JOB: &str = "account_report";
/// 2026-11-01T00:00:00Z and five days later.
const FROM: i64 = 1_793_491_200;
const DAYS: i64 = 5;

/// The report job: accounts from `/accounts`, day windows (or `step`), pages of `page`.
fn job(step: &str, page: u64) -> String {
    format!(
        r#"provider = "seal_metrics"

[endpoint]
path = "/report"
query = {{ account = "{{partition.account_id}}" }}

[partitions]
type = "endpoint"
path = "/accounts"
items_pointer = "/accounts"
fields = {{ account_id = "/id" }}

[windows]
start = "2026-11-01"
end = "2026-11-06"
step = "{step}"
start_param = "from"
end_param = "to"

[slices]
concurrency = 4

[pagination]
type = "offset"
offset_param = "skip"
limit_param = "limit"
page_size = {page}
total_pointer = "/total"

[output]
format = "parquet"
dir = "out/{{job}}/{{run_id}}"
part_records = 10
"#
    )
}

/// `(account_id column, id, value, at in seconds)` of every row of a snapshot, in order.
fn rows(dir: &Path) -> Vec<(i64, i64, i64, i64)> {
    let mut out = Vec::new();
    for part in common::parts(dir) {
        for batch in common::read_parquet(&part) {
            let int = |name: &str| {
                let col = batch
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("{name}"));
                arrow_cast::cast(col, &arrow_schema::DataType::Int64).unwrap()
            };
            let (partition, id, value) = (int("account_id"), int("id"), int("value"));
            let at = batch.column_by_name("at").unwrap();
            let at = arrow_cast::cast(
                at,
                &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Second, None),
            )
            .unwrap();
            let at = arrow_cast::cast(&at, &arrow_schema::DataType::Int64).unwrap();
            for i in 0..batch.num_rows() {
                assert!(!partition.is_null(i));
                out.push((
                    partition
                        .as_primitive::<arrow_array::types::Int64Type>()
                        .value(i),
                    id.as_primitive::<arrow_array::types::Int64Type>().value(i),
                    value
                        .as_primitive::<arrow_array::types::Int64Type>()
                        .value(i),
                    at.as_primitive::<arrow_array::types::Int64Type>().value(i),
                ));
            }
        }
    }
    out
}

/// A JSON file, read.
fn json(path: impl AsRef<Path>) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The parts an interrupted run's checkpoint names so far (0 before it has one).
fn committed_parts(state_file: &Path) -> usize {
    std::fs::read(state_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["in_progress"]["parts"].as_array().map(|a| a.len()))
        .unwrap_or(0)
}

/// Every account's events in the five days, once: `(account, id, value, at)`.
fn expected(records: u64) -> BTreeMap<i64, (i64, i64, i64)> {
    let mut all = BTreeMap::new();
    for a in REPORT_ACCOUNTS {
        for e in report_events(a, FROM, FROM + DAYS * 86_400, records) {
            let at = chrono::DateTime::parse_from_rfc3339(&e.at)
                .unwrap()
                .timestamp();
            all.insert(e.id as i64, (a as i64, e.value as i64, at));
        }
    }
    all
}

/// The rows of the one complete snapshot, checked against [`expected`]: every record
/// once, with its account in the partition column.
fn check_snapshot(ws: &Workspace, records: u64) -> serde_json::Value {
    let dirs = snapshot_dirs(&ws.path().join("out"));
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = &dirs[0];
    assert!(dir.join("_SUCCESS").exists());
    let got = rows(dir);
    let want = expected(records);
    let mut seen = BTreeMap::new();
    for (partition, id, value, at) in &got {
        assert!(
            seen.insert(*id, (*partition, *value, *at)).is_none(),
            "record {id} written twice"
        );
    }
    assert_eq!(seen.len(), want.len(), "records written");
    assert_eq!(seen, want, "every record once, with its account");
    json(dir.join("_manifest.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accounts_records_once_in_day_windows_with_its_partition_column() {
    let records = 100;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(&format!("jobs/{JOB}.toml"), &job("1d", 3));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let manifest = check_snapshot(&ws, records);
    // 3 accounts × 5 days × 8 events; midnight events belong to the day they start.
    assert_eq!(manifest["records"], 120);
    let slices = manifest["slices"].as_array().unwrap();
    assert_eq!(
        slices.len(),
        3,
        "one entry per account, its days together: {slices:?}"
    );
    for (s, account) in slices.iter().zip(REPORT_ACCOUNTS) {
        assert_eq!(s["partition"]["account_id"], account);
        assert_eq!(s["records"], 40);
        assert_eq!(s["from"], "2026-11-01T00:00:00Z");
        assert_eq!(s["to"], "2026-11-06T00:00:00Z");
    }
    // Each request named its account and window; no window asked twice.
    let mut windows = std::collections::BTreeSet::new();
    for r in sandbox.requests() {
        if r.target.contains("/report") && r.target.contains("skip=0&") {
            assert!(
                windows.insert(r.target.clone()),
                "asked twice: {}",
                r.target
            );
        }
    }
    assert_eq!(windows.len(), 15, "{windows:?}");
    let state: serde_json::Value = json(ws.path().join(format!("state/{JOB}.json")));
    assert!(state["in_progress"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twenty_times_a_sliced_run_still_holds_every_record_once() {
    let records = 40;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(40),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    // Hour windows, pages of one: 360 slices, one in three with a record.
    ws.write(&format!("jobs/{JOB}.toml"), &job("1h", 1));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let mut rng = fastrand::Rng::with_seed(20261201);
    let mut kills = 0;
    let mut finished_early = 0;
    while kills < 20 {
        let mut child = spawn(&ws, &env, &["run", JOB]);
        tokio::time::sleep(Duration::from_millis(rng.u64(150..500))).await;
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success());
                finished_early += 1;
                assert!(finished_early < 5, "runs finish too fast to be killed");
                std::fs::remove_dir_all(ws.path().join("out")).unwrap();
                std::fs::remove_dir_all(ws.path().join("state")).unwrap();
            }
            None => {
                child.start_kill().unwrap(); // SIGKILL
                child.wait().await.unwrap();
                kills += 1;
                for d in snapshot_dirs(&ws.path().join("out")) {
                    assert!(!d.join("_SUCCESS").exists(), "a killed run left _SUCCESS");
                }
            }
        }
    }
    // Requests of the killed processes still in the server's hands finish first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state: serde_json::Value = json(ws.path().join(format!("state/{JOB}.json")));
    let done = state["in_progress"]["slices"]["slices_done"]
        .as_u64()
        .unwrap();
    let open = state["in_progress"]["slices"]["open"]
        .as_object()
        .unwrap()
        .len() as u64;
    assert!(done > 0, "the killed runs committed slices");
    let before = sandbox.requests().len();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("resumed"),
        "{}",
        text(&out.stdout)
    );
    let manifest = check_snapshot(&ws, records);
    assert_eq!(manifest["records"], 3 * 40);
    // The resumed run asked only for the slices not done (a slice's first page is
    // `skip=0`; the others are the offset strategy's speculation).
    let firsts = sandbox.requests()[before..]
        .iter()
        .filter(|r| r.target.contains("/report") && r.target.contains("skip=0&"))
        .count() as u64;
    // (a slice in flight resumes after its committed pages, not at `skip=0`)
    assert_eq!(firsts, 360 - done - open, "slices fetched again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_in_slices_name_the_file_the_field_and_what_was_expected() {
    let ws = Workspace::with_shipped_jobs();
    let bad = job("1w", 3)
        .replace("{partition.account_id}", "{partition.acount}")
        .replace("start = \"2026-11-01\"", "start = \"yesterday\"");
    ws.write(&format!("jobs/{JOB}.toml"), &bad);
    let out = ws
        .apisnap(&["validate", &format!("jobs/{JOB}.toml")], &[])
        .await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    for expected in [
        "account_report.toml",
        "the placeholder `{partition.acount}`: the partitions have no value `acount` (they have `account_id`)",
        "windows.start",
        "`yesterday`: expected `now`",
        "windows.step",
        "`1w`: expected a number and a unit",
    ] {
        assert!(stderr.contains(expected), "{expected} in {stderr}");
    }
}

/// On a terminal (a pseudo-terminal from `script`), a sliced run's bar counts slices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_shows_the_slices_done_of_all() {
    if !common::have_script() {
        return;
    }
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 100,
        latency: Duration::from_millis(60),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(&format!("jobs/{JOB}.toml"), &job("1d", 3));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let screen = common::on_terminal(&ws, &env, &format!("run {JOB}")).await;
    assert!(screen.contains("/15 slices ETA"), "{screen}");
    assert!(screen.contains("[=="), "a bar: {screen}");
    // Before the first slice is done there is no rate: no estimate (it said "ETA 0s").
    assert!(!screen.contains("0/15 slices ETA"), "{screen}");
}

/// `(account_id, id, name)` of every row of a snapshot of the Armor job.
fn armor_rows(dir: &Path) -> Vec<(i64, i64, String)> {
    let mut out = Vec::new();
    for part in common::parts(dir) {
        for batch in common::read_parquet(&part) {
            let int = |name: &str| {
                arrow_cast::cast(
                    batch
                        .column_by_name(name)
                        .unwrap_or_else(|| panic!("{name}")),
                    &arrow_schema::DataType::Int64,
                )
                .unwrap()
            };
            let (account, id) = (int("account_id"), int("id"));
            let name = batch
                .column_by_name("name")
                .unwrap()
                .as_string::<i32>()
                .clone();
            for i in 0..batch.num_rows() {
                out.push((
                    account
                        .as_primitive::<arrow_array::types::Int64Type>()
                        .value(i),
                    id.as_primitive::<arrow_array::types::Int64Type>().value(i),
                    name.value(i).to_string(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_sliced_jobs_read_every_account_once() {
    let records = 1_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();

    // Armor: the accounts from /me, each read with its X-Account-Context.
    let env = provider_env(&sandbox, &ws, "armor");
    let out = ws.apisnap(&["run", "armor_account_events"], &env).await;
    assert_exit(&out, 0);
    let dirs = snapshot_dirs(&ws.path().join("out/armor_account_events"));
    assert_eq!(dirs.len(), 1);
    let mut seen = std::collections::BTreeSet::new();
    for (account, id, name) in armor_rows(&dirs[0]) {
        assert!(seen.insert((account, id)), "{account}/{id} twice");
        assert_eq!(name, apisnap::sandbox::data::record(id as u64).name);
    }
    let mut want = std::collections::BTreeSet::new();
    for account in apisnap::sandbox::credentials::ARMOR_ACCOUNTS {
        let first = apisnap::sandbox::armor_account_first(account, records);
        for id in first..records {
            want.insert((account as i64, id as i64));
        }
    }
    assert_eq!(seen, want, "every account's events, once each");
    let contexts: std::collections::BTreeSet<String> = sandbox
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/armor/events"))
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-account-context"))
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(contexts, ["42".to_string(), "7".to_string()].into());

    // Seal Metrics: the report of the last seven whole days, per account.
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "seal_metrics_report"], &env).await;
    assert_exit(&out, 0);
    let dirs = snapshot_dirs(&ws.path().join("out/seal_metrics_report"));
    assert_eq!(dirs.len(), 1);
    let manifest: serde_json::Value = json(dirs[0].join("_manifest.json"));
    let slices = manifest["slices"].as_array().unwrap();
    assert_eq!(slices.len(), REPORT_ACCOUNTS.len(), "{slices:?}");
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    let (from, to) = (time(&slices[0]["from"]), time(&slices[0]["to"]));
    assert_eq!(to - from, 7 * 86_400, "seven days");
    assert_eq!(to % 86_400, 0, "ending at midnight");
    let mut want = 0;
    for (slice, account) in slices.iter().zip(REPORT_ACCOUNTS) {
        let events = report_events(account, from, to, records);
        assert_eq!(slice["records"], events.len());
        want += events.len();
    }
    assert_eq!(manifest["records"], want);
    assert_eq!(want, 3 * 7 * 8);
}

/// Killed with parts committed, one of them then lost: the sliced run goes back to its
/// start (a part's end does not say where each slice stood) and still writes every record
/// once; a job whose slices changed since the kill is refused rather than resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_part_or_changed_slices_never_complete_a_sliced_run_with_records_missing() {
    let records = 40;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(30),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(&format!("jobs/{JOB}.toml"), &job("1h", 1));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let state_file = ws.path().join(format!("state/{JOB}.json"));
    let mut child = spawn(&ws, &env, &["run", JOB]);
    let started = std::time::Instant::now();
    while committed_parts(&state_file) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no parts committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // Other windows since the kill: refused, the checkpoint kept.
    ws.write(&format!("jobs/{JOB}.toml"), &job("2h", 1));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("changed since the interrupted run") && stderr.contains("--fresh"),
        "{stderr}"
    );
    ws.write(&format!("jobs/{JOB}.toml"), &job("1h", 1));

    // The first part lost.
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    std::fs::remove_file(&common::parts(&dir)[0]).unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let manifest = check_snapshot(&ws, records);
    assert_eq!(manifest["records"], 3 * 40);
    // The partition column is a whole number where every account's id is one.
    let part = &common::parts(&snapshot_dirs(&ws.path().join("out"))[0])[0];
    let batches = common::read_parquet(part);
    assert_eq!(
        batches[0]
            .schema()
            .field_with_name("account_id")
            .unwrap()
            .data_type(),
        &arrow_schema::DataType::Int64
    );
}

/// The report job by marks: each account's windows start where its last complete run's
/// ended (`initial` the first time), up to a fixed end.
fn marked_job(end: &str) -> String {
    job("1d", 100)
        .replace(
            "start = \"2026-11-01\"\nend = \"2026-11-06\"",
            &format!("start = \"mark\"\ninitial = \"2026-11-01\"\nend = \"{end}\""),
        )
        .replace("concurrency = 4", "concurrency = 16")
        // One request per slice: no speculation (a top-level key, before the tables).
        .replacen(
            "provider = \"seal_metrics\"\n",
            "provider = \"seal_metrics\"\nconcurrency = 1\n",
            1,
        )
}

/// Requests to the report endpoint from `from` on.
fn report_requests(sandbox: &apisnap::sandbox::Sandbox, from: usize) -> usize {
    sandbox.requests()[from..]
        .iter()
        .filter(|r| r.target.starts_with("/seal/report"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_partitions_keep_a_small_state_and_a_rerun_fetches_nothing() {
    let accounts = 10_000u64;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 16,
        report_accounts: Some(accounts),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let text_job = marked_job("2026-11-02");
    // Parts of 20,000 records: each commit writes the checkpoint, which names every
    // partition.
    let text_job = text_job.replace("part_records = 10", "part_records = 20000");
    ws.write(&format!("jobs/{JOB}.toml"), &text_job);
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let started = std::time::Instant::now();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    eprintln!(
        "10,000 partitions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        report_requests(&sandbox, 0),
        accounts as usize,
        "one request per slice"
    );
    let dirs = snapshot_dirs(&ws.path().join("out"));
    let manifest: serde_json::Value = json(dirs[0].join("_manifest.json"));
    assert_eq!(manifest["records"], accounts * 8);
    let state_file = ws.path().join(format!("state/{JOB}.json"));
    let size = std::fs::metadata(&state_file).unwrap().len();
    eprintln!("state after 10,000 partitions: {size} bytes");
    let state: serde_json::Value = json(&state_file);
    let marks = state["window_marks"].as_object().unwrap();
    assert_eq!(marks.len(), accounts as usize);
    assert_eq!(marks["{\"account_id\":42}"], "2026-11-02T00:00:00Z");
    assert!(size < 1_000_000, "the state is {size} bytes");

    // Every window up to the end is done: the rerun lists the accounts and fetches no
    // report at all.
    let before = sandbox.requests().len();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert_eq!(report_requests(&sandbox, before), 0);
    assert!(
        text(&out.stdout).contains("wrote 0 records"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_loads_its_range_apart_and_leaves_the_marks_where_they_were() {
    let records = 40;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let text_job = marked_job("2026-11-03");
    ws.write(&format!("jobs/{JOB}.toml"), &text_job);
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let state_file = ws.path().join(format!("state/{JOB}.json"));
    let marks = |file: &Path| {
        let state: serde_json::Value = json(file);
        state["window_marks"].clone()
    };
    let before = marks(&state_file);
    assert_eq!(before["{\"account_id\":3}"], "2026-11-03T00:00:00Z");

    // Two days later than the marks: loaded apart, in windows, every account.
    let out = ws
        .apisnap(
            &[
                "backfill",
                JOB,
                "--from",
                "2026-11-03",
                "--to",
                "2026-11-05",
            ],
            &env,
        )
        .await;
    assert_exit(&out, 0);
    let dir = ws
        .path()
        .join(format!("out/{JOB}/backfill/2026-11-03_2026-11-05"));
    assert!(dir.join("_SUCCESS").exists(), "{}", text(&out.stderr));
    let rows = rows(&dir);
    assert_eq!(rows.len(), 3 * 16, "two days of three accounts");
    let mut want = std::collections::BTreeSet::new();
    for a in REPORT_ACCOUNTS {
        for e in report_events(a, FROM + 2 * 86_400, FROM + 4 * 86_400, records) {
            want.insert(e.id as i64);
        }
    }
    let got: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(got, want);
    assert_eq!(
        marks(&state_file),
        before,
        "the job's marks where they were"
    );
    // The job's own snapshot and latest.json are the run's, not the backfill's.
    let latest: serde_json::Value = json(ws.path().join(format!("out/{JOB}/latest.json")));
    assert!(!latest.to_string().contains("backfill"), "{latest}");

    // A job without windows has nothing to backfill.
    let out = ws
        .apisnap(
            &[
                "backfill",
                "seal_metrics_events",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-02",
            ],
            &env,
        )
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("has no `[windows]`"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs by marks: the second, with a later end, asks only for the windows since the
/// first's end, for every account; with a lookback, one window more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_by_marks_fetches_only_the_windows_since_the_last() {
    let records = 40;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    ws.write(&format!("jobs/{JOB}.toml"), &marked_job("2026-11-02"));
    assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    assert_eq!(report_requests(&sandbox, 0), 3, "one day of three accounts");

    ws.write(&format!("jobs/{JOB}.toml"), &marked_job("2026-11-04"));
    let before = sandbox.requests().len();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let asked: Vec<String> = sandbox.requests()[before..]
        .iter()
        .filter(|r| r.target.starts_with("/seal/report"))
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(asked.len(), 6, "two new days of three accounts: {asked:?}");
    assert!(
        asked.iter().all(|t| !t.contains("from=2026-11-01")),
        "{asked:?}"
    );
    let newest = snapshot_dirs(&ws.path().join("out"))
        .into_iter()
        .max_by_key(|d| std::fs::metadata(d).unwrap().modified().unwrap())
        .unwrap();
    let manifest: serde_json::Value = json(newest.join("_manifest.json"));
    assert_eq!(manifest["records"], 3 * 16);
    assert_eq!(
        manifest["slices"][0]["from"], "2026-11-02T00:00:00Z",
        "{manifest}"
    );

    // A lookback of a day: the day before the marks again, for each account.
    ws.write(
        &format!("jobs/{JOB}.toml"),
        &marked_job("2026-11-05").replace("step = \"1d\"", "step = \"1d\"\nlookback = \"1d\""),
    );
    let before = sandbox.requests().len();
    assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    assert_eq!(
        report_requests(&sandbox, before),
        6,
        "11-03 again and 11-04"
    );

    // Marks need a snapshot directory per run.
    ws.write(
        &format!("jobs/{JOB}.toml"),
        &marked_job("2026-11-05").replace("out/{job}/{run_id}", "out/{job}/{date}"),
    );
    let out = ws
        .apisnap(&["validate", &format!("jobs/{JOB}.toml")], &[])
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("`{run_id}`"),
        "{}",
        text(&out.stderr)
    );
}

/// A hive layout: a directory per account and day, read by pyarrow and DuckDB with hive
/// partitioning (the account and the date from the directories' names), every record once;
/// still so after a kill that leaves parts in those directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hive_layout_is_read_by_pyarrow_and_duckdb_with_its_partitions() {
    let records = 40;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(30),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let hive_job = job("1d", 1).replace("part_records = 10", "part_records = 3\nlayout = \"hive\"");
    ws.write(&format!("jobs/{JOB}.toml"), &hive_job);
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    // Killed once parts are committed, then resumed.
    let state_file = ws.path().join(format!("state/{JOB}.json"));
    let mut child = spawn(&ws, &env, &["run", JOB]);
    let started = std::time::Instant::now();
    loop {
        let parts = committed_parts(&state_file);
        if parts >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no parts committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // What a kill can leave: a part published after the last checkpoint, a temporary.
    let killed = snapshot_dirs(&ws.path().join("out"))
        .into_iter()
        .next()
        .expect("parts were committed");
    let top = killed
        .ancestors()
        .find(|a| a.join("account_id=3").exists() || a.join("account_id=5").exists())
        .unwrap()
        .to_path_buf();
    let stale = top.join("account_id=3/date=2026-11-01");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("part-09999.parquet"), b"not committed").unwrap();
    std::fs::write(stale.join(".part-09998.parquet.tmp"), b"half written").unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);

    let dir = snapshot_dirs(&ws.path().join("out"))
        .into_iter()
        .find_map(|d| {
            d.ancestors()
                .find(|a| a.join("_SUCCESS").exists())
                .map(Path::to_path_buf)
        })
        .expect("a complete snapshot");
    // account_id=3/date=2026-11-01/part-….parquet, and nothing else below: the files on
    // disk are exactly the manifest's parts.
    let manifest: serde_json::Value = json(dir.join("_manifest.json"));
    let named: std::collections::BTreeSet<String> = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    let mut on_disk = std::collections::BTreeSet::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.parent() != Some(dir.as_path()) {
                on_disk.insert(
                    path.strip_prefix(&dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    assert_eq!(on_disk, named, "no leftover of the kill");
    for account in REPORT_ACCOUNTS {
        for day in 1..=5 {
            let d = dir.join(format!("account_id={account}/date=2026-11-0{day}"));
            assert!(!common::parts(&d).is_empty(), "{} has parts", d.display());
        }
    }
    let python = common::analyst_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/analysts/hive.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "hive.py: {}", text(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want_ids: Vec<i64> = expected(records).keys().copied().collect();
    want_ids.sort();
    for reader in ["pyarrow", "duckdb"] {
        assert_eq!(seen[reader]["rows"], 3 * 40, "{reader}: {seen}");
        for account in REPORT_ACCOUNTS {
            for day in 1..=5 {
                assert_eq!(
                    seen[reader]["counts"][format!("{account}/2026-11-0{day}")],
                    8,
                    "{reader}: account {account}, day {day}"
                );
            }
        }
    }
    assert_eq!(
        seen["pyarrow"]["ids"],
        serde_json::json!(want_ids),
        "every record once"
    );
    assert_eq!(seen["pyarrow"]["account_id_type"], "int32");
}

/// `--shard I/N` splits a sliced job by its partitions: two shards, run one after the
/// other, make one snapshot with every account's records once, and move every account's
/// mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_a_sliced_job_split_its_partitions() {
    let records = 40;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        report_accounts: Some(12),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(&format!("jobs/{JOB}.toml"), &marked_job("2026-11-03"));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let run_id = "01a23200000000000000000000000abc";
    let first = ws
        .apisnap(&["run", JOB, "--shard", "0/2", "--run-id", run_id], &env)
        .await;
    assert_exit(&first, 0);
    let after_first = report_requests(&sandbox, 0);
    // Each shard first asks for the first slice's first page, whose records give the
    // columns every shard writes.
    assert!(
        after_first > 1 && after_first < 25,
        "the first shard took some of the 12 accounts × 2 days: {after_first}"
    );
    let second = ws
        .apisnap(&["run", JOB, "--shard", "1/2", "--run-id", run_id], &env)
        .await;
    assert_exit(&second, 0);
    assert_eq!(
        report_requests(&sandbox, 0),
        24 + 2,
        "every slice once, in one shard or the other, and a first page per shard"
    );
    let dirs = snapshot_dirs(&ws.path().join("out"));
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(
        dirs[0].join("_SUCCESS").exists(),
        "the last shard finalized the run"
    );
    let mut seen = std::collections::BTreeSet::new();
    for (account, id, _, _) in rows(&dirs[0]) {
        assert!(seen.insert(id), "{id} twice");
        assert_eq!(id / 1_000_000, account);
    }
    assert_eq!(seen.len(), 12 * 16);
    let manifest: serde_json::Value = json(dirs[0].join("_manifest.json"));
    assert_eq!(
        manifest["slices"].as_array().unwrap().len(),
        12,
        "{manifest}"
    );
    let state: serde_json::Value = json(ws.path().join(format!("state/{JOB}.json")));
    assert_eq!(state["window_marks"].as_object().unwrap().len(), 12);
    assert!(
        state["window_marks"]
            .as_object()
            .unwrap()
            .values()
            .all(|m| m == "2026-11-03T00:00:00Z")
    );

    // The next sharded run starts from the job's marks: only the two new days.
    ws.write(&format!("jobs/{JOB}.toml"), &marked_job("2026-11-05"));
    let before = sandbox.requests().len();
    let next_id = "01a23200000000000000000000000def";
    for shard in ["0/2", "1/2"] {
        let out = ws
            .apisnap(&["run", JOB, "--shard", shard, "--run-id", next_id], &env)
            .await;
        assert_exit(&out, 0);
    }
    assert_eq!(
        report_requests(&sandbox, before),
        24 + 2,
        "12 accounts × 2 new days, and a first page per shard"
    );
}

/// A slice that fails fails the run, naming the request and the status; the slices done
/// before it stay committed, and the next run asks only for what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_slice_fails_the_run_and_the_next_fetches_only_what_is_missing() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 40,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    // Accounts 3 and 5 answer; 999 is not one of the user's (400, not retried). One slice
    // at a time: 3's five days, then 5's, then 999's.
    let listed = job("1d", 100)
        .replace(
            "type = \"endpoint\"\npath = \"/accounts\"\nitems_pointer = \"/accounts\"\nfields = { account_id = \"/id\" }",
            "type = \"list\"\nname = \"account_id\"\nvalues = [3, 5, 999]",
        )
        .replace("concurrency = 4", "concurrency = 1")
        .replace("part_records = 10", "part_records = 1");
    ws.write(&format!("jobs/{JOB}.toml"), &listed);
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("account=999") && stderr.contains("400"),
        "names the request and the status: {stderr}"
    );
    let state: serde_json::Value = json(ws.path().join(format!("state/{JOB}.json")));
    assert_eq!(
        state["in_progress"]["slices"]["slices_done"], 10,
        "3's and 5's days"
    );
    assert_eq!(state["in_progress"]["records"], 2 * 40);
    let before = sandbox.requests().len();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 4);
    let again: Vec<String> = sandbox.requests()[before..]
        .iter()
        .filter(|r| r.target.starts_with("/seal/report"))
        .map(|r| r.target.clone())
        .collect();
    assert!(
        !again.is_empty() && again.iter().all(|t| t.contains("account=999")),
        "{again:?}"
    );
}

/// An incremental job with partitions keeps a high-water mark per partition and sends
/// each its own: the second run asks every partition for what changed after its mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_partitioned_job_keeps_a_mark_per_partition() {
    let per_generation = 50;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: per_generation,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        &format!("jobs/{JOB}.toml"),
        r#"provider = "seal_metrics"
[endpoint]
path = "/changes"
query = { account = "{partition.account_id}" }
[partitions]
type = "list"
name = "account_id"
values = [3, 5]
[pagination]
type = "offset"
page_size = 20
total_pointer = "/total"
[incremental]
cursor_field = "updated_at"
param = "updated_after"
[output]
dir = "out/{job}/{run_id}"
"#,
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    let state_file = ws.path().join(format!("state/{JOB}.json"));
    let state: serde_json::Value = json(&state_file);
    let marks = state["partition_high_water"].as_object().unwrap().clone();
    assert_eq!(marks.len(), 2, "{state}");
    let mark = marks["{\"account_id\":3}"].as_str().unwrap().to_string();
    assert_eq!(marks["{\"account_id\":5}"], mark.as_str());

    // A new generation: each partition asks for what changed after its own mark.
    sandbox.set_generation(2);
    let before = sandbox.requests().len();
    assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    let firsts: Vec<String> = sandbox.requests()[before..]
        .iter()
        .filter(|r| r.target.starts_with("/seal/changes") && r.target.contains("skip=0"))
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(firsts.len(), 2, "{firsts:?}");
    let encoded: String = url::form_urlencoded::byte_serialize(mark.as_bytes()).collect();
    for account in ["3", "5"] {
        assert!(
            firsts
                .iter()
                .any(|t| t.contains(&format!("account={account}"))
                    && t.contains(&format!("updated_after={encoded}"))),
            "account {account} from its mark {mark}: {firsts:?}"
        );
    }
    let state: serde_json::Value = json(&state_file);
    assert!(
        state["partition_high_water"]["{\"account_id\":3}"]
            .as_str()
            .unwrap()
            > mark.as_str(),
        "the mark moved: {state}"
    );
}

/// A server whose totals lie, per slice: the run does not complete with fewer records
/// than the API stated for any slice (exit 4, the slices named), unless the job accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_short_of_its_stated_total_fails_the_run() {
    let records = 120;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let lying = |policy: &str| {
        format!(
            "provider = \"seal_metrics\"\n{policy}\n[endpoint]\npath = \"/hostile/lying\"\n\
             query = {{ account = \"{{partition.account_id}}\" }}\n\
             [partitions]\ntype = \"list\"\nname = \"account_id\"\nvalues = [1, 2]\n\
             [pagination]\ntype = \"offset\"\npage_size = 50\ntotal_pointer = \"/total\"\n\
             [output]\ndir = \"out/{{job}}/{{run_id}}\"\n"
        )
    };
    ws.write(&format!("jobs/{JOB}.toml"), &lying(""));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    let stated = records + apisnap::sandbox::HOSTILE_LIE;
    assert!(
        stderr.contains("2 slice(s) got other than the records the API stated")
            && stderr.contains(&format!(
                "account_id=1 (stated {stated}, written {records})"
            )),
        "{stderr}"
    );
    for d in snapshot_dirs(&ws.path().join("out")) {
        assert!(!d.join("_SUCCESS").exists(), "not complete");
    }
    ws.write(
        &format!("jobs/{JOB}.toml"),
        &lying("on_count_mismatch = \"warn\""),
    );
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("on_count_mismatch = warn"),
        "{}",
        text(&out.stderr)
    );
}
