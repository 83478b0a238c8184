//! `apisnap run` end to end: the real binary, the shipped Seal Metrics job pointed at the
//! sandbox over loopback, and every value of every record read back and compared.

mod common;

use apisnap::sandbox::{Sandbox, SandboxConfig};
use common::{Workspace, assert_exit, check, only_file, seal_env, text};

const RECORDS: u64 = 25_013;

async fn sandbox(records: u64) -> Sandbox {
    common::start_sandbox(SandboxConfig {
        records,
        // The benchmarks' sandbox: every value is still compared with a fresh rendering.
        prerender: true,
        ..SandboxConfig::default()
    })
    .await
}

fn job_env(sandbox: &Sandbox, ws: &Workspace, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = seal_env(sandbox);
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR".into(),
        ws.path()
            .join("out/{job}/{run_id}")
            .to_string_lossy()
            .into(),
    ));
    // 997 does not divide the total: the last page is short.
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE".into(),
        "997".into(),
    ));
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_snapshot_holds_every_record() {
    let sandbox = sandbox(RECORDS).await;
    let ws = Workspace::with_shipped_jobs();
    let out = ws
        .apisnap(
            &["run", "seal_metrics_events"],
            &job_env(&sandbox, &ws, &[]),
        )
        .await;
    assert_exit(&out, 0);
    let file = only_file(&ws.path().join("out"), "parquet");
    assert_eq!(file.file_name().unwrap(), "part-00000.parquet");
    check::parquet(&file, RECORDS);
    assert!(text(&out.stdout).contains(&format!("wrote {RECORDS} records")));
    // No temporary file is left beside it.
    assert!(
        ws.files()
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".tmp")),
        "{:?}",
        ws.files()
    );
    // One login for the whole run; one request per page plus the empty last one, and at most
    // the concurrency limit's worth of speculative requests past the end (no total stated).
    let stats = sandbox.stats("seal");
    assert_eq!(stats.logins, 1);
    let pages = RECORDS.div_ceil(997) + 1;
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path().join("state/seal_metrics_events.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["concurrency"]["adaptive"], true, "{report}");
    let peak = report["concurrency"]["peak"].as_u64().unwrap();
    assert!(
        (pages..=pages + peak).contains(&stats.data_requests),
        "{} requests for {pages} pages",
        stats.data_requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_snapshot_holds_every_record() {
    let sandbox = sandbox(RECORDS).await;
    let ws = Workspace::with_shipped_jobs();
    let env = job_env(
        &sandbox,
        &ws,
        &[("APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__FORMAT", "csv")],
    );
    // `compression` is a Parquet setting: a CSV job must not carry it.
    ws.write(
        "jobs/seal_metrics_events.toml",
        &std::fs::read_to_string(ws.path().join("jobs/seal_metrics_events.toml"))
            .unwrap()
            .replace("compression = \"zstd\"\n", ""),
    );
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    let file = only_file(&ws.path().join("out"), "csv");
    check::csv(&file, RECORDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_caps_its_page_size_loses_nothing() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 5_000,
        max_page_size: 300,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let out = ws
        .apisnap(
            &["run", "seal_metrics_events"],
            &job_env(&sandbox, &ws, &[]),
        )
        .await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_result_is_an_empty_snapshot() {
    let sandbox = sandbox(0).await;
    let ws = Workspace::with_shipped_jobs();
    let out = ws
        .apisnap(
            &["run", "seal_metrics_events"],
            &job_env(&sandbox, &ws, &[]),
        )
        .await;
    assert_exit(&out, 0);
    let file = only_file(&ws.path().join("out"), "parquet");
    check::parquet(&file, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotenv_supplies_credentials_without_overriding_the_environment() {
    let sandbox = sandbox(100).await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        ".env",
        &format!(
            "SEAL_METRICS_EMAIL={}\nSEAL_METRICS_PASSWORD={}\n",
            apisnap::sandbox::credentials::SEAL_EMAIL,
            apisnap::sandbox::credentials::SEAL_PASSWORD
        ),
    );
    let mut env = job_env(&sandbox, &ws, &[]);
    env.retain(|(k, _)| !k.starts_with("SEAL_METRICS_"));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);

    // A variable already set wins over .env: a wrong password in the environment fails.
    env.push(("SEAL_METRICS_PASSWORD".into(), "wrong-password".into()));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_exit_3_with_the_servers_message() {
    let sandbox = sandbox(100).await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = job_env(&sandbox, &ws, &[]);
    env.retain(|(k, _)| k != "SEAL_METRICS_PASSWORD");
    env.push(("SEAL_METRICS_PASSWORD".into(), "not-the-password".into()));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(err.contains("provider `seal_metrics`"), "{err}");
    assert!(err.contains("Invalid email or password"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    // Nothing was written under a final name.
    assert!(!ws.path().join("out").exists() || ws.files().iter().all(|f| !f.starts_with("out")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_exits_4_naming_the_request() {
    let ws = Workspace::with_shipped_jobs();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = vec![
        (
            "APISNAP_PROVIDER_SEAL_METRICS__BASE_URL".to_string(),
            format!("http://127.0.0.1:{port}/seal"),
        ),
        (
            "APISNAP_PROVIDER_SEAL_METRICS__RETRY__BASE_DELAY_MS".into(),
            "10".into(),
        ),
        (
            "APISNAP_PROVIDER_SEAL_METRICS__RETRY__MAX_DELAY_MS".into(),
            "20".into(),
        ),
        (
            "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
            "1".into(),
        ),
    ];
    // No login: the data request itself is what cannot connect.
    ws.write(
        "jobs/providers/seal_metrics.toml",
        "base_url = \"https://example.invalid\"\n[auth]\ntype = \"none\"\n[retry]\nmax_retries = 2\n",
    );
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 4);
    let err = text(&out.stderr);
    assert!(err.contains("job `seal_metrics_events`"), "{err}");
    assert!(
        err.contains(&format!(
            "GET http://127.0.0.1:{port}/seal/stats/events?skip=0&limit=1000"
        )),
        "{err}"
    );
    assert!(err.contains("could not connect"), "{err}");
    assert_eq!(err.matches("retrying").count(), 2, "{err}");
}
