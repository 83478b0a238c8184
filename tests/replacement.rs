//! Staged replacement and ownership: a run into a directory that holds a complete snapshot
//! writes beside it and takes its place only when complete, so that a reader of the
//! directory or of `latest.json` sees the old snapshot or the new one, never neither; and a
//! run never removes files that none of its job's runs wrote.

mod common;

use apisnap::sandbox::{Sandbox, SandboxConfig};
use common::{
    Workspace, assert_exit, check_parquet_snapshot, parts, provider_env, snapshot_dirs, text,
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

fn manifest(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap()
}

/// The hidden entries beside `dir` (a staged replacement, a swap's leftovers).
fn hidden_beside(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// The first-column ids of every CSV part of `dir`, in part order.
fn csv_ids(dir: &std::path::Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for part in parts(dir) {
        let mut reader = csv::Reader::from_path(&part).unwrap();
        for row in reader.records() {
            ids.push(row.unwrap()[0].parse().unwrap());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_that_fails_leaves_the_complete_snapshot_of_the_same_name_readable() {
    let ws = Workspace::with_shipped_jobs();
    let first_records = 5_000;
    let good = common::start_sandbox(SandboxConfig {
        records: first_records,
        ..SandboxConfig::default()
    })
    .await;
    // The default `out/{job}/{date}`: a second run today writes under the same name.
    let dated = ws.path().join("out/{job}/{date}");
    let small_parts = [
        (
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__PART_RECORDS",
            "1000",
        ),
        (
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR",
            dated.to_str().unwrap(),
        ),
    ];
    let env = env_for(&good, &ws, &small_parts);
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    let first_run = manifest(&dir)["run_id"].clone();

    // The second run fails midway (a new field, `drift = "fail"`).
    let breaking = common::start_sandbox(SandboxConfig {
        records: 8_000,
        new_field_from: Some(3_000),
        ..SandboxConfig::default()
    })
    .await;
    let env = env_for(&breaking, &ws, &small_parts);
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 1);
    // The complete snapshot is still there, whole, and still the latest.
    assert!(dir.join("_SUCCESS").exists(), "still complete");
    assert_eq!(manifest(&dir)["run_id"], first_run);
    check_parquet_snapshot(&dir, first_records);
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.parent().unwrap().join("latest.json")).unwrap())
            .unwrap();
    assert_eq!(latest["run_id"], first_run);

    // Resumed against a server that answers, it completes and takes the name, in one step.
    let fixed = common::start_sandbox(SandboxConfig {
        records: 8_000,
        ..SandboxConfig::default()
    })
    .await;
    let env = env_for(&fixed, &ws, &small_parts);
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert_ne!(manifest(&dir)["run_id"], first_run, "{}", text(&out.stderr));
    check_parquet_snapshot(&dir, 8_000);
    let leftovers = hidden_beside(&dir);
    assert!(
        leftovers.is_empty(),
        "the old snapshot is gone: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_the_same_run_id_still_replaces_the_snapshot() {
    let ws = Workspace::with_shipped_jobs();
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 2_000,
        ..SandboxConfig::default()
    })
    .await;
    let dated = ws.path().join("out/{job}/{date}");
    let env = env_for(
        &sandbox,
        &ws,
        &[(
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR",
            dated.to_str().unwrap(),
        )],
    );
    let out = ws.apisnap(&["run", JOB, "--run-id", "nightly"], &env).await;
    assert_exit(&out, 0);
    let dir = snapshot_dirs(&ws.path().join("out"))[0].clone();
    // The same id again (a fixed APISNAP_RUN_ID), with more records: it is another run.
    sandbox.set_records(3_000);
    let out = ws.apisnap(&["run", JOB, "--run-id", "nightly"], &env).await;
    assert_exit(&out, 0);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["records"], 3_000);
    check_parquet_snapshot(&dir, 3_000);
}

