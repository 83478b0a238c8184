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
    let mut cmd = tokio::process::Command::new(common::bin());
    cmd.args(["run", "seal_metrics_events"])
        .current_dir(ws.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        child.wait_with_output().await.unwrap().status.code(),
        Some(130)
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["outcome"], "interrupted");
    assert_eq!(report["exit_code"], 130);
    assert!(report["records"].as_u64().unwrap() > 0);

    let out = ws.apisnap(&["status", "--json"], &env).await;
    assert_exit(&out, 0);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seal = all
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "seal_metrics_events")
        .unwrap();
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
