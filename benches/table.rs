//! The current-state table: what merging a run into it costs, and that memory does not grow
//! with the table (issue #18). Printed as the Markdown table of BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench table                      # tables of 1,000,000 and 10,000,000 keys
//! cargo bench --bench table -- 100000 1000000    # smaller: SMALL BIG (keys)
//! ```
//!
//! For each table size N: a first run of N records makes the table (N keys), then a second
//! run of 1,000,000 records (ids 0..1M, every one a changed version of a key the table
//! holds) merges into it. Each `apisnap run` is the release binary in its own process, its
//! wall time, CPU time and peak RSS from `wait4`; the run includes fetching and writing the
//! snapshot, so a run of the same job without `[table]` is measured beside it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Measured, Sandbox, measure};

const CHANGED: u64 = 1_000_000;

fn main() {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = [
        numbers.first().copied().unwrap_or(1_000_000),
        numbers.get(1).copied().unwrap_or(10_000_000),
    ];
    println!(
        "| table keys | run | records | wall s | CPU s | peak RSS MB | table files | table MB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for keys in sizes {
        let work = tempfile::tempdir().expect("a temporary directory");
        write_jobs(work.path());
        let sandbox = Sandbox::start(keys, 0);
        let first = run(work.path(), &sandbox, "bench_table");
        row(
            keys,
            "first run: makes the table",
            keys,
            &first,
            work.path(),
        );
        drop(sandbox);
        let sandbox = Sandbox::start(CHANGED.min(keys), 0);
        let plain = run(work.path(), &sandbox, "bench_plain");
        row(
            keys,
            "the same records, no [table]",
            CHANGED.min(keys),
            &plain,
            work.path(),
        );
        let merge = run(work.path(), &sandbox, "bench_table");
        row(
            keys,
            "merges the changed records",
            CHANGED.min(keys),
            &merge,
            work.path(),
        );
    }
}

fn write_jobs(dir: &Path) {
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(jobs.join("providers")).expect("jobs dir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/providers/seal_metrics.toml"),
        jobs.join("providers/seal_metrics.toml"),
    )
    .expect("the shipped provider");
    for (name, table) in [
        ("bench_table", "[table]\nprimary_key = [\"id\"]\n"),
        ("bench_plain", ""),
    ] {
        let job = format!(
            "provider = \"seal_metrics\"\n\
             [endpoint]\npath = \"/stats/events\"\nrecords_pointer = \"/data\"\n\
             [pagination]\ntype = \"offset\"\npage_size = 1000\n{table}\
             [output]\nformat = \"parquet\"\ndir = \"{}/out/{{job}}/{{run_id}}\"\n",
            dir.display()
        );
        std::fs::write(jobs.join(format!("{name}.toml")), job).expect("job file");
    }
}

fn run(dir: &Path, sandbox: &Sandbox, job: &str) -> Measured {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .args(["--log-level", "warn", "run", job])
        .env("SEAL_METRICS_EMAIL", "analyst@example.com")
        .env("SEAL_METRICS_PASSWORD", "sandbox-seal-password")
        .env(
            "APISNAP_PROVIDER_SEAL_METRICS__BASE_URL",
            format!("http://127.0.0.1:{}/seal", sandbox.port),
        );
    measure(&mut command)
}

fn row(keys: u64, what: &str, records: u64, m: &Measured, dir: &Path) {
    let current = dir.join("out/bench_table/current");
    let manifest: serde_json::Value = std::fs::read(current.join("_manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let files = manifest["files"].as_array().map_or(0, |f| f.len());
    println!(
        "| {keys} | {what} | {records} | {:.2} | {:.2} | {:.0} | {files} | {:.1} |",
        m.wall,
        m.cpu,
        m.rss_mb,
        common::dir_size(&current) as f64 / 1e6
    );
}
