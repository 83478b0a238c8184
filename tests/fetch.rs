//! Robust fetching against the sandbox: every pagination strategy, faults and retries,
//! Retry-After, concurrency, rate limits, loops and foreign hosts.

mod common;

use std::time::Duration;

use apisnap::sandbox::{Fault, FaultConfig, Sandbox, SandboxConfig};
use common::{Workspace, assert_exit, check, only_file, provider_env, text};

async fn sandbox(config: SandboxConfig) -> Sandbox {
    common::start_sandbox(config).await
}

/// A job `name` on the Seal Metrics provider with this endpoint and pagination (TOML).
fn job(ws: &Workspace, name: &str, provider: &str, endpoint: &str, pagination: &str) {
    ws.write(
        &format!("jobs/{name}.toml"),
        &format!(
            "provider = \"{provider}\"\n[endpoint]\n{endpoint}\n[pagination]\n{pagination}\n\
             [output]\ndir = \"out/{{job}}\"\n"
        ),
    );
}

/// Fast retries for fault tests.
fn fast_retries(env: &mut Vec<(String, String)>, provider: &str) {
    let p = apisnap::env::provider_prefix(provider);
    for (k, v) in [
        ("RETRY__BASE_DELAY_MS", "20"),
        ("RETRY__MAX_DELAY_MS", "200"),
        ("RETRY__MAX_RETRIES", "8"),
        ("TIMEOUT_SECS", "1"),
    ] {
        env.push((format!("{p}__{k}"), v.into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pagination_strategy_reads_every_record() {
    let records = 2_345;
    let sandbox = sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let cases = [
        (
            "page",
            "seal_metrics",
            "path = \"/v2/events/pages\"",
            "type = \"page\"\npage_param = \"page\"\nsize_param = \"per_page\"\npage_size = 97\nfirst_page = 1\ntotal_pages_pointer = \"/total_pages\"",
        ),
        (
            "page_until_empty",
            "seal_metrics",
            "path = \"/v2/events/pages\"",
            "type = \"page\"\npage_size = 97",
        ),
        (
            "cursor",
            "seal_metrics",
            "path = \"/v2/events/cursor\"",
            "type = \"cursor\"\ncursor_param = \"cursor\"\ncursor_pointer = \"/next_cursor\"\nlimit_param = \"limit\"\npage_size = 97",
        ),
        (
            "next_url",
            "seal_metrics",
            "path = \"/v2/events/next\"\nquery = { skip = 0, limit = 97 }",
            "type = \"next_url\"\nnext_pointer = \"/next\"",
        ),
        (
            "link_header",
            "seal_metrics",
            "path = \"/v2/events/link\"\nquery = { page = 1, per_page = 97 }",
            "type = \"link_header\"",
        ),
        (
            "range_header",
            "armor",
            "path = \"/events\"\nrecords_pointer = \"\"",
            "type = \"range_header\"\nunit = \"entities\"\npage_size = 97",
        ),
        (
            "none",
            "seal_metrics",
            "path = \"/v2/events/all\"",
            "type = \"none\"",
        ),
        (
            "offset_in_body",
            "seal_metrics",
            "method = \"POST\"\npath = \"/v2/events/search\"\nbody = { filter = \"all\" }",
            "type = \"offset\"\nparams_in = \"body\"\npage_size = 97\ntotal_pointer = \"/total\"",
        ),
    ];
    for (name, provider, endpoint, pagination) in cases {
        let ws = Workspace::with_shipped_jobs();
        job(&ws, name, provider, endpoint, pagination);
        let env = provider_env(&sandbox, &ws, provider);
        let out = ws.apisnap(&["run", name], &env).await;
        assert_exit(&out, 0);
        let file = only_file(&ws.path().join("out"), "parquet");
        check::parquet(&file, records);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_lose_nothing_and_duplicate_nothing() {
    let records = 100_000;
    let sandbox = sandbox(SandboxConfig {
        records,
        faults: FaultConfig {
            rate: 0.05,
            seed: 42,
            kinds: Fault::all(Duration::from_secs(3)),
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    fast_retries(&mut env, "seal_metrics");
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    // Faults really happened, of several kinds, and each was retried.
    let log = sandbox.requests();
    let failed: Vec<_> = log
        .iter()
        .filter(|r| r.target.starts_with("/seal/stats") && r.status != 200)
        .collect();
    assert!(failed.len() >= 2, "{} failed requests", failed.len());
    let err = text(&out.stderr);
    let retries = err.matches("retrying").count();
    assert!(
        retries >= failed.len(),
        "{retries} retries for {} failures:\n{err}",
        failed.len()
    );
    let kinds = [
        "500 Internal Server Error",
        "502 Bad Gateway",
        "503 Service Unavailable",
        "429 Too Many Requests",
        "not valid JSON",
        "ended early",
        "timed out",
    ];
    let seen: Vec<_> = kinds.iter().filter(|k| err.contains(*k)).collect();
    assert!(seen.len() >= 3, "only {seen:?} among the retries:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    for fault in [Fault::RetryAfterSeconds(1), Fault::RetryAfterDate(1)] {
        let sandbox = sandbox(SandboxConfig {
            records: 800,
            faults: FaultConfig {
                rate: 0.4,
                seed: 3,
                kinds: vec![fault],
                ..Default::default()
            },
            ..SandboxConfig::default()
        })
        .await;
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, "seal_metrics");
        env.push((
            "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE".into(),
            "100".into(),
        ));
        env.push((
            "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
            "1".into(),
        ));
        env.push((
            "APISNAP_PROVIDER_SEAL_METRICS__RETRY__BASE_DELAY_MS".into(),
            "1".into(),
        ));
        env.push((
            "APISNAP_PROVIDER_SEAL_METRICS__RETRY__MAX_DELAY_MS".into(),
            "5000".into(),
        ));
        env.push((
            "APISNAP_PROVIDER_SEAL_METRICS__RETRY__MAX_RETRIES".into(),
            "10".into(),
        ));
        let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
        assert_exit(&out, 0);
        check::parquet(&only_file(&ws.path().join("out"), "parquet"), 800);
        // From the sandbox's log: every retry of a 429 came no earlier than it said.
        let log: Vec<_> = sandbox
            .requests()
            .into_iter()
            .filter(|r| r.target.starts_with("/seal/stats"))
            .collect();
        let mut checked = 0;
        for (i, r) in log.iter().enumerate() {
            if r.status != 429 {
                continue;
            }
            let Some(retry) = log[i + 1..].iter().find(|n| n.target == r.target) else {
                // A request ahead of one waiting is dropped, unretried, once the list is
                // known to end before it.
                let skip: u64 = r
                    .target
                    .split("skip=")
                    .nth(1)
                    .and_then(|s| s.split('&').next()?.parse().ok())
                    .expect("an offset");
                assert!(skip >= 800, "{fault:?}: {} was not retried", r.target);
                continue;
            };
            // A date has whole seconds: the wait is at least what the header means.
            let min = Duration::from_millis(950);
            assert!(
                retry.started >= r.finished + min,
                "{fault:?}: retried {:?} after the 429",
                retry.started - r.finished
            );
            checked += 1;
        }
        assert!(checked >= 1, "{fault:?}: no 429 was served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_requests_in_flight_and_the_output_stays_in_order() {
    let records = 20_000;
    let sandbox = sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "8".into(),
    ));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE".into(),
        "250".into(),
    ));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    let peak = sandbox
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/seal/stats"))
        .map(|r| r.in_flight)
        .max()
        .unwrap();
    assert_eq!(peak, 8, "requests in flight at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_url_on_another_host_is_refused_and_gets_no_credentials() {
    let sandbox = sandbox(SandboxConfig {
        records: 500,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    job(
        &ws,
        "foreign",
        "seal_metrics",
        "path = \"/v2/events/next-foreign\"\nquery = { skip = 0, limit = 100 }",
        "type = \"next_url\"",
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "foreign"], &env).await;
    assert_exit(&out, 4);
    let err = text(&out.stderr);
    assert!(
        err.contains("on host `localhost`, which is not the provider's"),
        "{err}"
    );
    assert!(err.contains("refusing to send credentials there"), "{err}");
    assert!(err.contains("allowed_hosts"), "{err}");
    // Nothing was sent there: the only data request is the first page.
    let data: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/seal/v2"))
        .collect();
    assert_eq!(data.len(), 1, "{data:?}");
    // The first page is committed (the run can resume); the snapshot is not complete.
    let dirs = common::snapshot_dirs(&ws.path().join("out"));
    assert!(!dirs[0].join("_SUCCESS").exists());

    // Allowed explicitly, it is followed.
    ws.write(
        "jobs/providers/seal_metrics.toml",
        &std::fs::read_to_string(ws.path().join("jobs/providers/seal_metrics.toml"))
            .unwrap()
            .replace("[headers]", "allowed_hosts = [\"localhost\"]\n\n[headers]"),
    );
    let out = ws.apisnap(&["run", "foreign"], &env).await;
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("resumed"));
    common::check_parquet_snapshot(&dirs[0], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_fails_fast() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let ws = Workspace::with_shipped_jobs();
    job(
        &ws,
        "looping",
        "seal_metrics",
        "path = \"/v2/events/cursor-loop\"",
        "type = \"cursor\"",
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "looping"], &env).await;
    assert_exit(&out, 4);
    let err = text(&out.stderr);
    assert!(
        err.contains("job `looping`: pagination stopped at cursor same"),
        "{err}"
    );
    assert!(
        err.contains("named `same` as the next page a second time"),
        "{err}"
    );
    assert!(sandbox.stats("seal").data_requests <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_fail_after_retries_naming_the_page_and_the_body() {
    let sandbox = sandbox(SandboxConfig {
        records: 300,
        faults: FaultConfig {
            rate: 1.0,
            seed: 1,
            kinds: vec![Fault::MalformedJson],
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    fast_retries(&mut env, "seal_metrics");
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__RETRY__MAX_RETRIES".into(),
        "2".into(),
    ));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "1".into(),
    ));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 4);
    let err = text(&out.stderr);
    assert!(err.contains("job `seal_metrics_events`"), "{err}");
    assert!(
        err.contains("/seal/stats/events?skip=0&limit=1000 returned 200 OK"),
        "{err}"
    );
    assert!(err.contains("not valid JSON"), "{err}");
    assert!(
        err.contains("the body begins: {\"data\":[{\"id\":0,"),
        "{err}"
    );
    assert_eq!(
        sandbox.stats("seal").data_requests,
        3,
        "the first try and two retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_answers_are_decoded() {
    let sandbox = sandbox(SandboxConfig {
        records: 3_000,
        compress: true,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), 3_000);
    let accepted = sandbox
        .requests()
        .into_iter()
        .find(|r| r.target.starts_with("/seal/stats"))
        .and_then(|r| r.headers.into_iter().find(|(k, _)| k == "accept-encoding"))
        .map(|(_, v)| v)
        .unwrap_or_default();
    for enc in ["gzip", "br", "zstd", "deflate"] {
        assert!(accepted.contains(enc), "accept-encoding: {accepted}");
    }
    // Every page with records was compressed (the empty last one is too small to bother).
    let encoded = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/seal/stats") && r.content_encoding.is_some())
        .count();
    assert!(encoded >= 3, "{encoded} compressed answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_spaces_requests() {
    let sandbox = sandbox(SandboxConfig {
        records: 3_000,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "jobs/providers/seal_metrics.toml",
        &std::fs::read_to_string(ws.path().join("jobs/providers/seal_metrics.toml"))
            .unwrap()
            .replace(
                "[headers]",
                "[rate_limit]\nrequests_per_second = 20\nburst = 1\n\n[headers]",
            ),
    );
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__PAGINATION__PAGE_SIZE".into(),
        "100".into(),
    ));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "8".into(),
    ));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    let starts: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/seal/stats"))
        .map(|r| r.started)
        .collect();
    let n = starts.len() as u32;
    assert!(n >= 31);
    let span = *starts.iter().max().unwrap() - *starts.iter().min().unwrap();
    // 20 per second: n requests need at least (n - 1) / 20 seconds.
    assert!(
        span >= Duration::from_millis(50) * (n - 1) - Duration::from_millis(60),
        "{n} requests in {span:?}"
    );
}
