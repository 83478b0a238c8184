//! TLS as corporate networks have it: the sandbox serves HTTPS with certificates made here
//! (rcgen) by a private CA, sometimes expired, sometimes demanding a client certificate; the
//! binary trusts the CA through `tls.ca_file` or `SSL_CERT_FILE`, presents PEM and PKCS#12
//! client certificates, goes through a proxy by `CONNECT`, and says which check failed and
//! what to do when one does. Logins ride the same client, so the login is the first request
//! that meets each of these.

mod common;

use apisnap::sandbox::{Sandbox, SandboxConfig, SandboxTls};
use common::certs::{Ca, Issued};
use common::tinyproxy::Proxy;
use common::{Workspace, assert_exit, provider_env, text};

const JOB: &str = "seal_metrics_events";
const PROVIDER_FILE: &str = "jobs/providers/seal_metrics.toml";
const RECORDS: u64 = 1_500;

async fn https_sandbox(tls: SandboxTls) -> Sandbox {
    common::start_sandbox(SandboxConfig {
        records: RECORDS,
        tls: Some(tls),
        ..SandboxConfig::default()
    })
    .await
}

/// Appends a `[tls]` table to the Seal Metrics provider file of `ws` (replacing one added
/// before).
fn provider_tls(ws: &Workspace, table: &str) {
    let path = ws.path().join(PROVIDER_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let base = text.split("\n[tls]\n").next().unwrap().to_string();
    std::fs::write(&path, format!("{base}\n[tls]\n{table}\n")).unwrap();
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `args` expecting exit 0, then compares every record written with the sandbox's,
/// in an output directory of its own.
async fn run_and_check(ws: &Workspace, args: &[&str], env: &[(String, String)]) {
    let _ = std::fs::remove_dir_all(ws.path().join("out"));
    assert_exit(&ws.apisnap(args, env).await, 0);
    common::check_output(ws, "parquet", RECORDS);
}

/// A failed run's stderr, after checking that it failed and retried nothing: a refused
/// certificate is refused the same way every time.
fn failed(out: &std::process::Output) -> String {
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("retrying"), "no retries: {stderr}");
    eprintln!("{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_a_private_ca_is_trusted_through_ca_file_or_ssl_cert_file() {
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = ca.write(ws.path(), "corp-ca.pem");
    let sandbox = https_sandbox(ca.server("api.example.test", -1, 30).sandbox(None)).await;
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    assert!(env.iter().any(|(_, v)| v.starts_with("https://127.0.0.1:")));

    // The system's roots do not know the CA.
    let stderr = failed(&ws.apisnap(&["run", JOB], &env).await);
    assert!(
        stderr.contains("not signed by a CA apisnap trusts") && stderr.contains("tls.ca_file"),
        "says which check and what to set: {stderr}"
    );
    assert!(stderr.contains("job `seal_metrics_events`"), "{stderr}");
    assert_eq!(
        sandbox.requests().len(),
        0,
        "no request got past the handshake"
    );

    // `check` names the peer.
    provider_tls(&ws, &format!("ca_file = {:?}", path(&ca_file)));
    let out = ws.apisnap(&["check", JOB], &env).await;
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("TLS 1.3: certificate of CN=api.example.test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("issued by CN=Example Corp Root CA"),
        "{stdout}"
    );
    assert!(stdout.contains("for localhost, 127.0.0.1"), "{stdout}");

    run_and_check(&ws, &["run", JOB], &env).await;

    // The CA alone, without the system's roots.
    provider_tls(
        &ws,
        &format!("ca_file = {:?}\nbuiltin_roots = false", path(&ca_file)),
    );
    assert_exit(&ws.apisnap(&["run", JOB, "--fresh"], &env).await, 0);
    // ... and the system's roots are not consulted: the server's CA in SSL_CERT_FILE, and
    // another in `ca_file`, is refused.
    let other = Ca::new("Someone Else's CA").write(ws.path(), "other-ca.pem");
    provider_tls(
        &ws,
        &format!("ca_file = {:?}\nbuiltin_roots = false", path(&other)),
    );
    let mut system_knows = env.clone();
    system_knows.push(("SSL_CERT_FILE".into(), path(&ca_file)));
    let stderr = failed(&ws.apisnap(&["run", JOB, "--fresh"], &system_knows).await);
    assert!(
        stderr.contains("not signed by a CA apisnap trusts"),
        "{stderr}"
    );
    // Without `builtin_roots = false`, SSL_CERT_FILE's CA is trusted beside `ca_file`'s.
    provider_tls(&ws, &format!("ca_file = {:?}", path(&other)));
    assert_exit(
        &ws.apisnap(&["run", JOB, "--fresh"], &system_knows).await,
        0,
    );

    // No `[tls]` at all: SSL_CERT_FILE, as for curl and Python.
    std::fs::write(
        ws.path().join(PROVIDER_FILE),
        std::fs::read_to_string(ws.path().join(PROVIDER_FILE))
            .unwrap()
            .split("\n[tls]\n")
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut with_var = env.clone();
    with_var.push(("SSL_CERT_FILE".into(), path(&ca_file)));
    run_and_check(&ws, &["run", JOB, "--fresh"], &with_var).await;

    // Another CA's bundle: refused the same way.
    provider_tls(&ws, &format!("ca_file = {:?}", path(&other)));
    let stderr = failed(&ws.apisnap(&["run", JOB, "--fresh"], &env).await);
    assert!(
        stderr.contains("not signed by a CA apisnap trusts"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_and_an_old_tls_version_fail_saying_which() {
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = ca.write(ws.path(), "corp-ca.pem");
    provider_tls(&ws, &format!("ca_file = {:?}", path(&ca_file)));

    let expired = https_sandbox(ca.server("api.example.test", -60, -2).sandbox(None)).await;
    let env = provider_env(&expired, &ws, "seal_metrics");
    let stderr = failed(&ws.apisnap(&["run", JOB], &env).await);
    let on = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        stderr.contains(&format!("the server's certificate expired on {on}")),
        "{stderr}"
    );
    assert!(stderr.contains("renew"), "{stderr}");

    // A gateway that speaks TLS 1.2 only, and a provider that asks for 1.3 at least.
    let old = https_sandbox(SandboxTls {
        tls12_only: true,
        ..ca.server("api.example.test", -1, 30).sandbox(None)
    })
    .await;
    let env = provider_env(&old, &ws, "seal_metrics");
    assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    provider_tls(
        &ws,
        &format!("ca_file = {:?}\nmin_version = \"1.3\"", path(&ca_file)),
    );
    let stderr = failed(&ws.apisnap(&["run", JOB, "--fresh"], &env).await);
    assert!(
        stderr.contains("share no TLS version") && stderr.contains("tls.min_version"),
        "{stderr}"
    );
}

/// A data request (not a login) meets the refused certificate: a provider whose token comes
/// from the environment. It fails at once with the request named (exit 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_request_to_an_untrusted_server_fails_at_once_naming_it() {
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let sandbox = https_sandbox(ca.server("api.example.test", -1, 30).sandbox(None)).await;
    ws.write(
        PROVIDER_FILE,
        "base_url = \"https://api.example.test/\"\n[auth]\ntype = \"bearer\"\n\
         token = \"env:SEAL_TOKEN\"\n",
    );
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("SEAL_TOKEN".into(), "a-token-from-elsewhere".into()));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 4);
    let stderr = failed(&out);
    let port = sandbox.addr().port();
    assert!(
        stderr.contains(&format!("GET https://127.0.0.1:{port}/seal/"))
            && stderr.contains("failed: TLS: the server's certificate is not signed"),
        "{stderr}"
    );
    assert!(!stderr.contains("a-token-from-elsewhere"));
}

/// A gateway that asked for (and got) a client certificate, then fails now and then like
/// any server: those failures are retried, not taken for a refused certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_after_a_client_certificate_handshake_are_retried() {
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = path(&ca.write(ws.path(), "corp-ca.pem"));
    let clients = Ca::new("Example Corp Client CA");
    let sandbox = common::start_sandbox(SandboxConfig {
        records: RECORDS,
        max_page_size: 100,
        tls: Some(
            ca.server("gateway.example.test", -1, 30)
                .sandbox(Some(&clients)),
        ),
        faults: apisnap::sandbox::FaultConfig {
            rate: 0.15,
            seed: 7,
            kinds: vec![
                apisnap::sandbox::Fault::CloseMidBody,
                apisnap::sandbox::Fault::Status503,
            ],
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let (cert, key) = clients
        .client("apisnap@data-team")
        .write(ws.path(), "client");
    provider_tls(
        &ws,
        &format!(
            "ca_file = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
            path(&cert),
            path(&key)
        ),
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let _ = std::fs::remove_dir_all(ws.path().join("out"));
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    assert!(text(&out.stderr).contains("retrying"), "faults were met");
    common::check_output(&ws, "parquet", RECORDS);
}

/// A gateway that asks for a client certificate but takes clients without one: the
/// provider has none, and the faults that follow are retried, not taken for a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_only_wants_a_client_certificate_is_still_retried() {
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = path(&ca.write(ws.path(), "corp-ca.pem"));
    let clients = Ca::new("Example Corp Client CA");
    let sandbox = common::start_sandbox(SandboxConfig {
        records: RECORDS,
        max_page_size: 100,
        tls: Some(SandboxTls {
            client_certificate_optional: true,
            ..ca.server("gateway.example.test", -1, 30)
                .sandbox(Some(&clients))
        }),
        faults: apisnap::sandbox::FaultConfig {
            rate: 0.15,
            seed: 11,
            kinds: vec![apisnap::sandbox::Fault::CloseMidBody],
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    provider_tls(&ws, &format!("ca_file = {ca_file:?}"));
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 0);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("retrying"), "faults were met: {stderr}");
    assert!(!stderr.contains("client certificate"), "{stderr}");
    common::check_output(&ws, "parquet", RECORDS);
}

/// `openssl pkcs12 -export`: a PKCS#12 file as people get them, not one this crate wrote.
fn pkcs12(ws: &Workspace, client: &Issued, password: &str) -> Option<std::path::PathBuf> {
    let (cert, key) = client.write(ws.path(), "client");
    let out = ws.path().join("client.p12");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .args(["-name", "apisnap", "-passout"])
        .arg(format!("pass:{password}"))
        .status();
    match status {
        Ok(s) => {
            assert!(s.success(), "openssl pkcs12 -export failed");
            Some(out)
        }
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "openssl is not installed (.ci/run installs it)"
            );
            eprintln!("openssl is not installed: skipping the PKCS#12 part");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_pem_or_pkcs12_client_certificate() {
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = path(&ca.write(ws.path(), "corp-ca.pem"));
    let clients = Ca::new("Example Corp Client CA");
    let sandbox = https_sandbox(
        ca.server("gateway.example.test", -1, 30)
            .sandbox(Some(&clients)),
    )
    .await;
    let env = provider_env(&sandbox, &ws, "seal_metrics");

    // No client certificate.
    provider_tls(&ws, &format!("ca_file = {ca_file:?}"));
    let stderr = failed(&ws.apisnap(&["run", JOB], &env).await);
    assert!(
        stderr.contains(
            "the server asks for a client certificate (issued by CN=Example Corp Client CA)"
        ) && stderr.contains("tls.client_cert"),
        "names the CA the gateway wants: {stderr}"
    );

    // PEM certificate and key.
    let client = clients.client("apisnap@data-team");
    let (cert, key) = client.write(ws.path(), "client");
    provider_tls(
        &ws,
        &format!(
            "ca_file = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
            path(&cert),
            path(&key)
        ),
    );
    run_and_check(&ws, &["run", JOB], &env).await;

    // A key of another certificate: refused before anything is sent.
    let stranger = clients.client("someone-else");
    let (_, other_key) = stranger.write(ws.path(), "stranger");
    provider_tls(
        &ws,
        &format!(
            "ca_file = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
            path(&cert),
            path(&other_key)
        ),
    );
    let before = sandbox.requests().len();
    let out = ws.apisnap(&["run", JOB, "--fresh"], &env).await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("tls.client_key") && stderr.contains("does not belong"),
        "{stderr}"
    );
    assert!(
        stderr.contains("seal_metrics.toml"),
        "names the file: {stderr}"
    );
    assert_eq!(sandbox.requests().len(), before);

    // A certificate of a CA the gateway does not accept.
    let foreign = Ca::new("Not The Gateway's CA").client("apisnap@data-team");
    let (fcert, fkey) = foreign.write(ws.path(), "foreign");
    provider_tls(
        &ws,
        &format!(
            "ca_file = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
            path(&fcert),
            path(&fkey)
        ),
    );
    let stderr = failed(&ws.apisnap(&["run", JOB, "--fresh"], &env).await);
    assert!(
        stderr.contains("refused apisnap's client certificate"),
        "{stderr}"
    );

    // PKCS#12, its password a secret.
    let password = "p12-s3cret-passphrase";
    let Some(p12) = pkcs12(&ws, &client, password) else {
        return;
    };
    provider_tls(
        &ws,
        &format!(
            "ca_file = {ca_file:?}\npkcs12 = {:?}\npkcs12_password = \"env:CLIENT_P12_PASSWORD\"",
            path(&p12)
        ),
    );
    let mut with_password = env.clone();
    with_password.push(("CLIENT_P12_PASSWORD".into(), password.into()));
    run_and_check(&ws, &["run", JOB, "--fresh"], &with_password).await;

    // The wrong password: a config error naming the field, the password nowhere.
    let mut wrong = env.clone();
    wrong.push(("CLIENT_P12_PASSWORD".into(), "not-the-passphrase".into()));
    let out = ws.apisnap(&["run", JOB, "--fresh"], &wrong).await;
    assert_exit(&out, 2);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("tls.pkcs12") && all.contains("password does not open it"),
        "{all}"
    );
    assert!(!all.contains("not-the-passphrase") && !all.contains(password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_goes_through_the_proxy_by_connect() {
    let ws = Workspace::with_shipped_jobs();
    let Some(proxy) = Proxy::start(ws.path(), "") else {
        return;
    };
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = ca.write(ws.path(), "corp-ca.pem");
    provider_tls(&ws, &format!("ca_file = {:?}", path(&ca_file)));
    let sandbox = https_sandbox(ca.server("api.example.test", -1, 30).sandbox(None)).await;
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("HTTPS_PROXY".into(), proxy.url()));
    run_and_check(&ws, &["run", JOB], &env).await;
    let log = proxy.log();
    let port = sandbox.addr().port();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{port}")),
        "the proxy tunnelled to the sandbox: {log}"
    );
    assert!(!sandbox.requests().is_empty());
}

/// The README's way to try it: `apisnap sandbox --tls-cert … --tls-key … --client-ca …`,
/// then `apisnap check` with the CA and a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_command_serves_https_with_the_given_certificates() {
    use tokio::io::AsyncBufReadExt;
    let ws = Workspace::with_shipped_jobs();
    let ca = Ca::new("Example Corp Root CA");
    let ca_file = path(&ca.write(ws.path(), "corp-ca.pem"));
    let clients = Ca::new("Example Corp Client CA");
    let (server_cert, server_key) = ca
        .server("api.example.test", -1, 30)
        .write(ws.path(), "server");
    let clients_ca = path(&clients.write(ws.path(), "clients-ca.pem"));
    let mut sandbox = common::spawn(
        &ws,
        &[],
        &[
            "sandbox",
            "--port",
            "0",
            "--records",
            "500",
            "--tls-cert",
            &path(&server_cert),
            "--tls-key",
            &path(&server_key),
            "--client-ca",
            &clients_ca,
        ],
    );
    let stdout = sandbox.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let addr = first
        .strip_prefix("sandbox listening on https://")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let (cert, key) = clients
        .client("apisnap@data-team")
        .write(ws.path(), "client");
    provider_tls(
        &ws,
        &format!(
            "ca_file = {ca_file:?}\nclient_cert = {:?}\nclient_key = {:?}",
            path(&cert),
            path(&key)
        ),
    );
    let mut env = vec![
        ("HOME".to_string(), path(ws.path())),
        ("XDG_CACHE_HOME".to_string(), path(&ws.path().join("cache"))),
    ];
    let p = apisnap::env::provider_prefix("seal_metrics");
    env.push((format!("{p}__BASE_URL"), format!("https://{addr}/seal")));
    use apisnap::sandbox::credentials as c;
    env.push(("SEAL_METRICS_EMAIL".into(), c::SEAL_EMAIL.into()));
    env.push(("SEAL_METRICS_PASSWORD".into(), c::SEAL_PASSWORD.into()));
    let out = ws.apisnap(&["check", JOB], &env).await;
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("TLS 1.3: certificate of CN=api.example.test"),
        "{stdout}"
    );
    assert!(stdout.contains("records on the first page"), "{stdout}");
    let _ = sandbox.kill().await;
}
