//! The current-state table: incremental runs of a data set that inserts, updates and
//! deletes between them, merged into `out/{job}/current/` — compared row for row with the
//! state the sandbox says every record is in — and kills during the merge that never leave
//! `current/` unreadable or mixed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use apisnap::sandbox::{SandboxConfig, changes_state};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use common::{Workspace, assert_exit, provider_env, text};
use tokio::io::{AsyncBufReadExt, BufReader};

const JOB: &str = r#"provider = "seal_metrics"
[endpoint]
path = "/changes"
[pagination]
type = "offset"
page_size = 500
total_pointer = "/total"
[incremental]
cursor_field = "updated_at"
param = "updated_after"
lookback = 5
[table]
primary_key = ["id"]
order_by = "updated_at"
tombstone = { field = "deleted", equals = true }
bucket_rows = 1000
buckets = 2
[output]
dir = "out/{job}/{run_id}"
"#;

/// One row of the table: id -> (version, amount, updated_at in seconds, deleted).
type Rows = BTreeMap<u64, (u64, i64, i64, bool)>;

/// Every row of the table version `current` leads to, after checking that the version is
/// whole: its manifest names exactly the files there, with their row counts.
fn read_current(job_dir: &Path) -> (Rows, serde_json::Value) {
    let current = job_dir.join("current");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(current.join("_manifest.json")).unwrap()).unwrap();
    assert!(current.join("_SUCCESS").exists(), "a complete version");
    let listed: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_string())
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(&current)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    present.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        present, sorted,
        "the version's files are exactly its manifest's"
    );
    let mut rows = Rows::new();
    for (file, entry) in listed.iter().zip(manifest["files"].as_array().unwrap()) {
        let mut n = 0;
        for batch in common::read_parquet(&current.join(file)) {
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let (id, version, amount) = (col("id"), col("version"), col("amount"));
            let (updated, deleted) = (col("updated_at"), col("deleted"));
            for r in 0..batch.num_rows() {
                let id = id.as_primitive::<Int64Type>().value(r) as u64;
                let row = (
                    version.as_primitive::<Int64Type>().value(r) as u64,
                    amount.as_primitive::<Int64Type>().value(r),
                    updated.as_primitive::<TimestampMicrosecondType>().value(r) / 1_000_000,
                    deleted.as_boolean().value(r),
                );
                assert!(rows.insert(id, row).is_none(), "key {id} twice");
                n += 1;
            }
        }
        assert_eq!(entry["rows"], n, "{file}");
    }
    assert_eq!(manifest["rows"], rows.len() as u64);
    (rows, manifest)
}

/// The `id`s of every row of a table version's files, sorted.
fn current_ids(current: &Path) -> Vec<i64> {
    let mut ids: Vec<i64> = std::fs::read_dir(current)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .flat_map(|p| common::read_parquet(&p))
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    ids.sort();
    ids
}

