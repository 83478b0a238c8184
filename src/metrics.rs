//! Metrics for node_exporter's textfile collector: after every run, `<dir>/apisnap_<job>.prom`
//! is replaced (atomically, as the collector asks) with the job's last run: when it ended,
//! whether it succeeded, what it moved, and when the job last succeeded — what an alert on
//! "no successful snapshot for 26 hours" needs. A shard of a sharded run writes its own file
//! (`apisnap_<job>.shard-I-of-N.prom`, labelled `shard`); the job's file is written when the
//! run is finalized.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::RunReport;

type Labels = Vec<(String, String)>;

/// The file the metrics of a job's runs (or of one shard's, named by its state) go to.
pub fn path(dir: &Path, state_name: &str) -> PathBuf {
    dir.join(format!("apisnap_{state_name}.prom"))
}

/// The metrics of `report`, in Prometheus' text format.
pub fn render(
    report: &RunReport,
    last_success: Option<DateTime<Utc>>,
    schedule_interval: Option<f64>,
) -> String {
    let mut registry = Registry::with_prefix("apisnap");
    let mut labels: Labels = vec![("job".into(), report.job.clone())];
    if let Some(shard) = &report.shard {
        labels.push(("shard".into(), shard.to_string()));
    }
    let mut gauge = |name: &str, help: &str, value: f64| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        family.get_or_create(&labels).set(value);
        registry.register(name, help, family);
    };
    let seconds = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
    gauge(
        "last_run_timestamp_seconds",
        "When the job's last run ended (Unix time)",
        seconds(report.finished_at),
    );
    gauge(
        "last_run_success",
        "1 if the job's last run wrote a complete snapshot, else 0",
        if report.outcome == crate::report::Outcome::Success {
            1.0
        } else {
            0.0
        },
    );
    gauge(
        "last_run_exit_code",
        "The exit code of the job's last run (see the README)",
        f64::from(report.exit_code),
    );
    gauge(
        "last_run_duration_seconds",
        "How long the job's last run took",
        report.duration_secs,
    );
    gauge(
        "last_run_records",
        "Records in the last run's snapshot (committed so far, if it did not finish)",
        report.records as f64,
    );
    gauge(
        "last_run_bytes",
        "Bytes of the part files of the last run",
        report.bytes as f64,
    );
    gauge(
        "last_run_retries",
        "Requests retried during the last run",
        report.retries as f64,
    );
    gauge(
        "last_run_reauthentications",
        "Tokens renewed after a 401 during the last run",
        report.reauthentications as f64,
    );
    // A shard's file leaves it out: the job's own file, written when a sharded run is
    // finalized, carries it (a shard's would go stale between finalizations).
    if let Some(t) = last_success.filter(|_| report.shard.is_none()) {
        gauge(
            "last_success_timestamp_seconds",
            "When the job last wrote a complete snapshot (Unix time)",
            seconds(t),
        );
    }
    if let Some(interval) = schedule_interval.filter(|_| report.shard.is_none()) {
        gauge(
            "schedule_interval_seconds",
            "The longest gap between two fire times of the job's [schedule]: how long a \
             success may take to come (the alerting rules use it)",
            interval,
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

/// Replaces the metrics file of the state named `state_name` (the job's, or a shard's). A
/// temporary name without `.prom` keeps the collector from reading a half-written file.
pub fn write(
    dir: &Path,
    state_name: &str,
    report: &RunReport,
    last_success: Option<DateTime<Utc>>,
    schedule_interval: Option<f64>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".apisnap_{state_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(render(report, last_success, schedule_interval).as_bytes())?;
    // Readable by node_exporter, which runs as another user.
    std::fs::set_permissions(
        file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    file.persist(path(dir, state_name)).map_err(|e| e.error)?;
    Ok(())
}

/// Removes the job's shard files that no longer describe it: after a whole run, every
/// shard's; after a sharded run of `count` shards, those of other counts. Left behind, a
/// shard that failed once under another split would alert forever.
pub fn remove_stale_shards(dir: &Path, job: &str, count: Option<u64>) -> std::io::Result<()> {
    let prefix = format!("apisnap_{job}.shard-");
    let keep = count.map(|n| format!("-of-{n}.prom"));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let ours = name.starts_with(&prefix) && name.ends_with(".prom");
        if ours && keep.as_ref().is_none_or(|k| !name.ends_with(k.as_str())) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
