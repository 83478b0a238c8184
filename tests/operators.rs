//! The operators' kit in `deploy/`: the Prometheus alerting rules pass `promtool check rules`
//! and their unit tests (`promtool test rules`, one or more per alert), and every metric the
//! rules and the Grafana dashboard name is one apisnap writes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use apisnap::sandbox::SandboxConfig;
use common::{Workspace, assert_exit, provider_env, text};

fn deploy(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// `promtool`, from Debian's prometheus package (`.ci/run` installs it).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
    {
        Ok(out) => Some(out),
        Err(_) => {
            // CI installs it: there, a missing tool is a failure, not a skip.
            assert!(
                std::env::var("CI").is_err(),
                "promtool is not installed (.ci/run installs Debian's prometheus package)"
            );
            eprintln!("promtool is not installed: skipping");
            None
        }
    }
}

#[test]
fn the_alerting_rules_check_and_pass_their_unit_tests() {
    let Some(check) = promtool(&["check", "rules", "apisnap.rules.yml"]) else {
        return;
    };
    assert!(
        check.status.success(),
        "{}",
        text(&check.stdout) + &text(&check.stderr)
    );
    let tests = promtool(&["test", "rules", "apisnap.rules.test.yml"]).unwrap();
    assert!(
        tests.status.success(),
        "{}",
        text(&tests.stdout) + &text(&tests.stderr)
    );
    // Every alert has its unit test.
    let rules = std::fs::read_to_string(deploy("prometheus/apisnap.rules.yml")).unwrap();
    let tested = std::fs::read_to_string(deploy("prometheus/apisnap.rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    for alert in alerts {
        assert!(
            tested.contains(&format!("alertname: {alert}")),
            "no unit test for {alert}"
        );
    }
}

/// The `apisnap_…` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("apisnap_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_one_apisnap_writes() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 1_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws
        .apisnap(
            &["run", "--metrics-dir", "metrics", "seal_metrics_events"],
            &env,
        )
        .await;
    assert_exit(&out, 0);
    let prom = std::fs::read_to_string(ws.path().join("metrics/apisnap_seal_metrics_events.prom"))
        .unwrap();
    let written: BTreeSet<String> = prom
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    assert!(
        written.contains("apisnap_schedule_interval_seconds"),
        "{prom}"
    );
    // The shipped job runs daily at 02:30 Madrid time: its longest gap is a day, or two
    // where 02:30 does not exist (the March change of clocks skips it).
    let interval: f64 = prom
        .lines()
        .find(|l| l.starts_with("apisnap_schedule_interval_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((86_400.0..=172_800.0).contains(&interval), "{interval}");

    let rules = std::fs::read_to_string(deploy("prometheus/apisnap.rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/apisnap.dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut named = metric_names(&rules);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}: no query", panel["title"]);
        for t in targets {
            named.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    named.extend(metric_names(&json["templating"].to_string()));
    assert!(named.len() >= 8, "{named:?}");
    let unknown: Vec<_> = named.difference(&written).collect();
    assert!(
        unknown.is_empty(),
        "named but never written: {unknown:?}\n{prom}"
    );
    // What the issue asks the dashboard to show.
    for needed in [
        "apisnap_last_success_timestamp_seconds",
        "apisnap_last_run_records",
        "apisnap_last_run_duration_seconds",
        "apisnap_last_run_retries",
        "apisnap_last_run_reauthentications",
        "apisnap_last_run_success",
    ] {
        assert!(dashboard.contains(needed), "the dashboard shows {needed}");
    }
}
