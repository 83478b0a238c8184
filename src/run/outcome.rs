//! What a run did, written down after it: the run report beside the state and, with
//! `--metrics-dir`, the node_exporter textfile.

use chrono::{DateTime, Utc};
use std::sync::atomic::Ordering::Relaxed;

use super::{Job, RunOptions, RunSummary};
use crate::Error;
use crate::checkpoint::{StateError, StateStore};
use crate::report::{Outcome, RunReport};
use crate::sink::snapshot::Manifest;
use crate::storage::Location;

impl Job {
    /// Writes the run report beside the state (a shard's beside the shard's), and the
    /// metrics file. A run refused by the lock did nothing and reports nothing, nor does one
    /// that lost the state to another: the report is the running one's to write.
    pub(super) async fn report(
        &self,
        started_at: DateTime<Utc>,
        result: &Result<RunSummary, Error>,
        options: &RunOptions,
    ) {
        if let Err(Error::State {
            source: StateError::Locked { .. } | StateError::Conflict { .. },
            ..
        }) = result
        {
            return;
        }
        let Ok(store) = self.run_state_store(options) else {
            return;
        };
        let state = store.load().await.ok();
        // A shard's metrics leave the last success to the job's, written at finalization.
        let last_success = state
            .as_ref()
            .and_then(|s| s.history.first())
            .map(|r| r.finished_at);
        let progress = state.and_then(|s| s.in_progress);
        let finished_at = Utc::now();
        let auth = self.fetcher.auth();
        let mut report = RunReport {
            job: self.name.clone(),
            shard: options.shard,
            run_id: None,
            outcome: Outcome::Success,
            exit_code: 0,
            error: None,
            started_at,
            finished_at,
            duration_secs: seconds(started_at, finished_at),
            records: 0,
            pages: 0,
            bytes: 0,
            requests: self.fetcher.requests() + self.slicing.as_ref().map_or(0, |s| s.requests()),
            retries: self.fetcher.retries(),
            logins: auth.logins(),
            reauthentications: auth.reauthentications(),
            concurrency: Some(self.concurrency_report()),
            held_pages_peak: self.counters.held_peak.load(Relaxed),
            held_on_disk_bytes: self.counters.spilled.load(Relaxed),
            future_marks: 0,
            snapshot: None,
        };
        match result {
            Ok(s) => {
                report.run_id = Some(s.run_id.clone());
                report.duration_secs = s.duration_secs;
                report.records = s.records;
                report.pages = s.pages;
                report.bytes = s.parts.iter().map(|p| p.bytes).sum();
                report.requests = s.requests;
                report.retries = s.retries;
                report.logins = s.logins;
                report.future_marks = s.future_marks;
                report.snapshot = Some(s.snapshot_dir.clone());
            }
            Err(e) => {
                report.outcome = match e {
                    Error::Interrupted { .. } => Outcome::Interrupted,
                    _ => Outcome::Failed,
                };
                report.exit_code = e.exit_code();
                report.error = Some(e.to_string());
                // The run asked for (a shard's is given, and its checkpoint may be an older
                // run's), else the one resumed.
                report.run_id = options
                    .run_id
                    .clone()
                    .or_else(|| progress.as_ref().map(|c| c.run_id.clone()));
                if let Some(c) = progress {
                    report.records = c.records;
                    report.bytes = c.parts.iter().map(|p| p.bytes).sum();
                    report.snapshot = Some(c.snapshot_dir);
                }
            }
        }
        let split = match options.shard {
            Some(_) => Split::Shard,
            None => Split::Whole,
        };
        // A backfill is a one-off: its metrics would pose as the job's (same labels) and
        // keep the alerts on the job's schedule firing long after it ended.
        let metrics_dir = options
            .metrics_dir
            .as_deref()
            .filter(|_| options.backfill.is_none());
        self.write_report(&store, &report, last_success, metrics_dir, split)
            .await;
    }

    /// The job's own report and metrics for a sharded run just finalized: the run's records
    /// and bytes from its manifest, its requests, retries and logins added up from the
    /// shards' reports (a shard finishing at this very moment may not have written its
    /// report yet).
    pub(super) async fn report_finalized(
        &self,
        main: &StateStore,
        stores: &[StateStore],
        count: u64,
        snapshot: &Location,
        manifest: &Manifest,
        metrics_dir: Option<&std::path::Path>,
    ) {
        let mut reports = Vec::new();
        for store in stores {
            if let Some(r) = crate::report::read(store).await
                && r.run_id.as_deref() == Some(manifest.run_id.as_str())
            {
                reports.push(r);
            }
        }
        let sum = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum();
        let report = RunReport {
            job: self.name.clone(),
            shard: None,
            run_id: Some(manifest.run_id.clone()),
            outcome: Outcome::Success,
            exit_code: 0,
            error: None,
            started_at: manifest.started_at,
            finished_at: manifest.finished_at,
            duration_secs: seconds(manifest.started_at, manifest.finished_at),
            records: manifest.records,
            pages: sum(|r| r.pages),
            bytes: manifest.parts.iter().map(|p| p.bytes).sum(),
            requests: sum(|r| r.requests),
            retries: sum(|r| r.retries),
            logins: sum(|r| r.logins),
            reauthentications: sum(|r| r.reauthentications),
            concurrency: reports
                .iter()
                .filter_map(|r| r.concurrency)
                .max_by_key(|c| c.peak),
            held_pages_peak: reports.iter().map(|r| r.held_pages_peak).max().unwrap_or(0),
            held_on_disk_bytes: sum(|r| r.held_on_disk_bytes),
            future_marks: sum(|r| r.future_marks),
            snapshot: Some(snapshot.clone()),
        };
        let last_success = Some(manifest.finished_at);
        self.write_report(main, &report, last_success, metrics_dir, Split::Of(count))
            .await;
    }

    async fn write_report(
        &self,
        store: &StateStore,
        report: &RunReport,
        last_success: Option<DateTime<Utc>>,
        metrics_dir: Option<&std::path::Path>,
        split: Split,
    ) {
        if let Err(e) = crate::report::write(store, report).await {
            tracing::warn!(job = %self.name, error = %e, "cannot write the run report");
        }
        let Some(dir) = metrics_dir else {
            return;
        };
        let written = crate::metrics::write(
            dir,
            store.state_name(),
            report,
            last_success,
            self.schedule_interval,
        )
        .and_then(|()| match split {
            // After a whole run no shard's file describes the job; after a finalized
            // split, only that split's do.
            Split::Whole => crate::metrics::remove_stale_shards(dir, &self.name, None),
            Split::Of(count) => crate::metrics::remove_stale_shards(dir, &self.name, Some(count)),
            Split::Shard => Ok(()),
        });
        if let Err(e) = written {
            tracing::warn!(job = %self.name, dir = %dir.display(), error = %e, "cannot write the metrics file");
        }
    }
}

/// Which run a report is of, for the metrics files it leaves stale.
enum Split {
    /// A whole run.
    Whole,
    /// One shard's run.
    Shard,
    /// A sharded run of this many shards, finalized.
    Of(u64),
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}
