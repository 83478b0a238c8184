//! The files open in the tools analysts use: pyarrow and DuckDB read a Parquet snapshot and a
//! CSV snapshot, with the record count, column names and types apisnap meant.

mod common;

use apisnap::sandbox::SandboxConfig;
use common::{Workspace, analyst_python, assert_exit, provider_env, snapshot_dirs};

fn read(format: &str, dir: &std::path::Path) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/analysts/read.py");
    let out = std::process::Command::new(analyst_python())
        .arg(script)
        .arg(format)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_and_duckdb_open_parquet_and_csv_snapshots() {
    let records: u64 = 12_345;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let columns = apisnap::sandbox::data::COLUMNS;
    let sum_id = records * (records - 1) / 2;
    for (provider, job, format) in [
        ("seal_metrics", "seal_metrics_events", "parquet"),
        ("spreetail", "spreetail_orders", "csv"),
    ] {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        // Several parts, so that the readers combine them.
        env.push((
            format!("{}__OUTPUT__PART_RECORDS", apisnap::env::job_prefix(job)),
            "5000".into(),
        ));
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        let dir = &snapshot_dirs(&ws.path().join("out"))[0];
        let seen = read(format, dir);
        for reader in ["pyarrow", "duckdb"] {
            let r = &seen[reader];
            if format == "parquet" || reader == "duckdb" {
                assert_eq!(r["rows"], records, "{reader} {format}: rows");
            }
            let names: Vec<&str> = r["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(names, columns, "{reader} {format}: columns");
        }
        assert_eq!(seen["duckdb"]["sum_id"], sum_id, "{format}: every id once");
        let types =
            |reader: &str, col: &str| seen[reader]["types"][col].as_str().unwrap().to_string();
        if format == "parquet" {
            assert_eq!(types("pyarrow", "id"), "int64");
            assert_eq!(types("pyarrow", "name"), "string");
            assert_eq!(types("pyarrow", "amount"), "double");
            assert_eq!(types("pyarrow", "active"), "bool");
            assert_eq!(types("pyarrow", "created_at"), "timestamp[us, tz=UTC]");
            assert_eq!(types("duckdb", "created_at"), "TIMESTAMP WITH TIME ZONE");
            assert_eq!(types("pyarrow", "tags"), "list<item: string>");
            assert_eq!(
                types("pyarrow", "address"),
                "struct<city: string, zip: string>"
            );
            assert_eq!(types("duckdb", "id"), "BIGINT");
            assert_eq!(types("duckdb", "tags"), "VARCHAR[]");
            assert_eq!(
                types("duckdb", "address"),
                "STRUCT(city VARCHAR, zip VARCHAR)"
            );
        } else {
            assert_eq!(types("duckdb", "id"), "BIGINT");
            assert_eq!(types("duckdb", "amount"), "DOUBLE");
            assert_eq!(types("duckdb", "active"), "BOOLEAN");
            // CSV keeps ISO-8601 text, which the readers type themselves.
            assert_eq!(types("duckdb", "created_at"), "TIMESTAMP WITH TIME ZONE");
            assert_eq!(types("pyarrow", "id"), "int64");
            assert_eq!(types("pyarrow", "name"), "string");
        }
    }
}

/// Runs one README recipe (`python` or `sql`) in `dir`; what it read.
fn recipe(kind: &str, code: &str, dir: &std::path::Path) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/analysts/recipe.py");
    let file = dir.join(format!(".recipe.{kind}"));
    std::fs::write(&file, code).unwrap();
    let out = std::process::Command::new(analyst_python())
        .current_dir(dir)
        .arg(script)
        .arg(kind)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the recipe failed:\n{code}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_recipes_read_what_apisnap_wrote() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 3_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let job = "seal_metrics_events";
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    let prefix = apisnap::env::job_prefix(job);
    env.push((
        format!("{prefix}__OUTPUT__DIR"),
        "out/{job}/{run_id}".into(),
    ));
    env.push((format!("{prefix}__OUTPUT__PART_RECORDS"), "2000".into()));
    // Two complete snapshots (3,000 then 5,000 records).
    assert_exit(&ws.apisnap(&["run", job], &env).await, 0);
    sandbox.set_records(5_000);
    assert_exit(&ws.apisnap(&["run", job], &env).await, 0);
    let job_dir = ws.path().join("out").join(job);
    let dirs = snapshot_dirs(&job_dir);
    assert_eq!(dirs.len(), 2);
    let first = dirs
        .iter()
        .find(|d| {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("_manifest.json")).unwrap()).unwrap();
            m["records"] == 3_000
        })
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let second = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .find(|d| *d != first)
        .unwrap();
    // And one still being written: a part under its final name, no _SUCCESS.
    let unfinished = job_dir.join("zz-unfinished");
    std::fs::create_dir_all(&unfinished).unwrap();
    let a_part = common::parts(&job_dir.join(&first))[0].clone();
    std::fs::copy(&a_part, unfinished.join("part-00000.parquet")).unwrap();

    // The README's `orders` job with a current table, at the data set's second generation.
    let table_job = common::readme_blocks("toml", Some("The current-state table"))
        .into_iter()
        .map(|(_, b)| b)
        .find(|b| b.contains("[table]"))
        .unwrap();
    ws.write("jobs/orders.toml", &table_job);
    let per_generation = 2_000;
    sandbox.set_records(per_generation);
    for g in 1..=2 {
        sandbox.set_generation(g);
        assert_exit(&ws.apisnap(&["run", "orders"], &env).await, 0);
    }
    let current_ids: Vec<u64> = (0..2 * per_generation)
        .filter_map(|id| apisnap::sandbox::changes_state(id, 2, per_generation))
        .filter(|c| !c.deleted)
        .map(|c| c.id)
        .collect();

    let ids = |n: u64| serde_json::json!((0..n).collect::<Vec<_>>());
    let mut ran = std::collections::BTreeMap::<String, usize>::new();
    for kind in ["python", "sql"] {
        for (line, code) in common::readme_blocks(kind, Some("Reading the files")) {
            let what = code
                .lines()
                .next()
                .unwrap()
                .trim_start_matches(['#', '-', ' '])
                .to_string();
            let code = code.replace("2026-11-22", &first);
            let seen = recipe(kind, &code, ws.path());
            let at = format!("README.md line {line} ({what})");
            match what.as_str() {
                "the newest snapshot" => {
                    assert_eq!(seen["rows"], 5_000, "{at}");
                    assert_eq!(seen["ids"], ids(5_000), "{at}");
                }
                "one snapshot" => {
                    assert_eq!(seen["rows"], 3_000, "{at}");
                    assert_eq!(seen["ids"], ids(3_000), "{at}");
                }
                "every complete snapshot" => {
                    assert_eq!(seen["rows"], 8_000, "{at}: each snapshot once");
                    let mut both: Vec<u64> = (0..3_000).chain(0..5_000).collect();
                    both.sort();
                    assert_eq!(seen["ids"], serde_json::json!(both), "{at}");
                    let mut names = vec![first.clone(), second.clone()];
                    names.sort();
                    assert_eq!(seen["snapshots"], serde_json::json!(names), "{at}");
                }
                "the current table" => {
                    assert_eq!(seen["rows"], current_ids.len(), "{at}");
                    assert_eq!(seen["ids"], serde_json::json!(current_ids), "{at}");
                }
                other => panic!("{at}: a recipe the test does not know: `{other}`"),
            }
            *ran.entry(format!("{kind}: {what}")).or_default() += 1;
        }
    }
    // Every kind of read, in Python (pandas and polars) and in DuckDB.
    for expected in [
        "python: the newest snapshot",
        "sql: the newest snapshot",
        "python: one snapshot",
        "python: every complete snapshot",
        "sql: every complete snapshot",
        "python: the current table",
        "sql: the current table",
    ] {
        assert!(
            ran.contains_key(expected),
            "no recipe for {expected}: {ran:?}"
        );
    }
}
