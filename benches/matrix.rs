//! apisnap's performance matrix (issue #7), printed as the Markdown tables of BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench matrix                    # 1,000,000 records; 10,000,000 for memory
//! cargo bench --bench matrix -- 200000 1000000  # smaller: RECORDS BIG_RECORDS
//! ```
//!
//! Everything runs as separate processes of the release binary, as in production: the
//! sandbox (`apisnap sandbox --prerender`, pages rendered once so that serving them costs
//! little) and one `apisnap run` per case, a real job of the sandbox's standard record with
//! page size 1,000. Each case's wall time, CPU time (user + system) and peak RSS are those of
//! the `apisnap run` process alone, from `wait4`. For 0 ms and 20 ms of sandbox latency and
//! concurrency 1 and 8 it runs the two floors on the same pages (`run --floor fetch`: fetch
//! and discard; `run --floor parse`: fetch, parse the JSON, discard) and the real pipeline to
//! Parquet and to CSV; then a 10M-record Parquet run for memory, the zstd level x dictionary
//! trade-off, and `apisnap validate jobs/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{BIN, Measured, Sandbox, dir_size, measure};
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Runs per 0 ms case; the median is reported (the machine is shared and noisy).
const REPEAT: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let records = numbers.first().copied().unwrap_or(1_000_000);
    let big = numbers.get(1).copied().unwrap_or(10_000_000);
    let work = tempfile::tempdir().expect("a temporary directory");
    let bench = Bench::new(work.path());

    println!("{}\n", machine());
    println!(
        "| case | wall s (median, min-max) | records/s | JSON MB/s | CPU s | peak RSS MB | × fetch floor | × parse floor |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // Parquet at 20 ms: wall time at concurrency 1 and 8.
    let mut speedup_at_20 = [0.0; 2];
    for latency in [0, 20] {
        let sandbox = Sandbox::start(records, latency);
        let repeat = if latency == 0 { REPEAT } else { 1 };
        for concurrency in [1, 8] {
            let case = |what: &str| format!("{records}, {latency} ms, c={concurrency}: {what}");
            let fetch = bench.median(repeat, || {
                bench.run(&sandbox, "parquet", concurrency, &[], Some("fetch"))
            });
            let bytes = fetch.json_bytes();
            let parse = bench.median(repeat, || {
                bench.run(&sandbox, "parquet", concurrency, &[], Some("parse"))
            });
            row(&case("fetch floor"), records, bytes, &fetch, &fetch, &parse);
            row(&case("parse floor"), records, bytes, &parse, &fetch, &parse);
            for format in ["parquet", "csv"] {
                let m = bench.median(repeat, || {
                    bench.run(&sandbox, format, concurrency, &[], None)
                });
                row(&case(format), records, bytes, &m, &fetch, &parse);
                if latency == 20 && format == "parquet" {
                    speedup_at_20[usize::from(concurrency == 8)] = m.wall;
                }
            }
        }
    }

    let sandbox = Sandbox::start(big, 0);
    let fetch = bench.run(&sandbox, "parquet", 8, &[], Some("fetch"));
    let parse = bench.run(&sandbox, "parquet", 8, &[], Some("parse"));
    let m = bench.run(&sandbox, "parquet", 8, &[], None);
    row(
        &format!("{big}, 0 ms, c=8: parquet"),
        big,
        fetch.json_bytes(),
        &m,
        &fetch,
        &parse,
    );
    drop(sandbox);

    println!(
        "\nAt 20 ms, Parquet with concurrency 8 is {:.1}× as fast as with concurrency 1.",
        speedup_at_20[0] / speedup_at_20[1]
    );

    println!("\nParquet settings, {records} records, 0 ms, c=8 (median of {REPEAT}):\n");
    println!("| compression | dictionary | wall s | CPU s | size MB |");
    println!("|---|---|---|---|---|");
    let sandbox = Sandbox::start(records, 0);
    let codecs = [
        ("zstd", Some("1")),
        ("zstd", Some("3")),
        ("zstd", Some("6")),
        ("zstd", Some("9")),
        ("snappy", None),
        ("none", None),
    ];
    for (codec, level) in codecs {
        for dictionary in ["auto", "on", "off"] {
            let mut settings = vec![
                ("OUTPUT__COMPRESSION", codec),
                ("OUTPUT__DICTIONARY", dictionary),
            ];
            settings.extend(level.map(|l| ("OUTPUT__COMPRESSION_LEVEL", l)));
            let m = bench.median(REPEAT, || {
                bench.run(&sandbox, "parquet", 8, &settings, None)
            });
            println!(
                "| {codec}{} | {dictionary} | {:.2} | {:.2} | {:.2} |",
                level.map(|l| format!(" {l}")).unwrap_or_default(),
                m.wall,
                m.cpu,
                m.output_bytes as f64 / 1e6
            );
        }
    }
    drop(sandbox);

    let jobs = Path::new(ROOT).join("jobs");
    let runs = 20;
    let started = Instant::now();
    for _ in 0..runs {
        let status = Command::new(BIN)
            .arg("validate")
            .arg(&jobs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("apisnap runs");
        assert!(status.success(), "apisnap validate jobs/ failed");
    }
    println!(
        "\n`apisnap validate jobs/`: {:.1} ms per run, mean of {runs}",
        started.elapsed().as_secs_f64() * 1000.0 / runs as f64
    );
}

fn row(case: &str, records: u64, bytes: u64, m: &Measured, fetch: &Measured, parse: &Measured) {
    let range = m
        .range
        .map(|(low, high)| format!(" ({low:.2}-{high:.2})"))
        .unwrap_or_default();
    println!(
        "| {case} | {:.2}{range} | {:.0} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} |",
        m.wall,
        records as f64 / m.wall,
        bytes as f64 / 1e6 / m.wall,
        m.cpu,
        m.rss_mb,
        m.wall / fetch.wall,
        m.wall / parse.wall
    );
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Machine: {cores} cores ({model}), {mem_gib:.0} GiB, {rustc}, release build, {}.",
        chrono::Utc::now().format("%Y-%m-%d")
    )
}

