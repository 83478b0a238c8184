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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_quotes_back_in_any_encoding_is_never_shown() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 10,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let key = "SEKRET+KEY/789=";
    ws.write(
        "jobs/providers/quoting.toml",
        &format!(
            "base_url = \"{}\"\n[auth]\ntype = \"api_key\"\nkey = \"env:QUOTED_KEY\"\n\
             query_param = \"api_key\"\n",
            sandbox.base_url("seal")
        ),
    );
    ws.write(
        "jobs/quoted.toml",
        "provider = \"quoting\"\n[endpoint]\npath = \"/hostile/quote\"\n\
         [pagination]\ntype = \"none\"\n[output]\ndir = \"out/{job}\"\n",
    );
    let env = vec![
        ("QUOTED_KEY".to_string(), key.to_string()),
        ("RUST_LOG".to_string(), "trace".to_string()),
    ];
    let out = ws.apisnap(&["run", "quoted"], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("400 Bad Request") && stderr.contains("[redacted]"),
        "{stderr}"
    );
    let status = ws.apisnap(&["status", "quoted", "--json"], &env).await;
    let status_text = ws.apisnap(&["status", "quoted"], &env).await;
    // The key as it is, and as the server quoted it: percent-encoded (either hex case),
    // JSON-escaped, base64.
    let forms: Vec<String> = [
        key,
        "SEKRET%2BKEY%2F789%3D",
        "SEKRET%2bKEY%2f789%3d",
        "SEKRET+KEY\\/789=",
        "U0VLUkVUK0tFWS83ODk9",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_absent(&out.stderr, &forms, "the log and the error line");
    assert_absent(&out.stdout, &forms, "the output");
    assert_absent(&status.stdout, &forms, "status --json");
    assert_absent(&status_text.stdout, &forms, "status");
    for file in ws.files() {
        let bytes = std::fs::read(ws.path().join(&file)).unwrap();
        assert_absent(&bytes, &forms, &file.display().to_string());
    }
}
