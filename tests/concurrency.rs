//! Requests in flight (issue #17): the adaptive limit rises where latency holds and falls
//! where the server pushes back; a page waiting out a `Retry-After` holds up nothing but
//! itself. Through the binary, against the sandbox on loopback, every value read back.

mod common;

use std::time::Duration;

use apisnap::sandbox::{Fault, FaultConfig, SandboxConfig};
use common::{Workspace, assert_exit, check, only_file, provider_env, text};

const JOB: &str = "seal_metrics_events";

fn set(env: &mut Vec<(String, String)>, field: &str, value: &str) {
    env.push((
        format!("{}__{field}", apisnap::env::job_prefix(JOB)),
        value.into(),
    ));
}

fn report(ws: &Workspace) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(ws.path().join(format!("state/{JOB}.report.json"))).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_high_latency_the_limit_rises_and_every_record_arrives_once() {
    // Small pages, long round trips: the server, not this (debug) build's decoder, sets the
    // pace, so no queue forms and the limit has room to rise.
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(60),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    set(&mut env, "PAGINATION__PAGE_SIZE", "100");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    let report = report(&ws);
    let concurrency = &report["concurrency"];
    assert_eq!(concurrency["adaptive"], true, "{report}");
    // Started at 4; nothing pushed back, so it doubled while every permit was in use.
    let peak = concurrency["peak"].as_u64().unwrap();
    assert!(peak >= 16, "{report}");
    let seen = sandbox.load().peak_in_flight;
    assert!(
        seen >= 12 && seen <= peak,
        "{seen} in flight at the sandbox, {report}"
    );
    assert!(
        text(&out.stderr).contains("concurrency=adaptive,"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_refuses_past_its_capacity_gets_about_that_many() {
    let records = 100_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(20),
        capacity: Some(6),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    set(&mut env, "PAGINATION__PAGE_SIZE", "250");
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__RETRY__BASE_DELAY_MS".into(),
        "20".into(),
    ));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    let report = report(&ws);
    let limit = report["concurrency"]["limit"].as_u64().unwrap();
    let refused = sandbox.load().refused;
    let requests = report["requests"].as_u64().unwrap();
    // 400 pages: each 429 cut the limit by a tenth, so it stays about the capacity and few
    // requests are refused.
    assert!(limit <= 9, "the limit ended at {limit}: {report}");
    assert!(refused > 0, "the capacity was never reached: {report}");
    assert!(
        refused * 5 < requests,
        "{refused} of {requests} requests refused ({:?}): {report}",
        sandbox.load()
    );
    assert_eq!(report["retries"].as_u64().unwrap(), refused, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_slows_under_load_gets_fewer_requests() {
    let records = 60_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(20),
        workers: Some(4),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    set(&mut env, "PAGINATION__PAGE_SIZE", "250");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    let report = report(&ws);
    // Four workers: past four requests, each waits for another's turn and its round trip
    // grows; the limit settles near the workers, far below the maximum of 64. It covers the
    // pages held behind a slow answer too, so it may end a little above the requests in
    // flight; the slow start's second doubling may reach 16 before the queue shows.
    let limit = report["concurrency"]["limit"].as_u64().unwrap();
    let peak = report["concurrency"]["peak"].as_u64().unwrap();
    assert!(limit <= 12, "{report}");
    assert!(peak <= 16, "{report}");
    assert_eq!(report["retries"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_concurrency_is_never_exceeded() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    set(&mut env, "PAGINATION__PAGE_SIZE", "250");
    set(&mut env, "CONCURRENCY", "3");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    assert_eq!(sandbox.load().peak_in_flight, 3);
    let report = report(&ws);
    assert_eq!(
        report["concurrency"],
        serde_json::json!({"adaptive": false, "limit": 3, "peak": 3})
    );
    assert!(text(&out.stderr).contains("concurrency=3 (fixed)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_decoder_is_the_bottleneck_answers_held_stay_within_the_limit() {
    // No latency and large pages: this (debug) build's decoder is far slower than the
    // sandbox, so answers pile up in the fetch stage unless the requests in flight and the
    // pages held share the limit.
    let records = 60_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    set(&mut env, "PAGINATION__PAGE_SIZE", "1000");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    let report = report(&ws);
    let peak = report["concurrency"]["peak"].as_u64().unwrap();
    let held = report["held_pages_peak"].as_u64().unwrap();
    assert!(held <= peak, "{held} pages held, {report}");
    assert_eq!(report["held_on_disk_bytes"], 0, "{report}");
    // Nothing made it rise past its slow start's second doubling: no request waits in the
    // sandbox, and the decoder would not take more.
    assert!(peak <= 16, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_behind_one_waiting_out_a_retry_after_go_on_and_are_held_in_order() {
    let records = 150_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        // The third data request (skip=2000) is answered 429 with `Retry-After: 5`: long
        // enough for every other page to come meanwhile.
        faults: FaultConfig {
            kinds: vec![Fault::RetryAfterSeconds(5)],
            at: vec![2],
            ..FaultConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    // In page order, every value, once.
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    let log: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/seal/stats"))
        .collect();
    let refused = log.iter().position(|r| r.status == 429).expect("a 429");
    let target = log[refused].target.clone();
    let again = log[refused + 1..]
        .iter()
        .position(|r| r.target == target)
        .expect("the 429 was asked again")
        + refused
        + 1;
    assert!(
        log[again].started >= log[refused].finished + Duration::from_millis(4950),
        "asked again before its Retry-After"
    );
    // While it waited, the other pages were asked for and answered: all of them.
    let during = log[refused + 1..again]
        .iter()
        .filter(|r| r.status == 200)
        .count();
    let report = report(&ws);
    assert!(
        during >= 140,
        "{during} pages answered during the wait: {report}"
    );
    // ~200 KB pages: past 16 MiB the held pages went to a temporary file.
    assert!(
        report["held_pages_peak"].as_u64().unwrap() >= 140,
        "{report}"
    );
    assert!(
        report["held_on_disk_bytes"].as_u64().unwrap() > 0,
        "{report}"
    );
}