struct Bench {
    dir: PathBuf,
}

impl Bench {
    /// A jobs directory with one job per format: the sandbox's standard record, page size
    /// 1,000, defaults otherwise.
    fn new(dir: &Path) -> Bench {
        let jobs = dir.join("jobs");
        std::fs::create_dir_all(jobs.join("providers")).expect("jobs dir");
        std::fs::copy(
            Path::new(ROOT).join("jobs/providers/seal_metrics.toml"),
            jobs.join("providers/seal_metrics.toml"),
        )
        .expect("the shipped Seal Metrics provider");
        for format in ["parquet", "csv"] {
            let job = format!(
                "provider = \"seal_metrics\"\n\
                 [endpoint]\npath = \"/stats/events\"\nrecords_pointer = \"/data\"\n\
                 [pagination]\ntype = \"offset\"\npage_size = 1000\n\
                 [output]\nformat = \"{format}\"\ndir = \"{}/out/{{run_id}}\"\n",
                dir.display()
            );
            std::fs::write(jobs.join(format!("bench_{format}.toml")), job).expect("job file");
        }
        Bench {
            dir: dir.to_path_buf(),
        }
    }

    /// One `apisnap run` of the `format` job; `settings` are job fields (`OUTPUT__...`).
    fn run(
        &self,
        sandbox: &Sandbox,
        format: &str,
        concurrency: usize,
        settings: &[(&str, &str)],
        floor: Option<&str>,
    ) -> Measured {
        let job = format!("bench_{format}");
        let prefix = format!("APISNAP_JOB_{}", job.to_uppercase());
        let mut command = Command::new(BIN);
        command
            .current_dir(&self.dir)
            .args(["--log-level", "warn", "run", &job])
            .env("SEAL_METRICS_EMAIL", "analyst@example.com")
            .env("SEAL_METRICS_PASSWORD", "sandbox-seal-password")
            .env(
                "APISNAP_PROVIDER_SEAL_METRICS__BASE_URL",
                format!("http://127.0.0.1:{}/seal", sandbox.port),
            )
            .env(format!("{prefix}__CONCURRENCY"), concurrency.to_string());
        for (k, v) in settings {
            command.env(format!("{prefix}__{k}"), v);
        }
        if let Some(floor) = floor {
            command.args(["--floor", floor]);
        }
        let mut m = measure(&mut command);
        let out = self.dir.join("out");
        m.output_bytes = dir_size(&out);
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(self.dir.join("state"));
        m
    }

    /// The run with the median wall time of `n`, with the fastest and slowest wall times.
    fn median(&self, n: usize, mut run: impl FnMut() -> Measured) -> Measured {
        let mut runs: Vec<Measured> = (0..n).map(|_| run()).collect();
        runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
        let range = (runs[0].wall, runs[n - 1].wall);
        let mut median = runs.swap_remove(n / 2);
        median.range = (n > 1).then_some(range);
        median
    }
}