/// The table expected at generation `g`: every record inserted and not deleted, at its
/// latest change.
fn expected(g: u64, per_generation: u64) -> Rows {
    (0..g * per_generation)
        .filter_map(|id| changes_state(id, g, per_generation))
        .filter(|c| !c.deleted)
        .map(|c| {
            let at = chrono::DateTime::parse_from_rfc3339(&c.updated_at).unwrap();
            (c.id, (c.version, c.amount, at.timestamp(), c.deleted))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_with_updates_inserts_and_tombstones_make_the_expected_table() {
    let per_generation = 1_500;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: per_generation,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write("jobs/orders.toml", JOB);
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let job_dir = ws.path().join("out/orders");
    let mut versions = Vec::new();
    for g in 1..=3 {
        sandbox.set_generation(g);
        let out = ws.apisnap(&["run", "orders"], &env).await;
        assert_exit(&out, 0);
        let (rows, manifest) = read_current(&job_dir);
        let want = expected(g, per_generation);
        assert_eq!(rows.len(), want.len(), "generation {g}: keys");
        assert_eq!(rows, want, "generation {g}: row for row");
        versions.push(manifest["version"].as_u64().unwrap());
        if g >= 2 {
            assert!(manifest["tombstoned"].as_u64().unwrap() > 0, "{manifest}");
        }
        // 1,500 keys a generation past 1,000 a bucket: the table split its buckets.
        if g == 3 {
            assert!(manifest["buckets"].as_u64().unwrap() > 2, "{manifest}");
        }
    }
    assert_eq!(versions, [1, 2, 3]);
    // The link is relative, and only the last two versions are kept.
    assert_eq!(
        std::fs::read_link(job_dir.join("current")).unwrap(),
        Path::new("_current/v000003")
    );
    let mut kept: Vec<String> = std::fs::read_dir(job_dir.join("_current"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["v000002", "v000003"]);

    // A run that finds nothing new leaves the rows as they are, in a new version whose
    // files are the previous ones, not rewritten (hard links).
    let out = ws.apisnap(&["run", "orders"], &env).await;
    assert_exit(&out, 0);
    let (rows, manifest) = read_current(&job_dir);
    assert_eq!(rows, expected(3, per_generation));
    use std::os::unix::fs::MetadataExt;
    let file = manifest["files"][0]["file"].as_str().unwrap();
    let inode = |v: &str| {
        std::fs::metadata(job_dir.join("_current").join(v).join(file))
            .unwrap()
            .ino()
    };
    assert_eq!(inode("v000004"), inode("v000003"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_merges_the_table_stays_readable_and_the_next_run_completes_it() {
    let per_generation = 6_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: per_generation,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "jobs/orders.toml",
        &JOB.replace("page_size = 500", "page_size = 3000"),
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let job_dir = ws.path().join("out/orders");
    let mut rng = fastrand::Rng::with_seed(20261201);
    let (mut kills, mut attempts, mut g) = (0, 0, 1);
    sandbox.set_generation(g);
    while kills < 20 {
        attempts += 1;
        assert!(attempts < 300, "only {kills} kills landed in a merge");
        let mut child = common::spawn(&ws, &env, &["run", "orders"]);
        // Killed at a random moment after the merge begins.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let mut merging = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("merging the snapshot into the current table") {
                merging = true;
                break;
            }
        }
        if merging {
            tokio::time::sleep(std::time::Duration::from_micros(rng.u64(0..60_000))).await;
            child.start_kill().unwrap();
        }
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
        }
        let status = child.wait().await.unwrap();
        let merged = seen.contains("current table updated");
        if status.code().is_none() && merging && !merged {
            kills += 1;
        } else {
            assert!(status.success() || status.code().is_none(), "{seen}");
        }
        // Whatever the moment, `current` is a whole version (or none yet).
        if job_dir.join("current").exists() {
            let (rows, manifest) = read_current(&job_dir);
            assert_eq!(rows.len() as u64, manifest["rows"].as_u64().unwrap());
        }
        if status.success() || kills % 5 == 4 {
            // Let a run complete, check it, then move the data on.
            let out = ws.apisnap(&["run", "orders"], &env).await;
            assert_exit(&out, 0);
            assert_eq!(
                read_current(&job_dir).0,
                expected(g, per_generation),
                "generation {g}"
            );
            if g < 4 {
                g += 1;
                sandbox.set_generation(g);
            }
        }
    }
    let out = ws.apisnap(&["run", "orders"], &env).await;
    assert_exit(&out, 0);
    assert_eq!(
        read_current(&job_dir).0,
        expected(g, per_generation),
        "after {kills} kills, generation {g}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_snapshot_job_keeps_every_key_or_deletes_the_absent_ones_if_asked() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 1_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let job = |deletions: &str| {
        format!(
            "provider = \"seal_metrics\"\n[endpoint]\npath = \"/stats/events\"\n\
             records_pointer = \"/data\"\n[pagination]\ntype = \"offset\"\npage_size = 250\n\
             [table]\nprimary_key = [\"id\"]\n{deletions}\n\
             [output]\ndir = \"out/{{job}}/{{run_id}}\"\n"
        )
    };
    ws.write("jobs/kept.toml", &job(""));
    ws.write("jobs/absent.toml", &job("deletions = \"absence\""));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let ids = |name: &str| current_ids(&ws.path().join("out").join(name).join("current"));
    for name in ["kept", "absent"] {
        assert_exit(&ws.apisnap(&["run", name], &env).await, 0);
    }
    // The API now lists fewer records (600 of them): only `absence` deletes the others.
    sandbox.set_records(600);
    for name in ["kept", "absent"] {
        assert_exit(&ws.apisnap(&["run", name], &env).await, 0);
    }
    assert_eq!(ids("kept"), (0..1_000).collect::<Vec<_>>());
    assert_eq!(ids("absent"), (0..600).collect::<Vec<_>>());
    // Every column of the snapshot is in the table, with its values.
    let file = std::fs::read_dir(ws.path().join("out/absent/current"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let batch = &common::read_parquet(&file)[0];
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, apisnap::sandbox::data::COLUMNS);
    let id = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    let name = batch
        .column_by_name("name")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    assert_eq!(name, apisnap::sandbox::data::record(id as u64).name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_run_merges_once_all_shards_are_complete() {
    let records = 4_321;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "jobs/paged.toml",
        "provider = \"seal_metrics\"\n[endpoint]\npath = \"/v2/events/pages\"\n\
         [pagination]\ntype = \"page\"\npage_param = \"page\"\nsize_param = \"per_page\"\n\
         page_size = 700\ntotal_pages_pointer = \"/total_pages\"\n\
         [table]\nprimary_key = [\"id\"]\n[output]\ndir = \"out/{job}/{run_id}\"\n",
    );
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("APISNAP_RUN_ID".into(), "s1".into()));
    common::run_shards(&ws, &env, "paged", 3).await;
    let current = ws.path().join("out/paged/current");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(current.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], records);
    let runs = manifest["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "merged once: {runs:?}");
    assert!(runs[0].as_str().unwrap().starts_with("s1@"), "{runs:?}");
    assert_eq!(
        current_ids(&current),
        (0..records as i64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_run_id_still_merges_every_run_and_a_changed_key_is_refused() {
    let per_generation = 300;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: per_generation,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write("jobs/orders.toml", &JOB.replace("{run_id}", "{date}"));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let job_dir = ws.path().join("out/orders");
    // The same --run-id every time (a unit file that fixes APISNAP_RUN_ID).
    for g in 1..=2 {
        sandbox.set_generation(g);
        let out = ws
            .apisnap(&["run", "orders", "--run-id", "nightly"], &env)
            .await;
        assert_exit(&out, 0);
        assert_eq!(
            read_current(&job_dir).0,
            expected(g, per_generation),
            "generation {g}"
        );
    }
    // Keyed otherwise now: refused, the table as it was.
    ws.write(
        "jobs/orders.toml",
        &JOB.replace("{run_id}", "{date}").replace(
            "primary_key = [\"id\"]",
            "primary_key = [\"id\", \"version\"]",
        ),
    );
    sandbox.set_generation(3);
    let out = ws.apisnap(&["run", "orders"], &env).await;
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the table is keyed by"), "{stderr}");
    assert_eq!(read_current(&job_dir).0, expected(2, per_generation));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_stays_deleted_when_an_older_version_is_sent_again() {
    let per_generation = 700;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: per_generation,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write("jobs/orders.toml", JOB);
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    let job_dir = ws.path().join("out/orders");
    // Insert, then delete, then every run after sends the deleted records' first versions
    // again (older than their deletions): the table is compared with the source's true
    // state after every generation (was: 12 keys of 3,407 came back).
    for g in 1..=4 {
        sandbox.set_generation(g);
        if g == 3 {
            env.push((
                "APISNAP_JOB_ORDERS__ENDPOINT__QUERY__RESEND".into(),
                "1".into(),
            ));
        }
        let out = ws.apisnap(&["run", "orders"], &env).await;
        assert_exit(&out, 0);
        let (rows, manifest) = read_current(&job_dir);
        assert_eq!(
            rows,
            expected(g, per_generation),
            "generation {g}: row for row"
        );
        // The deletions remembered beside the rows, never as `*.parquet` readers take in.
        if g >= 2 {
            let kept: u64 = manifest["tombstones"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let name = f["file"].as_str().unwrap();
                    assert!(name.starts_with('_') && name.ends_with(".arrow"), "{name}");
                    assert!(job_dir.join("current").join(name).exists(), "{name}");
                    f["rows"].as_u64().unwrap()
                })
                .sum();
            let deleted = (0..g * per_generation)
                .filter_map(|id| changes_state(id, g, per_generation))
                .filter(|c| c.deleted)
                .count() as u64;
            assert_eq!(kept, deleted, "generation {g}: every deletion remembered");
        }
    }
    // The stale versions really came in the run (the table refused them, not the API).
    let out = ws.apisnap(&["run", "orders", "--fresh"], &env).await;
    assert_exit(&out, 0);
    let (rows, _) = read_current(&job_dir);
    assert_eq!(rows, expected(4, per_generation));
}
