//! Secrets never leave the process: not in logs (at TRACE), errors, or output files.

mod common;

use apisnap::sandbox::{SandboxConfig, credentials};
use common::{Workspace, assert_exit, seal_env, text};

fn assert_absent(haystack: &[u8], secrets: &[String], what: &str) {
    for s in secrets {
        assert!(
            !haystack.windows(s.len()).any(|w| w == s.as_bytes()),
            "a secret appears in {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_trace_logs_errors_or_output() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 3_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    for format in ["parquet", "csv"] {
        let mut env = seal_env(&sandbox);
        env.push(("RUST_LOG".into(), "trace".into()));
        env.push((
            "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR".into(),
            ws.path().join("out").join(format).to_string_lossy().into(),
        ));
        if format == "csv" {
            ws.write(
                "jobs/seal_metrics_events.toml",
                &std::fs::read_to_string(ws.path().join("jobs/seal_metrics_events.toml"))
                    .unwrap()
                    .replace("format = \"parquet\"", "format = \"csv\"")
                    .replace("compression = \"zstd\"\n", ""),
            );
        }
        let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
        assert_exit(&out, 0);
        assert!(
            text(&out.stderr).contains("TRACE"),
            "logging really was at TRACE"
        );
        let mut secrets = vec![credentials::SEAL_PASSWORD.to_string()];
        secrets.extend(sandbox.issued_tokens());
        assert!(!sandbox.issued_tokens().is_empty());
        assert_absent(&out.stderr, &secrets, "the log");
        assert_absent(&out.stdout, &secrets, "stdout");
        for f in ws.files() {
            let bytes = std::fs::read(ws.path().join(&f)).unwrap();
            assert_absent(&bytes, &secrets, &f.display().to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_login_shows_no_secret() {
    let sandbox = common::start_sandbox(SandboxConfig::default()).await;
    let ws = Workspace::with_shipped_jobs();
    let wrong = "Wr0ng-Passw0rd-Value".to_string();
    let mut env = seal_env(&sandbox);
    env.retain(|(k, _)| k != "SEAL_METRICS_PASSWORD");
    env.push(("SEAL_METRICS_PASSWORD".into(), wrong.clone()));
    env.push(("RUST_LOG".into(), "trace".into()));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 3);
    assert_absent(
        &out.stderr,
        std::slice::from_ref(&wrong),
        "the error output",
    );
    assert_absent(&out.stdout, &[wrong], "stdout");
}
