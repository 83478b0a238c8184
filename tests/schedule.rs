//! The scheduler: fire times, no overlap, coalesced missed runs, a stop that leaves a
//! resumable checkpoint, and the next start resuming it. Jobs really run against the
//! sandbox; only the scheduler's clock is moved by hand (in-process), or real (the binary).

mod common;

use std::sync::Arc;
use std::time::Duration;

use apisnap::env::Env;
use apisnap::run::RunOptions;
use apisnap::sandbox::SandboxConfig;
use apisnap::schedule::{Plan, Why};
use apisnap::scheduler::{Daemon, Event, ManualClock, RunJob, job_schedule};
use chrono::{DateTime, Utc};
use common::{Workspace, assert_exit, check_parquet_snapshot, provider_env, snapshot_dirs, text};
use tokio::sync::{mpsc, watch};

const JOB: &str = "seal_metrics_events";
const RECORDS: u64 = 3_000;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The environment of a seal job every 15 minutes (UTC) against `sandbox`, slow enough that
/// a run lasts over a second: 7 pages of 500 records, one request at a time.
fn env_for(sandbox: &apisnap::sandbox::Sandbox, ws: &Workspace) -> Vec<(String, String)> {
    let mut env = provider_env(sandbox, ws, "seal_metrics");
    for (k, v) in [
        ("SCHEDULE__CRON", "*/15 * * * *"),
        ("SCHEDULE__TIMEZONE", "UTC"),
        ("PAGINATION__PAGE_SIZE", "500"),
        ("CONCURRENCY", "1"),
    ] {
        env.push((format!("APISNAP_JOB_SEAL_METRICS_EVENTS__{k}"), v.into()));
    }
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__STATE_DIR".into(),
        ws.path().join("state").to_string_lossy().into(),
    ));
    env
}

fn lib_env(vars: &[(String, String)]) -> Env {
    let mut env = Env::empty();
    for (k, v) in vars {
        env.set(k, v);
    }
    env
}

/// The daemon's way to run the job: what `apisnap schedule` does, in-process.
fn runner(file: std::path::PathBuf, env: Env, stop: watch::Receiver<bool>) -> RunJob {
    let env = Arc::new(env);
    Arc::new(move |_job: String| {
        let (file, env, stop) = (file.clone(), env.clone(), stop.clone());
        Box::pin(async move {
            let job = apisnap::config::load_job(&file, &env)?.build(&env)?;
            job.run(&RunOptions {
                stop: Some(stop),
                ..RunOptions::default()
            })
            .await
        })
    })
}

/// The next event, failing the test after a generous wait.
async fn next(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event within 60 s")
        .expect("the daemon is alive");
    // Shown with a failure: the events up to it.
    println!("event: {event:?}");
    event
}

/// Skips `Sleeping` events until the one for `until`.
async fn sleeping_until(events: &mut mpsc::UnboundedReceiver<Event>, until: DateTime<Utc>) {
    loop {
        match next(events).await {
            Event::Sleeping { until: Some(t) } if t == until => return,
            Event::Sleeping { .. } => {}
            other => panic!("expected to sleep until {until}, got {other:?}"),
        }
    }
}

/// Skips `Sleeping` events; returns the next other one.
async fn next_action(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    loop {
        match next(events).await {
            Event::Sleeping { .. } => {}
            other => return other,
        }
    }
}

fn started(job: &str, at: &str, missed: u32, why: Why) -> Event {
    Event::Started {
        job: job.into(),
        scheduled_for: utc(at),
        missed,
        why,
    }
}

