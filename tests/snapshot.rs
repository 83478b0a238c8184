//! Crash-safe snapshots: parts, checkpoints, resume after SIGKILL with every record exactly
//! once, the job lock, manifests, `latest.json`, `retain`, `--fresh`.

mod common;

use std::time::Duration;

use apisnap::sandbox::{Sandbox, SandboxConfig};
use common::{
    Workspace, assert_exit, check_parquet_snapshot, parts, provider_env, snapshot_dirs, spawn,
    terminate, text,
};

const JOB: &str = "seal_metrics_events";

fn env_for(sandbox: &Sandbox, ws: &Workspace, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = provider_env(sandbox, ws, "seal_metrics");
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// Every part under a final name opens and holds whole, consecutive records.
fn parts_are_whole(ws: &Workspace) {
    for dir in snapshot_dirs(&ws.path().join("out")) {
        let mut next = None;
        for part in parts(&dir) {
            let mut first = None;
            let mut rows = 0u64;
            for batch in common::read_parquet(&part) {
                let ids = batch
                    .column_by_name("id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .unwrap()
                    .clone();
                first.get_or_insert(ids.value(0) as u64);
                rows += batch.num_rows() as u64;
            }
            if let (Some(expected), Some(first)) = (next, first) {
                assert_eq!(
                    first,
                    expected,
                    "{} continues the previous part",
                    part.display()
                );
            }
            next = first.map(|f| f + rows);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twenty_times_the_snapshot_still_holds_every_record_once() {
    let records = 200_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(8),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
                "7000",
            ),
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE",
                "1000",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "2"),
        ],
    );
    let mut rng = fastrand::Rng::with_seed(20261122);
    let mut kills = 0;
    let mut finished_early = 0;
    while kills < 20 {
        let mut child = spawn(&ws, &env, &["run", JOB]);
        tokio::time::sleep(Duration::from_millis(rng.u64(30..250))).await;
        match child.try_wait().unwrap() {
            Some(status) => {
                // It finished before the kill: start over so there is something to kill.
                assert!(status.success());
                finished_early += 1;
                assert!(finished_early < 5, "runs finish too fast to be killed");
                let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
                assert_exit(&out, 0);
                std::fs::remove_dir_all(ws.path().join("out")).unwrap();
                std::fs::remove_dir_all(ws.path().join("state")).unwrap();
                continue;
            }
            None => {
                child.start_kill().unwrap(); // SIGKILL
                child.wait().await.unwrap();
                kills += 1;
            }
        }
        // At any moment, whatever is under a final name is whole.
        parts_are_whole(&ws);
        let dirs = snapshot_dirs(&ws.path().join("out"));
        for d in &dirs {
            assert!(!d.join("_SUCCESS").exists(), "a killed run left _SUCCESS");
        }
    }
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("resumed"),
        "{}",
        text(&out.stdout)
    );
    let dirs = snapshot_dirs(&ws.path().join("out"));
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = &dirs[0];
    assert!(dir.join("_SUCCESS").exists());
    check_parquet_snapshot(dir, records);
    // No leftovers of the kills.
    let leftovers: Vec<_> = ws
        .files()
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_the_same_job_is_refused_while_the_first_runs() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 4_000,
        latency: Duration::from_millis(100),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE",
                "500",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1"),
        ],
    );
    let first = spawn(&ws, &env, &["run", JOB]);
    // Wait until the first run holds the lock (its state file appears).
    for _ in 0..100 {
        if ws.path().join("state/seal_metrics_events.json").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&second, 5);
    let err = text(&second.stderr);
    assert!(
        err.contains("job `seal_metrics_events` is already running"),
        "{err}"
    );
    let status = first.wait_with_output().await.unwrap().status;
    assert!(status.success());
    check_parquet_snapshot(&snapshot_dirs(&ws.path().join("out"))[0], 4_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_snapshot_has_a_manifest_success_marker_and_latest_pointer() {
    let records = 25_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
                "10000",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__RETAIN", "2"),
        ],
    );
    for _ in 0..3 {
        let out = ws.apisnap(&["run", JOB], &env).await;
        assert_exit(&out, 0);
    }
    let job_dir = ws.path().join("out/seal_metrics_events");
    let dirs = snapshot_dirs(&job_dir);
    assert_eq!(dirs.len(), 2, "retain = 2 keeps two snapshots: {dirs:?}");
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job_dir.join("latest.json")).unwrap()).unwrap();
    let newest = std::path::PathBuf::from(latest["snapshot"].as_str().unwrap());
    assert!(dirs.contains(&newest), "{newest:?} in {dirs:?}");
    assert_eq!(latest["records"], records);
    // `latest` leads to the same snapshot, by a relative link a reader opens as a path.
    let link = job_dir.join("latest");
    assert!(link.is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        newest.file_name().unwrap()
    );
    check_parquet_snapshot(&link, records);
    let hidden: Vec<_> = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "no temporary link left: {hidden:?}");
    for dir in &dirs {
        assert!(dir.join("_SUCCESS").is_file());
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["job"], JOB);
        assert_eq!(manifest["records"], records);
        assert_eq!(manifest["format"], "parquet");
        assert!(
            manifest["endpoint"]
                .as_str()
                .unwrap()
                .starts_with("GET http://127.0.0.1:")
        );
        let parts_listed = manifest["parts"].as_array().unwrap();
        // 10,000 records per part, closed at page boundaries (1,000 per page): 3 parts.
        assert_eq!(parts_listed.len(), 3);
        let mut sum = 0;
        for p in parts_listed {
            let path = dir.join(p["file"].as_str().unwrap());
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(p["bytes"], bytes.len() as u64);
            use sha2::Digest;
            assert_eq!(p["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)));
            sum += p["records"].as_u64().unwrap();
        }
        assert_eq!(sum, records);
        let columns: Vec<_> = manifest["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(columns, apisnap::sandbox::data::COLUMNS);
        check_parquet_snapshot(dir, records);
    }
    // The state keeps the runs, and no checkpoint.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path().join("state/seal_metrics_events.json")).unwrap(),
    )
    .unwrap();
    assert!(state["in_progress"].is_null());
    assert_eq!(state["history"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_leftovers_are_removed_on_resume_and_fresh_starts_over() {
    let records = 30_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(30),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
                "3000",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1"),
        ],
    );
    // Kill once at least two parts are durable.
    let mut child = spawn(&ws, &env, &["run", JOB]);
    let state_path = ws.path().join("state/seal_metrics_events.json");
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(bytes) = std::fs::read(&state_path) else {
            continue;
        };
        let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if state["in_progress"]["parts"]
            .as_array()
            .is_some_and(|p| p.len() >= 2)
        {
            break;
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    // A part renamed after the checkpoint, and a temporary file, as a crash can leave them.
    std::fs::copy(parts(&dir)[0].clone(), dir.join("part-00042.parquet")).unwrap();
    std::fs::write(dir.join(".part-00043.parquet.abc.tmp"), b"partial").unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert!(!dir.join("part-00042.parquet").exists());
    assert!(!dir.join(".part-00043.parquet.abc.tmp").exists());
    check_parquet_snapshot(&dir, records);

    // --fresh after another kill: the partial run is discarded, a new one completes.
    let first_run = std::fs::read_to_string(dir.join("_manifest.json")).unwrap();
    let mut child = spawn(&ws, &env, &["run", JOB]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let killed = std::path::PathBuf::from(state["in_progress"]["snapshot_dir"].as_str().unwrap());
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_exit(&out, 0);
    assert!(!text(&out.stdout).contains("resumed"));
    assert!(!killed.exists(), "the discarded run's directory is gone");
    // The first complete snapshot and the fresh one (each run has its own `{run_id}`).
    let dirs = snapshot_dirs(&ws.path().join("out"));
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    assert!(dirs.contains(&dir));
    let fresh = dirs.iter().find(|d| **d != dir).unwrap();
    check_parquet_snapshot(fresh, records);
    let second_run = std::fs::read_to_string(fresh.join("_manifest.json")).unwrap();
    assert_ne!(first_run, second_run, "a new run id");
}

/// The ids in a Parquet snapshot, in order.
fn ids(dir: &std::path::Path) -> Vec<i64> {
    let mut out = Vec::new();
    for part in parts(dir) {
        for batch in common::read_parquet(&part) {
            let col = batch
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .clone();
            out.extend(col.values().iter().copied());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_fetch_only_new_records_and_leave_no_gaps() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 1_000,
        ..SandboxConfig::default()
    })
    .await;
    for (field, param, lookback, overlap) in [
        ("id", "since_id", "0", 0),
        ("created_at", "created_after", "3700", 100), // 100 records, 37 s apart
    ] {
        sandbox.set_records(1_000);
        let ws = Workspace::with_shipped_jobs();
        let mut env = env_for(&sandbox, &ws, &[]);
        for (k, v) in [
            ("CURSOR_FIELD", field),
            ("PARAM", param),
            ("LOOKBACK", lookback),
        ] {
            env.push((
                format!("APISNAP_JOB_SEAL_METRICS_EVENTS__INCREMENTAL__{k}"),
                v.into(),
            ));
        }
        let out = ws.apisnap(&["run", JOB], &env).await;
        assert_exit(&out, 0);
        // New records arrive; the next run fetches only those (and the lookback margin).
        sandbox.set_records(1_500);
        let out = ws.apisnap(&["run", JOB], &env).await;
        assert_exit(&out, 0);
        // Nothing new: an empty snapshot, and the mark stays.
        let out = ws.apisnap(&["run", JOB], &env).await;
        assert_exit(&out, 0);

        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(ws.path().join("state/seal_metrics_events.json")).unwrap(),
        )
        .unwrap();
        let history = state["history"].as_array().unwrap();
        let snapshots: Vec<std::path::PathBuf> = history
            .iter()
            .rev()
            .map(|r| std::path::PathBuf::from(r["snapshot_dir"].as_str().unwrap()))
            .collect();
        let first = ids(&snapshots[0]);
        let second = ids(&snapshots[1]);
        let third = ids(&snapshots[2]);
        assert_eq!(first, (0..1_000).collect::<Vec<_>>(), "{field}: run 1");
        assert_eq!(
            second,
            ((1_000 - overlap)..1_500).collect::<Vec<_>>(),
            "{field}: run 2 fetches the new records (and {overlap} of lookback)"
        );
        assert!(
            third.len() <= overlap as usize,
            "{field}: run 3 finds nothing new"
        );
        // The union has no gaps.
        let mut all: Vec<i64> = first.into_iter().chain(second).collect();
        all.sort();
        all.dedup();
        assert_eq!(all, (0..1_500).collect::<Vec<_>>());
        // The parameter reached the server.
        let sent: Vec<_> = sandbox
            .requests()
            .into_iter()
            .filter(|r| r.target.contains(&format!("{param}=")))
            .collect();
        assert!(!sent.is_empty(), "{field}: `{param}` was sent");
        let marks: Vec<_> = history.iter().map(|r| r["high_water"].clone()).collect();
        assert_eq!(marks[0], marks[1], "{field}: an empty run keeps the mark");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_fails_by_default_and_is_dropped_or_added_by_policy() {
    let records = 5_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        new_field_from: Some(2_500),
        ..SandboxConfig::default()
    })
    .await;
    let small_parts = [
        (
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
            "1000",
        ),
        ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1"),
    ];

    // fail (the default): the run stops naming the field; what was committed stays.
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(&sandbox, &ws, &small_parts);
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("the page at offset 2000 could not be decoded"),
        "{err}"
    );
    assert!(
        err.contains("field(s) `channel` that the snapshot's columns do not"),
        "{err}"
    );
    assert!(err.contains("schema.drift = \"evolve\""), "{err}");
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    assert_eq!(
        parts(&dir).len(),
        2,
        "the parts before the new field are committed"
    );

    // ignore: the resumed run drops the field and completes.
    let mut env = env;
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__DRIFT".into(),
        "ignore".into(),
    ));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check_parquet_snapshot(&dir, records);
    // What was dropped is counted per field: every record from 2,500 on had `channel`.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["dropped_fields"]["channel"],
        records - 2_500,
        "{manifest}"
    );
    assert!(text(&out.stderr).contains("a field the columns lack is dropped"));

    // evolve: the column is added from the part that first has it.
    let ws = Workspace::with_shipped_jobs();
    let mut env = env_for(&sandbox, &ws, &small_parts);
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__DRIFT".into(),
        "evolve".into(),
    ));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    let channel = manifest["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "channel")
        .expect("the column was added");
    assert_eq!(channel["first_part"], 2, "{manifest}");
    let all = parts(&dir);
    assert_eq!(all.len(), 5);
    let mut seen = 0u64;
    for (k, part) in all.iter().enumerate() {
        for batch in common::read_parquet(part) {
            let channel = batch.column_by_name("channel");
            assert_eq!(channel.is_some(), k >= 2, "part {k}");
            if let Some(col) = channel {
                let col = col
                    .as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .unwrap();
                for row in 0..batch.num_rows() {
                    let id = seen + row as u64;
                    assert_eq!(
                        arrow_array::Array::is_valid(col, row),
                        id >= 2_500,
                        "record {id}"
                    );
                }
            }
            seen += batch.num_rows() as u64;
        }
    }
    assert_eq!(seen, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_merges_the_parts_into_one_file() {
    let records = 12_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    for (provider, job, format) in [
        ("seal_metrics", "seal_metrics_events", "parquet"),
        ("spreetail", "spreetail_orders", "csv"),
    ] {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        let prefix = apisnap::env::job_prefix(job);
        env.push((format!("{prefix}__OUTPUT__PART_RECORDS"), "2500".into()));
        env.push((format!("{prefix}__OUTPUT__COMPACT"), "true".into()));
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
        let files = parts(&dir);
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(
            files[0].file_name().unwrap().to_string_lossy(),
            format!("part-all.{format}")
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["parts"].as_array().unwrap().len(), 1);
        assert_eq!(manifest["parts"][0]["records"], records);
        match format {
            "parquet" => common::check::parquet(&files[0], records),
            _ => common::check::csv(&files[0], records),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_also_close_by_size() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    for (provider, job, limit) in [
        ("seal_metrics", "seal_metrics_events", "40000"),
        ("spreetail", "spreetail_orders", "600000"),
    ] {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        let prefix = apisnap::env::job_prefix(job);
        env.push((format!("{prefix}__OUTPUT__PART_BYTES"), limit.into()));
        env.push((
            format!("{prefix}__OUTPUT__ROW_GROUP_RECORDS"),
            "1000".into(),
        ));
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
        let files = parts(&dir);
        assert!(files.len() >= 3, "{job}: {files:?}");
        let limit: u64 = limit.parse().unwrap();
        for f in &files[..files.len() - 1] {
            let size = std::fs::metadata(f).unwrap().len();
            assert!(size >= limit / 2, "{job}: {} is {size} bytes", f.display());
        }
        if job == "seal_metrics_events" {
            check_parquet_snapshot(&dir, records);
        } else {
            let mut next = 0;
            for f in files {
                let mut reader = csv::Reader::from_path(&f).unwrap();
                for row in reader.records() {
                    assert_eq!(row.unwrap()[0].parse::<u64>().unwrap(), next);
                    next += 1;
                }
            }
            assert_eq!(next, records);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_whole_pages_and_the_next_run_resumes_after_them() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(40),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE",
                "500",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1"),
        ],
    );
    let child = spawn(&ws, &env, &["run", JOB]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path().join("state/seal_metrics_events.json")).unwrap(),
    )
    .unwrap();
    let committed = state["in_progress"]["records"].as_u64().unwrap();
    assert!(
        committed >= 1_000 && committed < records,
        "{committed} records committed"
    );
    assert_eq!(committed % 500, 0, "whole pages only");
    let before = sandbox.stats("seal").data_requests;

    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check_parquet_snapshot(&snapshot_dirs(&ws.path().join("out"))[0], records);
    // The second run fetched only what the first had not committed.
    let fetched_again = sandbox.stats("seal").data_requests - before;
    assert!(
        fetched_again <= (records - committed) / 500 + 2,
        "{fetched_again} requests to resume after {committed} records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacting_an_evolved_snapshot_fills_the_added_column_with_nulls() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 3_000,
        new_field_from: Some(1_500),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
                "1000",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__COMPACT", "true"),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__DRIFT", "evolve"),
        ],
    );
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    let files = parts(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut i = 0u64;
    for batch in common::read_parquet(&files[0]) {
        let channel = batch.column_by_name("channel").expect("the added column");
        for row in 0..batch.num_rows() {
            assert_eq!(
                arrow_array::Array::is_valid(channel, row),
                i >= 1_500,
                "record {i}"
            );
            i += 1;
        }
    }
    assert_eq!(i, 3_000);
}

/// Page numbers, the page count in each answer: a job whose pages shards can split.
const PAGED_JOB: &str = r#"provider = "seal_metrics"
[endpoint]
path = "/v2/events/pages"
[pagination]
type = "page"
page_param = "page"
size_param = "per_page"
page_size = 700
total_pages_pointer = "/total_pages"
[output]
format = "csv"
dir = "out/{job}/{run_id}"
part_records = 2000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_reports_apart_so_a_failed_one_is_not_hidden() {
    let records = 10_500;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write("jobs/paged.toml", PAGED_JOB);
    let mut env = common::provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("APISNAP_RUN_ID".into(), "r9".into()));
    env.push((
        "APISNAP_METRICS_DIR".into(),
        ws.path().join("metrics").to_string_lossy().into(),
    ));
    let mut bad = env.clone();
    for (k, v) in &mut bad {
        if k == "SEAL_METRICS_PASSWORD" {
            *v = "not-the-password".into();
        }
    }
    let shard = |i: u64| format!("{i}/3");
    // Shard 1 cannot log in; 0 and 2 finish after it, and succeed.
    let failed = ws
        .apisnap(&["run", "paged", "--shard", &shard(1)], &bad)
        .await;
    assert_exit(&failed, 3);
    for i in [0, 2] {
        let out = ws
            .apisnap(&["run", "paged", "--shard", &shard(i)], &env)
            .await;
        assert_exit(&out, 0);
    }
    let report = |i: u64| -> serde_json::Value {
        let path = ws
            .path()
            .join(format!("state/paged.shard-{i}-of-3.report.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    };
    let prom = |i: u64| {
        std::fs::read_to_string(
            ws.path()
                .join(format!("metrics/apisnap_paged.shard-{i}-of-3.prom")),
        )
        .unwrap()
    };
    assert_eq!(report(1)["outcome"], "failed");
    assert_eq!(report(1)["exit_code"], 3);
    assert_eq!(report(1)["shard"], "1/3");
    assert!(
        prom(1).contains("apisnap_last_run_success{job=\"paged\",shard=\"1/3\"} 0"),
        "{}",
        prom(1)
    );
    for i in [0, 2] {
        assert_eq!(report(i)["outcome"], "success", "shard {i}");
        assert_eq!(report(i)["shard"], shard(i));
        assert!(prom(i).contains(&format!(
            "apisnap_last_run_success{{job=\"paged\",shard=\"{i}/3\"}} 1"
        )));
    }
    assert_eq!(
        report(1)["run_id"],
        "r9",
        "the run's id, though no page was fetched"
    );
    // `status` shows every shard of the run.
    let paged = common::status_of(&ws, &env, "paged").await;
    let outcomes: Vec<_> = paged["last_sharded_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["shard"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [("0/3", "success"), ("1/3", "failed"), ("2/3", "success")]
    );
    let status = text(&ws.apisnap(&["status"], &env).await.stdout);
    assert!(
        status.contains("sharded run r9: 3 of 3 shards reported"),
        "{status}"
    );
    assert!(status.contains("shard 1/3: failed at "), "{status}");
    // The job's own report and metrics are not a shard's to write.
    assert!(!ws.path().join("state/paged.report.json").exists());
    assert!(!ws.path().join("metrics/apisnap_paged.prom").exists());
    assert!(!ws.path().join("out/paged/r9/_SUCCESS").exists());

    // A shard of an earlier split of this job, failed: finalizing the run removes it.
    ws.write(
        "metrics/apisnap_paged.shard-4-of-5.prom",
        "apisnap_last_run_success{job=\"paged\",shard=\"4/5\"} 0\n",
    );
    // Shard 1 again, with the right password: it completes the run and finalizes it.
    let out = ws
        .apisnap(&["run", "paged", "--shard", &shard(1)], &env)
        .await;
    assert_exit(&out, 0);
    assert!(ws.path().join("out/paged/r9/_SUCCESS").exists());
    assert_eq!(report(1)["outcome"], "success");
    let total: u64 = (0..3).map(|i| report(i)["records"].as_u64().unwrap()).sum();
    assert_eq!(total, records);
    // The run, finalized, reports as the job: records from the manifest, requests added
    // up over the shards; its metrics carry the last success (the shards' do not).
    let job_report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("state/paged.report.json")).unwrap())
            .unwrap();
    assert_eq!(job_report["outcome"], "success");
    assert_eq!(job_report["run_id"], "r9");
    assert!(job_report["shard"].is_null());
    assert_eq!(job_report["records"], records);
    let requests: u64 = (0..3)
        .map(|i| report(i)["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(job_report["requests"], requests);
    let job_prom = std::fs::read_to_string(ws.path().join("metrics/apisnap_paged.prom")).unwrap();
    assert!(
        job_prom.contains("apisnap_last_success_timestamp_seconds{job=\"paged\"}"),
        "{job_prom}"
    );
    assert!(job_prom.contains("apisnap_last_run_records{job=\"paged\"} 10500"));
    assert!(!prom(1).contains("last_success_timestamp"), "{}", prom(1));
    assert!(
        !ws.path()
            .join("metrics/apisnap_paged.shard-4-of-5.prom")
            .exists()
    );
    assert!(
        ws.path()
            .join("metrics/apisnap_paged.shard-0-of-3.prom")
            .exists()
    );
    // `status` shows the run as the job's last run, and its shards still.
    let status = text(&ws.apisnap(&["status"], &env).await.stdout);
    assert!(status.contains("last run: success"), "{status}");
    assert!(status.contains("shard 1/3: success"), "{status}");

    // A later whole run: the shards are history, in `status` and in the metrics.
    env.retain(|(k, _)| k != "APISNAP_RUN_ID");
    assert_exit(&ws.apisnap(&["run", "paged"], &env).await, 0);
    let status = text(&ws.apisnap(&["status"], &env).await.stdout);
    assert!(!status.contains("sharded run"), "{status}");
    assert!(
        !ws.path()
            .join("metrics/apisnap_paged.shard-0-of-3.prom")
            .exists()
    );
    assert!(ws.path().join("metrics/apisnap_paged.prom").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_that_split_by_different_totals_are_not_finalized() {
    // The API's total changes between the first shard's start and the others': 15 pages
    // (10,500 records), then 20 (14,000).
    let before = common::start_sandbox(SandboxConfig {
        records: 10_500,
        ..SandboxConfig::default()
    })
    .await;
    let after = common::start_sandbox(SandboxConfig {
        records: 14_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write("jobs/paged.toml", PAGED_JOB);
    let env = |sandbox: &Sandbox| {
        let mut env = common::provider_env(sandbox, &ws, "seal_metrics");
        env.push(("APISNAP_RUN_ID".into(), "r3".into()));
        env
    };
    let out = ws
        .apisnap(&["run", "paged", "--shard", "0/3"], &env(&before))
        .await;
    assert_exit(&out, 0);
    let out = ws
        .apisnap(&["run", "paged", "--shard", "1/3"], &env(&after))
        .await;
    assert_exit(&out, 0);
    // The last shard completes its range, but the ranges do not meet: nothing is finalized.
    let out = ws
        .apisnap(&["run", "paged", "--shard", "2/3"], &env(&after))
        .await;
    assert_exit(&out, 1);
    let message = text(&out.stderr);
    assert!(
        message.contains("shard 0/3 ends at 6 but shard 1/3 starts at 7"),
        "{message}"
    );
    assert!(message.contains("total_upper_bound"), "{message}");
    assert!(!ws.path().join("out/paged/r3/_SUCCESS").exists());
    let out = ws
        .apisnap(&["finalize", "paged", "--shards", "3"], &env(&after))
        .await;
    assert_exit(&out, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_on_one_disk_split_a_paged_sync_and_the_last_finalizes() {
    let records = 10_007;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(5),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    // Page numbers, the page count in each answer: 15 pages of 700 over 3 shards.
    ws.write("jobs/paged.toml", PAGED_JOB);
    let mut env = common::provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("APISNAP_RUN_ID".into(), "r7".into()));
    common::run_shards(&ws, &env, "paged", 3).await;
    let dir = ws.path().join("out/paged/r7");
    assert!(dir.join("_SUCCESS").exists(), "the last shard finalized");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["records"], records);
    let files = parts(&dir);
    let listed: Vec<_> = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| dir.join(p["file"].as_str().unwrap()))
        .collect();
    assert_eq!(
        files, listed,
        "every part on disk is in the manifest, in shard order"
    );
    let mut next = 0;
    for f in files {
        let mut reader = csv::Reader::from_path(&f).unwrap();
        for row in reader.records() {
            assert_eq!(
                row.unwrap()[0].parse::<u64>().unwrap(),
                next,
                "{}",
                f.display()
            );
            next += 1;
        }
    }
    assert_eq!(next, records);
    // Without a stated total or an upper bound, the pages cannot be split: a config error.
    let out = ws
        .apisnap(
            &[
                "run",
                "seal_metrics_events",
                "--shard",
                "0/2",
                "--run-id",
                "x",
            ],
            &env,
        )
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("total_upper_bound"),
        "{}",
        text(&out.stderr)
    );
    // An incremental job keeps one high-water mark: it is not split.
    ws.write(
        "jobs/since.toml",
        "provider = \"seal_metrics\"\n[endpoint]\npath = \"/stats/events\"\n\
         [pagination]\ntype = \"offset\"\n\
         [incremental]\ncursor_field = \"created_at\"\nparam = \"created_after\"\n",
    );
    let out = ws
        .apisnap(&["run", "since", "--shard", "0/2", "--run-id", "x"], &env)
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("incremental"),
        "{}",
        text(&out.stderr)
    );
    // `--shards` outside an Indexed Job has no index to take.
    let out = ws.apisnap(&["run", "paged", "--shards", "2"], &env).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("JOB_COMPLETION_INDEX")
            && text(&out.stderr).contains("--shard INDEX/COUNT"),
        "{}",
        text(&out.stderr)
    );
    // A shard needs the run id its siblings share.
    env.retain(|(k, _)| k != "APISNAP_RUN_ID");
    let out = ws.apisnap(&["run", "paged", "--shard", "0/2"], &env).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("--run-id"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_made_under_other_pagination_is_refused_until_fresh() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(40),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(
        &sandbox,
        &ws,
        &[
            (
                "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE",
                "500",
            ),
            ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1"),
        ],
    );
    let child = spawn(&ws, &env, &["run", JOB]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    terminate(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let state_file = ws.path().join("state/seal_metrics_events.json");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let job_file = ws.path().join("jobs/seal_metrics_events.toml");
    let shipped = std::fs::read_to_string(&job_file).unwrap();

    // The job was switched to page numbers after the kill: the checkpoint's offset is not
    // a page, and the run refuses, touching nothing.
    std::fs::write(
        &job_file,
        shipped.replace(
            "type = \"offset\"\noffset_param = \"skip\"\nlimit_param = \"limit\"",
            "type = \"page\"",
        ),
    )
    .unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pagination of seal_metrics_events changed") && stderr.contains("--fresh"),
        "{stderr}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(
        state["in_progress"], kept["in_progress"],
        "the checkpoint is kept"
    );
    std::fs::write(&job_file, &shipped).unwrap();

    // A checkpoint made under settings that give its positions another meaning.
    let mut other = kept.clone();
    other["in_progress"]["pagination"] = "page size=100 first=1".into();
    std::fs::write(&state_file, serde_json::to_vec(&other).unwrap()).unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("--fresh"),
        "{}",
        text(&out.stderr)
    );

    // A checkpoint of an older version (no fingerprint) whose position is of another
    // strategy is refused too, never read as "done".
    let mut old = kept.clone();
    old["in_progress"]
        .as_object_mut()
        .unwrap()
        .remove("pagination");
    old["in_progress"]["position"] = serde_json::json!({"type": "cursor", "cursor": "abc"});
    std::fs::write(&state_file, serde_json::to_vec(&old).unwrap()).unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("--fresh"),
        "{}",
        text(&out.stderr)
    );

    // The untouched checkpoint resumes, and --fresh starts over; both complete.
    std::fs::write(&state_file, serde_json::to_vec(&kept).unwrap()).unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("resumed"),
        "{}",
        text(&out.stdout)
    );
    check_parquet_snapshot(&snapshot_dirs(&ws.path().join("out"))[0], records);
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_mark_on_a_declared_timestamp_column_advances() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 1_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    // The README's example: the cursor is a column declared as a timestamp.
    ws.write(
        "schemas/events.columns.toml",
        "[[columns]]\nname = \"id\"\ntype = \"int64\"\n\n[[columns]]\nname = \"created_at\"\n\
         type = \"timestamp\"\nunit = \"second\"\ntimezone = \"UTC\"\n",
    );
    let mut env = env_for(
        &sandbox,
        &ws,
        &[("APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__DRIFT", "ignore")],
    );
    for (k, v) in [
        ("SCHEMA__FILE", "schemas/events.columns.toml"),
        ("INCREMENTAL__CURSOR_FIELD", "created_at"),
        ("INCREMENTAL__PARAM", "created_after"),
    ] {
        env.push((format!("APISNAP_JOB_SEAL_METRICS_EVENTS__{k}"), v.into()));
    }
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    sandbox.set_records(1_300);
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);

    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path().join("state/seal_metrics_events.json")).unwrap(),
    )
    .unwrap();
    let history = state["history"].as_array().unwrap();
    // The mark is the newest record's time, as ISO-8601 UTC, and it moved.
    let last = apisnap::sandbox::data::record(1_299).created_at;
    assert_eq!(history[0]["high_water"], last.as_str());
    let first = apisnap::sandbox::data::record(999).created_at;
    assert_eq!(history[1]["high_water"], first.as_str());
    // So the second run fetched only what was new.
    let second = std::path::PathBuf::from(history[0]["snapshot_dir"].as_str().unwrap());
    assert_eq!(ids(&second), (1_000..1_300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_part_lost_after_a_kill_is_fetched_again_not_trusted() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(25),
        ..SandboxConfig::default()
    })
    .await;
    for damage in ["delete", "truncate", "corrupt"] {
        let ws = Workspace::with_shipped_jobs();
        let env = env_for(
            &sandbox,
            &ws,
            &[
                (
                    "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE",
                    "500",
                ),
                (
                    "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
                    "1000",
                ),
                ("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1"),
            ],
        );
        let child = spawn(&ws, &env, &["run", JOB]);
        // Stopped once a few parts are committed.
        let state_file = ws.path().join("state/seal_metrics_events.json");
        let committed_parts = || -> usize {
            std::fs::read(&state_file)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|s| s["in_progress"]["parts"].as_array().map(|p| p.len()))
                .unwrap_or(0)
        };
        while committed_parts() < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        terminate(&child);
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
        // The second part goes missing, or changes, behind the checkpoint's back.
        let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
        let second = dir.join("part-00001.parquet");
        match damage {
            "delete" => std::fs::remove_file(&second).unwrap(),
            "truncate" => {
                let bytes = std::fs::read(&second).unwrap();
                std::fs::write(&second, &bytes[..bytes.len() / 2]).unwrap();
            }
            _ => {
                let mut bytes = std::fs::read(&second).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                std::fs::write(&second, bytes).unwrap();
            }
        }
        let out = ws.apisnap(&["run", JOB], &env).await;
        assert_exit(&out, 0);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("part-00001.parquet") && stderr.contains("missing or damaged"),
            "{damage}: {stderr}"
        );
        // Every record once, in whole parts: the first part was kept, the rest fetched again.
        check_parquet_snapshot(&dir, records);
        parts_are_whole(&ws);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_never_cleans_up_another_jobs_snapshot() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 500,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let shared = ws.path().join("out/shared");
    let env = env_for(
        &sandbox,
        &ws,
        &[(
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR",
            shared.to_str().unwrap(),
        )],
    );
    // Another job's complete snapshot is there.
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("part-00000.parquet"), b"theirs").unwrap();
    std::fs::write(shared.join("_manifest.json"), br#"{"job": "orders"}"#).unwrap();
    std::fs::write(shared.join("_SUCCESS"), b"").unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("holds a snapshot of job `orders`"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(shared.join("part-00000.parquet")).unwrap(),
        b"theirs"
    );
    assert!(
        shared.join("_SUCCESS").exists(),
        "their snapshot stays complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_run_honours_compact() {
    let records = 10_007;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "jobs/paged.toml",
        &PAGED_JOB.replace("[output]", "[output]\ncompact = true"),
    );
    let mut env = common::provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("APISNAP_RUN_ID".into(), "r8".into()));
    common::run_shards(&ws, &env, "paged", 3).await;
    let dir = ws.path().join("out/paged/r8");
    assert!(dir.join("_SUCCESS").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["records"], records);
    let files = parts(&dir);
    assert_eq!(files.len(), 1, "one merged file: {files:?}");
    assert_eq!(manifest["parts"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["parts"][0]["file"], "part-all.csv");
    let mut next = 0u64;
    let mut reader = csv::Reader::from_path(&files[0]).unwrap();
    for row in reader.records() {
        assert_eq!(row.unwrap()[0].parse::<u64>().unwrap(), next);
        next += 1;
    }
    assert_eq!(next, records);
}
