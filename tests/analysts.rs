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