fn finished_ok(records: u64) -> Event {
    Event::Finished {
        job: JOB.into(),
        exit_code: 0,
        records: Some(records),
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_at_its_times_never_overlaps_and_a_stop_leaves_a_run_the_next_start_resumes() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: RECORDS,
        latency: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let vars = env_for(&sandbox, &ws);
    let env = lib_env(&vars);
    let file = ws.path().join("jobs").join(format!("{JOB}.toml"));
    let def = apisnap::config::load_job(&file, &env).unwrap();

    let clock = ManualClock::new(utc("2026-11-23T10:07:00Z"));
    let plan = Plan::new(
        vec![job_schedule(&def).await.unwrap().unwrap()],
        utc("2026-11-23T10:07:00Z"),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let daemon = Daemon::new(
        clock.clone(),
        plan,
        runner(file.clone(), env.clone(), stop_rx.clone()),
    )
    .with_events(events_tx);
    let handle = tokio::spawn(daemon.run(stop_rx));

    // A job that never ran waits for its first fire time.
    sleeping_until(&mut events, utc("2026-11-23T10:15:00Z")).await;
    clock.set(utc("2026-11-23T10:14:59Z"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.recv())
            .await
            .is_err(),
        "nothing happens a second before the fire time"
    );
    clock.set(utc("2026-11-23T10:15:00Z"));
    assert_eq!(
        next_action(&mut events).await,
        started(JOB, "2026-11-23T10:15:00Z", 0, Why::Scheduled)
    );
    assert_eq!(next_action(&mut events).await, finished_ok(RECORDS));
    sleeping_until(&mut events, utc("2026-11-23T10:30:00Z")).await;

    // Still running at its next fire time: that one is skipped, not run alongside.
    clock.set(utc("2026-11-23T10:30:00Z"));
    assert_eq!(
        next_action(&mut events).await,
        started(JOB, "2026-11-23T10:30:00Z", 0, Why::Scheduled)
    );
    clock.set(utc("2026-11-23T10:45:00Z"));
    assert_eq!(
        next_action(&mut events).await,
        Event::Skipped {
            job: JOB.into(),
            scheduled_for: utc("2026-11-23T10:45:00Z")
        }
    );
    assert_eq!(next_action(&mut events).await, finished_ok(RECORDS));
    sleeping_until(&mut events, utc("2026-11-23T11:00:00Z")).await;

    // The host slept from 10:45 to 13:07: nine fire times passed, one run makes up for them.
    clock.set(utc("2026-11-23T13:07:00Z"));
    assert_eq!(
        next_action(&mut events).await,
        started(JOB, "2026-11-23T13:00:00Z", 8, Why::Scheduled)
    );
    assert_eq!(next_action(&mut events).await, finished_ok(RECORDS));
    sleeping_until(&mut events, utc("2026-11-23T13:15:00Z")).await;

    // Stopped mid-run: the run commits its whole pages and the daemon ends.
    clock.set(utc("2026-11-23T13:15:00Z"));
    assert_eq!(
        next_action(&mut events).await,
        started(JOB, "2026-11-23T13:15:00Z", 0, Why::Scheduled)
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop_tx.send(true).unwrap();
    match next_action(&mut events).await {
        Event::Finished {
            exit_code, error, ..
        } => {
            assert_eq!(exit_code, 130, "{error:?}");
        }
        other => panic!("expected the run to finish, got {other:?}"),
    }
    assert_eq!(next_action(&mut events).await, Event::Stopped);
    let report = handle.await.unwrap();
    assert_eq!(
        (
            report.runs,
            report.skipped,
            report.interrupted,
            report.failed
        ),
        (4, 1, 1, 0)
    );
    let store = apisnap::checkpoint::StateStore::new(ws.path().join("state"), JOB);
    let checkpoint = store
        .load()
        .await
        .unwrap()
        .in_progress
        .expect("a resumable run");
    assert!(
        checkpoint.records > 0 && checkpoint.records < RECORDS,
        "{} records committed",
        checkpoint.records
    );
    assert_eq!(checkpoint.records % 500, 0, "whole pages only");

    // The next start resumes it at once, without waiting for a fire time.
    let clock = ManualClock::new(utc("2026-11-23T13:16:00Z"));
    let plan = Plan::new(
        vec![job_schedule(&def).await.unwrap().unwrap()],
        utc("2026-11-23T13:16:00Z"),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let daemon =
        Daemon::new(clock.clone(), plan, runner(file, env, stop_rx.clone())).with_events(events_tx);
    let handle = tokio::spawn(daemon.run(stop_rx));
    assert_eq!(
        next_action(&mut events).await,
        started(JOB, "2026-11-23T13:16:00Z", 0, Why::Resume)
    );
    assert_eq!(next_action(&mut events).await, finished_ok(RECORDS));
    sleeping_until(&mut events, utc("2026-11-23T13:30:00Z")).await;
    stop_tx.send(true).unwrap();
    assert_eq!(next_action(&mut events).await, Event::Stopped);
    handle.await.unwrap();

    // Four complete snapshots, each with every record exactly once.
    let dirs = snapshot_dirs(&ws.path().join("out"));
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    for dir in dirs {
        assert!(dir.join("_SUCCESS").exists(), "{}", dir.display());
        check_parquet_snapshot(&dir, RECORDS);
    }
    assert!(store.load().await.unwrap().in_progress.is_none());
}

/// The binary: SIGTERM stops `apisnap schedule` cleanly during a run, with the run's pages
/// committed; the next `apisnap run` completes the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_scheduler_with_a_resumable_checkpoint() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(40),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = env_for(&sandbox, &ws);
    let spawn = |args: &[&str]| common::spawn(&ws, &env, args);
    let term = common::terminate;
    let committed = async |ws: &Workspace| -> u64 {
        let store = apisnap::checkpoint::StateStore::new(ws.path().join("state"), JOB);
        store
            .load()
            .await
            .unwrap()
            .in_progress
            .map_or(0, |c| c.records)
    };

    // Waits until the running child has fetched `n` more pages.
    let pages_later = |n: u64| {
        let target = sandbox.stats("seal").data_requests + n;
        let sandbox = &sandbox;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while sandbox.stats("seal").data_requests < target {
                assert!(std::time::Instant::now() < deadline, "no progress in 30 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // An interrupted run, for the scheduler to find.
    let child = spawn(&["run", JOB]);
    pages_later(4).await;
    term(&child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let first = committed(&ws).await;
    assert!(first > 0 && first < records);

    // The scheduler resumes it at once; SIGTERM stops it at a commit point.
    let child = spawn(&["schedule"]);
    pages_later(4).await;
    term(&child);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the scheduler stops within 30 s of SIGTERM")
        .unwrap();
    let stderr = text(&out.stderr);
    assert_exit(&out, 0);
    assert!(stderr.contains("resuming the interrupted run"), "{stderr}");
    assert!(stderr.contains("scheduler stopped"), "{stderr}");
    let second = committed(&ws).await;
    assert!(
        second > first && second < records,
        "the scheduled run committed more pages: {first} then {second}"
    );
    assert_eq!(second % 500, 0, "whole pages only");

    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("resumed"),
        "{}",
        text(&out.stdout)
    );
    check_parquet_snapshot(&snapshot_dirs(&ws.path().join("out"))[0], records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_directory_without_schedules_is_a_config_error() {
    let ws = Workspace::with_shipped_jobs();
    for entry in std::fs::read_dir(ws.path().join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let cut = text.find("[schedule]").unwrap_or(text.len());
            std::fs::write(&path, &text[..cut]).unwrap();
        }
    }
    let out = ws.apisnap(&["schedule"], &[]).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("no job here has a [schedule] table"),
        "{}",
        text(&out.stderr)
    );
}

/// The binary: SIGHUP makes `apisnap schedule` read its jobs directory again — an edited
/// `[schedule]`, a new job — and a directory that no longer loads leaves the schedules as
/// they were, the scheduler still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_jobs_and_their_schedules() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let ws = Workspace::with_shipped_jobs();
    let sandbox = common::start_sandbox(SandboxConfig::default()).await;
    // The shipped schedules, not overridden from the environment.
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let mut child = common::spawn(&ws, &env, &["schedule"]);
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = tx.send(line);
        }
    });
    // Waits for a log line with every one of `parts`; returns it.
    async fn line_with(
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
        parts: &[&str],
    ) -> String {
        let wait = async {
            while let Some(line) = lines.recv().await {
                if parts.iter().all(|p| line.contains(p)) {
                    return line;
                }
            }
            panic!("the scheduler ended before logging {parts:?}");
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no log line with {parts:?} in 30 s"))
    }
    // The first fire time `apisnap next` gives for `job`.
    let next_of = async |job: &str| -> String {
        let out = ws.apisnap(&["next", "-n", "1"], &env).await;
        let text = text(&out.stdout);
        let mut lines = text
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{job} (")));
        lines.nth(1).unwrap().trim().to_string()
    };
    let first = next_of(JOB).await;
    line_with(&mut lines, &["scheduled", JOB, &first]).await;
    line_with(
        &mut lines,
        &["send SIGHUP to read the jobs directory again"],
    )
    .await;
    let hangup = |child: &tokio::process::Child| {
        let pid = child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };

    // Another schedule, and a new job.
    let file = ws.path().join("jobs/seal_metrics_events.toml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        shipped.replace("cron = \"30 2 * * *\"", "cron = \"0 9 * * 1\""),
    )
    .unwrap();
    ws.write(
        "jobs/extra.toml",
        &shipped.replace("cron = \"30 2 * * *\"", "cron = \"15 4 1 * *\""),
    );
    let edited = next_of(JOB).await;
    assert_ne!(edited, first);
    let extra = next_of("extra").await;
    hangup(&child);
    // Jobs are read in file-name order.
    line_with(&mut lines, &["scheduled", "extra", &extra]).await;
    line_with(&mut lines, &["scheduled", JOB, &edited]).await;
    line_with(&mut lines, &["reloaded the jobs directory", "extra"]).await;

    // A broken file: the schedules stay, the scheduler goes on.
    ws.write(
        "jobs/extra.toml",
        "provider = \"seal_metrics\"\n[endpoint\n",
    );
    hangup(&child);
    let error = line_with(&mut lines, &["does not load"]).await;
    assert!(error.contains("extra.toml"), "names the file: {error}");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    common::terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
