//! Requests on a list whose pages vary in size below the server's cap (issue #26): pages
//! needed against requests made, beside the same records in pages of one size.
//!
//! ```text
//! cargo bench --bench pages              # 30,000 records in pages of 20-50, at 0 and 20 ms
//! cargo bench --bench pages -- 100000
//! ```
//!
//! Each case is one `apisnap run` of the release binary (offset pages, 50 asked, adaptive
//! concurrency) against `apisnap sandbox`; the requests are the run report's, the pages
//! needed are counted from the sandbox's own page sizes (plus the empty page that ends the
//! list). Wall and CPU time are those of the `apisnap run` process alone.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Sandbox, measure};

fn main() {
    let records = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse::<u64>().ok())
        .unwrap_or(30_000);
    let work = tempfile::tempdir().expect("a temporary directory");
    let jobs = work.path().join("jobs");
    std::fs::create_dir_all(jobs.join("providers")).expect("jobs dir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/providers/seal_metrics.toml"),
        jobs.join("providers/seal_metrics.toml"),
    )
    .expect("the shipped provider");
    for (job, path) in [("even", "/stats/events"), ("ragged", "/shapes/ragged")] {
        std::fs::write(
            jobs.join(format!("{job}.toml")),
            format!(
                "provider = \"seal_metrics\"\n[endpoint]\npath = \"{path}\"\n\
                 [pagination]\ntype = \"offset\"\npage_size = 50\n\
                 [output]\ndir = \"out/{{job}}/{{run_id}}\"\n"
            ),
        )
        .expect("job file");
    }
    let (mut skip, mut ragged_pages) = (0, 1);
    while skip < records {
        skip += apisnap::sandbox::ragged_size(skip);
        ragged_pages += 1;
    }
    let even_pages = records.div_ceil(50) + 1;
    println!("| case | pages needed | requests made | wall s | CPU s |");
    println!("|---|---|---|---|---|");
    for latency in [0, 20] {
        let sandbox = Sandbox::start(records, latency);
        for (job, needed) in [("even", even_pages), ("ragged", ragged_pages)] {
            let mut command = Command::new(BIN);
            command
                .current_dir(work.path())
                .args(["--log-level", "warn", "run", job])
                .env("SEAL_METRICS_EMAIL", "analyst@example.com")
                .env("SEAL_METRICS_PASSWORD", "sandbox-seal-password")
                .env(
                    "APISNAP_PROVIDER_SEAL_METRICS__BASE_URL",
                    format!("http://127.0.0.1:{}/seal", sandbox.port),
                );
            let m = measure(&mut command);
            let report: serde_json::Value = serde_json::from_slice(
                &std::fs::read(work.path().join(format!("state/{job}.report.json")))
                    .expect("a run report"),
            )
            .expect("JSON");
            assert_eq!(report["records"], records, "every record");
            println!(
                "| {records} records, {latency} ms, pages {} | {needed} | {} | {:.2} | {:.2} |",
                if job == "even" { "of 50" } else { "of 20-50" },
                report["requests"],
                m.wall,
                m.cpu
            );
            let _ = std::fs::remove_dir_all(work.path().join("out"));
            let _ = std::fs::remove_dir_all(work.path().join("state"));
        }
    }
}
