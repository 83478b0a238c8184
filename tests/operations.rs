//! Running unattended: `apisnap next` and `apisnap status`.

mod common;

use std::time::Duration;

use apisnap::sandbox::SandboxConfig;
use chrono::{Datelike, Timelike};
use common::{Workspace, assert_exit, provider_env, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_lists_upcoming_runs_in_each_jobs_time_zone() {
    let ws = Workspace::with_shipped_jobs();
    let out = ws.apisnap(&["next", "-n", "4"], &[]).await;
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let mut seen = 0;
    while let Some(line) = lines.next() {
        if !line.starts_with("spreetail_orders") {
            continue;
        }
        assert_eq!(line, "spreetail_orders (0 6 * * 1-5 in Europe/London):");
        for _ in 0..4 {
            let t = chrono::DateTime::parse_from_rfc3339(lines.next().unwrap().trim()).unwrap();
            let local = t.with_timezone(&chrono_tz::Europe::London);
            assert_eq!((local.hour(), local.minute()), (6, 0), "{t}");
            assert!(local.weekday().number_from_monday() <= 5, "a weekday: {t}");
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "{stdout}");
    assert!(
        stdout.contains("armor_events (@hourly in UTC):"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_last_success_and_a_resumable_run() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 20_000,
        latency: Duration::from_millis(40),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE".into(),
        "5000".into(),
    ));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    let report_path = ws.path().join("state/seal_metrics_events.report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["records"], 20_000);
    assert_eq!(report["pages"], 5);
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(report["logins"].as_u64().unwrap() == 1);
    assert!(
        std::path::Path::new(report["snapshot"].as_str().unwrap())
            .join("_SUCCESS")
            .exists()
    );

    // A second run, stopped with whole pages committed.
    env.retain(|(k, _)| !k.ends_with("__PAGE_SIZE"));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE".into(),
        "500".into(),
    ));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "1".into(),
    ));
    let child = common::spawn(&ws, &env, &["run", "seal_metrics_events"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    common::terminate(&child);
    assert_eq!(
        child.wait_with_output().await.unwrap().status.code(),
        Some(130)
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "interrupted");
    assert_eq!(report["exit_code"], 130);
    assert!(report["records"].as_u64().unwrap() > 0);

    let seal = common::status_of(&ws, &env, "seal_metrics_events").await;
    assert_eq!(seal["last_success"]["records"], 20_000);
    let resumable = &seal["resumable"];
    assert!(resumable["records"].as_u64().unwrap() > 0, "{seal}");
    assert!(
        resumable["position"]
            .as_str()
            .unwrap()
            .starts_with("offset "),
        "{seal}"
    );
    assert!(seal["next_run"].as_str().is_some());
    assert_eq!(seal["last_run"]["outcome"], "interrupted");

    let out = ws.apisnap(&["status"], &env).await;
    assert_exit(&out, 0);
    let human = text(&out.stdout);
    assert!(human.contains("last success: "), "{human}");
    assert!(human.contains("(20000 records)"), "{human}");
    assert!(human.contains("resumes at offset "), "{human}");
    assert!(human.contains("last run: interrupted at "), "{human}");
}

/// With `--log-format json` every stderr line is a JSON object; retries and re-logins are
/// WARN lines naming the job; the run report and the metrics file agree with the snapshot's
/// manifest; and nothing of a progress bar reaches a pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_report_and_metrics_agree_with_what_was_written() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 12_000,
        revoke_every: Some(5),
        faults: apisnap::sandbox::FaultConfig {
            rate: 0.15,
            seed: 7,
            kinds: vec![apisnap::sandbox::Fault::parse("503").unwrap()],
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    for (k, v) in [
        ("PAGINATION__PAGE_SIZE", "500"),
        ("OUTPUT__PART_RECORDS", "5000"),
        ("CONCURRENCY", "1"),
    ] {
        env.push((format!("APISNAP_JOB_SEAL_METRICS_EVENTS__{k}"), v.into()));
    }
    // Fast retries: the vendor's 2 s base would make this test slow.
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__RETRY__BASE_DELAY_MS".into(),
        "10".into(),
    ));
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__RETRY__MAX_RETRIES".into(),
        "8".into(),
    ));
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__AUTH__TOKEN__MAX_REAUTH".into(),
        "20".into(),
    ));
    let metrics = ws.path().join("metrics");
    let out = ws
        .apisnap(
            &[
                "--log-format",
                "json",
                "--metrics-dir",
                metrics.to_str().unwrap(),
                "run",
                "seal_metrics_events",
            ],
            &env,
        )
        .await;
    assert_exit(&out, 0);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains('\r'),
        "no progress bar on a pipe: {stderr}"
    );
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages = |level: &str, message: &str| {
        lines
            .iter()
            .filter(|l| l["level"] == level && l["fields"]["message"] == message)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(messages("INFO", "run started").len(), 1, "{stderr}");
    let finished = messages("INFO", "run finished");
    assert_eq!(finished.len(), 1, "{stderr}");
    let retries = messages("WARN", "retrying");
    assert!(!retries.is_empty(), "15% of requests fail: {stderr}");
    for r in &retries {
        assert_eq!(r["fields"]["job"], "seal_metrics_events");
        assert!(
            r["fields"]["request"]
                .as_str()
                .unwrap()
                .contains("/stats/events")
        );
    }
    let relogins = messages("WARN", "401: renewing the token and retrying");
    assert!(
        !relogins.is_empty(),
        "the token is revoked every 5 requests: {stderr}"
    );

    // The report, the manifest and the summary line tell the same story.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path().join("state/seal_metrics_events.report.json")).unwrap(),
    )
    .unwrap();
    let snapshot = std::path::PathBuf::from(report["snapshot"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("_manifest.json")).unwrap()).unwrap();
    common::check_parquet_snapshot(&snapshot, 12_000);
    assert_eq!(report["outcome"], "success");
    assert_eq!(report["records"], manifest["records"]);
    assert_eq!(report["records"], 12_000);
    assert_eq!(report["run_id"], manifest["run_id"]);
    let part_bytes: u64 = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(report["bytes"], part_bytes);
    let on_disk: u64 = common::parts(&snapshot)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, part_bytes);
    assert_eq!(report["pages"], 25, "24 full pages and the empty one");
    assert_eq!(report["retries"], retries.len() as u64);
    assert_eq!(report["retries"], finished[0]["fields"]["retries"]);
    assert!(report["logins"].as_u64().unwrap() > 1);
    assert_eq!(report["reauthentications"], relogins.len() as u64);
    let summary = text(&out.stdout);
    assert_eq!(summary.lines().count(), 1, "one summary line: {summary}");
    assert!(
        summary.starts_with(&format!(
            "seal_metrics_events: wrote 12000 records ({part_bytes} bytes, 3 parts) to {}",
            snapshot.display()
        )),
        "{summary}"
    );

    // node_exporter's textfile.
    let prom = std::fs::read_to_string(metrics.join("apisnap_seal_metrics_events.prom")).unwrap();
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{job=\"seal_metrics_events\"}} ");
        prom.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in\n{prom}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("apisnap_last_run_success"), 1.0);
    assert_eq!(value("apisnap_last_run_exit_code"), 0.0);
    assert_eq!(value("apisnap_last_run_records"), 12_000.0);
    assert_eq!(value("apisnap_last_run_bytes"), part_bytes as f64);
    assert_eq!(value("apisnap_last_run_retries"), retries.len() as f64);
    let finished_at = chrono::DateTime::parse_from_rfc3339(report["finished_at"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    assert!((value("apisnap_last_run_timestamp_seconds") - finished_at).abs() < 1.0);
    assert!(value("apisnap_last_success_timestamp_seconds") > 0.0);
    assert!(
        !std::fs::read_dir(&metrics).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );

    // A failed run keeps the last success time and says it failed.
    let mut bad = env.clone();
    bad.retain(|(k, _)| k != "SEAL_METRICS_PASSWORD");
    bad.push(("SEAL_METRICS_PASSWORD".into(), "wrong".into()));
    let out = ws
        .apisnap(
            &[
                "--metrics-dir",
                metrics.to_str().unwrap(),
                "run",
                "seal_metrics_events",
            ],
            &bad,
        )
        .await;
    assert_exit(&out, 3);
    let before = value("apisnap_last_success_timestamp_seconds");
    let prom = std::fs::read_to_string(metrics.join("apisnap_seal_metrics_events.prom")).unwrap();
    assert!(
        prom.contains("apisnap_last_run_success{job=\"seal_metrics_events\"} 0"),
        "{prom}"
    );
    assert!(
        prom.contains("apisnap_last_run_exit_code{job=\"seal_metrics_events\"} 3"),
        "{prom}"
    );
    assert!(
        prom.contains(&format!(
            "apisnap_last_success_timestamp_seconds{{job=\"seal_metrics_events\"}} {before}"
        )),
        "{prom}"
    );
}

/// On a terminal (a pseudo-terminal from `script`), a run draws its progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_a_progress_bar() {
    if !common::have_script() {
        return;
    }
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 8_000,
        latency: Duration::from_millis(60),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "1".into(),
    ));
    let screen = common::on_terminal(&ws, &env, "run seal_metrics_events").await;
    assert!(screen.contains("records/s"), "{screen}");
    // The concurrency chosen (fixed here).
    assert!(screen.contains("1 in flight at most"), "{screen}");
    assert!(
        screen.contains("seal_metrics_events: wrote 8000 records"),
        "{screen}"
    );
    assert!(!screen.contains("ETA"), "no total stated, no bar: {screen}");

    // The API states its total: a bar with percent and the time left.
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__TOTAL_POINTER".into(),
        "/total".into(),
    ));
    let screen = common::on_terminal(&ws, &env, "run seal_metrics_events").await;
    assert!(screen.contains("% ETA"), "{screen}");
    assert!(screen.contains("[====="), "a bar: {screen}");
    // No estimate before there is a rate to make it from (it said "0% ETA 0s").
    assert!(!screen.contains(" 0% ETA"), "{screen}");
}

/// The benchmark floors send a run's requests and keep nothing: no snapshot, no state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_floors_fetch_every_page_and_write_nothing() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 2_345,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    // A fixed limit: the adaptive one may double before the end shows, and the bound below
    // is about the floors, not the controller.
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "4".into(),
    ));
    for floor in ["fetch", "parse"] {
        let out = ws
            .apisnap(&["run", "--floor", floor, "seal_metrics_events"], &env)
            .await;
        assert_exit(&out, 0);
        let stdout = text(&out.stdout);
        assert!(stdout.contains(": 4 pages, 2345 records, "), "{stdout}");
    }
    assert!(!ws.path().join("out").exists());
    assert!(!ws.path().join("state").exists());
    // 4 pages per floor, plus at most `concurrency` (4) speculative requests past the end.
    let requests = sandbox.stats("seal").data_requests;
    assert!((8..=16).contains(&requests), "{requests} requests");
}