const PAGED_DAILY: &str = r#"provider = "seal_metrics"
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
dir = "out/{job}/daily"
part_records = 2000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_replacing_a_complete_snapshot_leave_it_readable_until_finalized() {
    let ws = Workspace::with_shipped_jobs();
    ws.write("jobs/paged.toml", PAGED_DAILY);
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 3_000,
        ..SandboxConfig::default()
    })
    .await;
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    assert_exit(&ws.apisnap(&["run", "paged"], &env).await, 0);
    let dir = ws.path().join("out/paged/daily");
    let first_run = manifest(&dir)["run_id"].clone();
    let latest = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(ws.path().join("out/paged/latest.json")).unwrap())
            .unwrap()
    };

    // A sharded run into the same directory: two of its three shards complete.
    sandbox.set_records(5_000);
    let mut env = env.clone();
    env.push(("APISNAP_RUN_ID".into(), "sharded".into()));
    for i in 0..2 {
        let out = ws
            .apisnap(&["run", "paged", "--shard", &format!("{i}/3")], &env)
            .await;
        assert_exit(&out, 0);
    }
    // The old snapshot is untouched meanwhile: complete, whole, and the latest.
    assert!(dir.join("_SUCCESS").exists());
    assert_eq!(manifest(&dir)["run_id"], first_run);
    assert_eq!(csv_ids(&dir), (0..3_000).collect::<Vec<_>>());
    assert_eq!(latest()["run_id"], first_run);

    // The last shard finalizes: the new snapshot takes the name in one step.
    let out = ws.apisnap(&["run", "paged", "--shard", "2/3"], &env).await;
    assert_exit(&out, 0);
    assert!(dir.join("_SUCCESS").exists());
    assert_eq!(manifest(&dir)["run_id"], "sharded", "{}", text(&out.stderr));
    assert_eq!(manifest(&dir)["records"], 5_000);
    assert_eq!(csv_ids(&dir), (0..5_000).collect::<Vec<_>>());
    assert_eq!(latest()["run_id"], "sharded");
    let link = ws.path().join("out/paged/latest");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("daily")
    );
    assert_eq!(csv_ids(&link), (0..5_000).collect::<Vec<_>>());
    assert!(
        latest()["snapshot"]
            .as_str()
            .unwrap()
            .ends_with("out/paged/daily"),
        "{}",
        latest()
    );
    let leftovers = hidden_beside(&dir);
    assert!(
        leftovers.is_empty(),
        "the old snapshot is gone: {leftovers:?}"
    );
    let status = common::status_of(&ws, &env, "paged").await;
    assert_eq!(status["last_run"]["records"], 5_000, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_no_run_of_the_job_wrote_are_refused_and_left_alone() {
    let ws = Workspace::with_shipped_jobs();
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 500,
        ..SandboxConfig::default()
    })
    .await;
    let fixed = ws.path().join("out/fixed");
    let env = env_for(
        &sandbox,
        &ws,
        &[(
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR",
            fixed.to_str().unwrap(),
        )],
    );
    // Someone else's files, in apisnap's names, without a manifest that says whose.
    std::fs::create_dir_all(&fixed).unwrap();
    std::fs::write(fixed.join("part-00000.parquet"), b"theirs").unwrap();
    std::fs::write(fixed.join(".part-00001.parquet.x1y2.tmp"), b"theirs too").unwrap();
    std::fs::write(fixed.join("notes.txt"), b"mine").unwrap();
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(err.contains("output.dir"), "{err}");
    assert!(
        err.contains("no run of seal_metrics_events is writing")
            && err.contains("part-00000.parquet"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(fixed.join("part-00000.parquet")).unwrap(),
        b"theirs"
    );
    assert!(fixed.join(".part-00001.parquet.x1y2.tmp").exists());

    // Moved away, the run writes there, and leaves other files alone.
    std::fs::remove_file(fixed.join("part-00000.parquet")).unwrap();
    std::fs::remove_file(fixed.join(".part-00001.parquet.x1y2.tmp")).unwrap();
    assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    check_parquet_snapshot(&fixed, 500);
    assert_eq!(std::fs::read(fixed.join("notes.txt")).unwrap(), b"mine");
}
