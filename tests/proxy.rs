//! Behind an egress proxy: a real one (tinyproxy, from Debian's packages) on loopback between
//! the binary and the sandbox. The environment's `HTTP_PROXY` and `NO_PROXY` are honoured, a
//! provider's `[proxy]` (with credentials as secrets) wins over them, logins go through it
//! too, and a proxy that refuses or asks for other credentials fails the run saying so.

mod common;

use apisnap::sandbox::{Sandbox, SandboxConfig};
use common::tinyproxy::{Proxy, VIA};
use common::{Workspace, assert_exit, provider_env, text};

const JOB: &str = "seal_metrics_events";
async fn sandbox() -> Sandbox {
    common::start_sandbox(SandboxConfig {
        records: 2_500,
        ..SandboxConfig::default()
    })
    .await
}

/// How many of the sandbox's requests since `from` came through the proxy, and how many in
/// all; the login's among them.
fn through_proxy(sandbox: &Sandbox, from: usize) -> (usize, usize, usize) {
    let requests = sandbox.requests();
    let seen = &requests[from..];
    let via = |r: &&apisnap::sandbox::RequestRecord| {
        r.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("via") && v.contains(VIA))
    };
    let logins = seen
        .iter()
        .filter(|r| r.target.contains("/auth/"))
        .filter(via)
        .count();
    (seen.iter().filter(via).count(), seen.len(), logins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_proxy_and_no_proxy_are_honoured() {
    let ws = Workspace::with_shipped_jobs();
    let Some(proxy) = Proxy::start(ws.path(), "") else {
        return;
    };
    let sandbox = sandbox().await;
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("HTTP_PROXY".into(), proxy.url()));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    common::check_output(&ws, "parquet", 2_500);
    let (via, all, logins) = through_proxy(&sandbox, 0);
    assert_eq!(via, all, "every request through the proxy");
    assert_eq!(logins, 1, "the login too");

    // NO_PROXY names the sandbox's host: straight there.
    let from = sandbox.requests().len();
    env.push(("NO_PROXY".into(), "127.0.0.1".into()));
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_exit(&out, 0);
    let (via, all, _) = through_proxy(&sandbox, from);
    assert!(all > 0);
    assert_eq!(via, 0, "no request through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_proxy_with_credentials_wins_over_the_environment() {
    let ws = Workspace::with_shipped_jobs();
    let Some(proxy) = Proxy::start(ws.path(), "BasicAuth gateway s3cr3t-proxy-pass") else {
        return;
    };
    let sandbox = sandbox().await;
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    // The environment points elsewhere (nothing listens there): the provider's wins.
    env.push(("HTTP_PROXY".into(), "http://127.0.0.1:9".into()));
    let p = apisnap::env::provider_prefix("seal_metrics");
    env.push((format!("{p}__PROXY__URL"), proxy.url()));
    env.push((format!("{p}__PROXY__USERNAME"), "env:PROXY_USER".into()));
    env.push((format!("{p}__PROXY__PASSWORD"), "env:PROXY_PASSWORD".into()));
    env.push(("PROXY_USER".into(), "gateway".into()));
    env.push(("PROXY_PASSWORD".into(), "s3cr3t-proxy-pass".into()));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let (via, all, logins) = through_proxy(&sandbox, 0);
    assert_eq!((via, logins), (all, 1));

    // Other credentials: the proxy refuses, and the run says it was the proxy.
    env.retain(|(k, _)| k != "PROXY_PASSWORD");
    env.push(("PROXY_PASSWORD".into(), "wrong".into()));
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    // tinyproxy answers 407 and closes before the login's body is sent: the run sees a reset.
    assert!(
        stderr.contains(&format!("(through the proxy {})", proxy.url())),
        "names the proxy: {stderr}"
    );
    assert!(
        !stderr.contains("wrong") && !stderr.contains("s3cr3t"),
        "{stderr}"
    );

    // `url = "none"`: straight to the server, whatever the environment says.
    let from = sandbox.requests().len();
    env.retain(|(k, _)| !k.contains("__PROXY__"));
    env.push((format!("{p}__PROXY__URL"), "none".into()));
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_exit(&out, 0);
    assert_eq!(through_proxy(&sandbox, from).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_fails_the_run_naming_it() {
    let ws = Workspace::with_shipped_jobs();
    // It serves one other address only.
    let Some(proxy) = Proxy::start(ws.path(), "Allow 10.9.9.9") else {
        return;
    };
    let sandbox = sandbox().await;
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("HTTP_PROXY".into(), proxy.url()));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "(through the proxy {}/ from HTTP_PROXY)",
            proxy.url()
        )),
        "names the proxy and where it came from: {stderr}"
    );
    assert_eq!(sandbox.requests().len(), 0, "nothing reached the server");
}
