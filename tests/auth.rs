//! Authentication for the five reference providers against the sandbox: token renewal,
//! revocation, wrong credentials, secrets, single-flight login, the re-authentication budget
//! and the token cache.

mod common;

use std::time::Duration;

use apisnap::sandbox::{Sandbox, SandboxConfig, credentials};
use common::{PROVIDER_JOBS, Workspace, assert_exit, check_output, provider_env, text};

async fn sandbox(config: SandboxConfig) -> Sandbox {
    common::start_sandbox(config).await
}

fn page_size(job: &str, size: u64) -> (String, String) {
    (
        format!("{}__PAGINATION__PAGE_SIZE", apisnap::env::job_prefix(job)),
        size.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_renews_a_token_that_expires_mid_run() {
    // 2 s tokens, a run of ~4 s: a few renewals, never one per request.
    let records = 6_000;
    let sandbox = sandbox(SandboxConfig {
        records,
        token_ttl: Duration::from_secs(2),
        latency: Duration::from_millis(30),
        ..SandboxConfig::default()
    })
    .await;
    let runs = PROVIDER_JOBS.map(|(provider, _, job, _)| {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        env.push(page_size(job, 50));
        // One request at a time, so that the run outlasts the tokens.
        env.push((
            format!("{}__CONCURRENCY", apisnap::env::job_prefix(job)),
            "1".into(),
        ));
        // Armor's answer carries no expiry; its configured lifetime follows the sandbox's.
        env.push((
            "APISNAP_PROVIDER_ARMOR__AUTH__TOKEN__LIFETIME_SECS".into(),
            "2".into(),
        ));
        (ws, env, ["run", job])
    });
    let outs =
        futures_util::future::join_all(runs.iter().map(|(ws, env, args)| ws.apisnap(args, env)))
            .await;
    let pages = records / 50 + 1;
    for (((provider, path, _, format), out), (ws, _, _)) in
        PROVIDER_JOBS.iter().zip(&outs).zip(&runs)
    {
        assert_exit(out, 0);
        check_output(ws, format, records);
        let stats = sandbox.stats(path);
        let renewals = stats.logins + stats.reissues;
        assert!(
            renewals >= 3 && renewals <= pages / 5,
            "{provider}: {renewals} logins and reissues for {pages} pages: {stats:?}"
        );
        assert_eq!(
            stats.unauthorized, 0,
            "{provider}: renewed before expiry, no 401"
        );
        if *provider == "armor" {
            assert!(stats.reissues >= 2, "armor reissues its tokens: {stats:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_recovers_from_revoked_tokens() {
    let records = 3_000;
    let sandbox = sandbox(SandboxConfig {
        records,
        revoke_every: Some(10),
        ..SandboxConfig::default()
    })
    .await;
    for (provider, path, job, format) in PROVIDER_JOBS {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        env.push(page_size(job, 100));
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        check_output(&ws, format, records);
        let stats = sandbox.stats(path);
        assert!(stats.unauthorized >= 2, "{provider}: {stats:?}");
        // Every 10th authorized request revokes its token; requests in flight with it all
        // get a 401, and all of them together cause one login.
        let revocations = (stats.data_requests - stats.unauthorized) / 10;
        let relogins = stats.logins - 1;
        assert!(relogins >= 2, "{provider}: {stats:?}");
        assert!(
            relogins <= revocations && relogins + 1 >= revocations,
            "{provider}: one login per revoked token: {stats:?}"
        );
        assert!(stats.unauthorized >= relogins, "{provider}: {stats:?}");
        assert!(
            text(&out.stderr).contains("401: renewing the token"),
            "{provider}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_show_the_providers_own_message() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "seal_metrics",
            "SEAL_METRICS_PASSWORD",
            "wrong-seal",
            "Invalid email or password",
        ),
        (
            "armor",
            "ARMOR_PASSWORD",
            "wrong-armor",
            "Invalid username or password",
        ),
        (
            "netography",
            "NETOGRAPHY_SHARED_SECRET",
            "wrong-neto",
            "invalid request token",
        ),
        (
            "spreetail",
            "SPREETAIL_CLIENT_SECRET",
            "wrong-spree",
            "Invalid credentials",
        ),
        (
            "spreetail",
            "SPREETAIL_CLIENT_ID",
            credentials::SPREETAIL_SUSPENDED_CLIENT_ID,
            "/success = false: Account suspended",
        ),
        (
            "kalibrate",
            "KALIBRATE_CLIENT_SECRET",
            "wrong-kali",
            "invalid_client: AADSTS7000215",
        ),
    ];
    for (provider, var, value, message) in cases {
        let job = PROVIDER_JOBS.iter().find(|p| p.0 == provider).unwrap().2;
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        env.retain(|(k, _)| k != var);
        env.push((var.into(), value.into()));
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 3);
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("provider `{provider}`")),
            "{provider}: {err}"
        );
        assert!(
            err.contains(message),
            "{provider}: expected `{message}` in {err}"
        );
        if !value.starts_with("client-") {
            assert!(
                !err.contains(value),
                "{provider}: the wrong secret is echoed: {err}"
            );
        }
        assert!(
            !ws.path().join("out").exists(),
            "{provider}: nothing written"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_leaks_a_secret_at_trace() {
    let sandbox = sandbox(SandboxConfig {
        records: 1_500,
        revoke_every: Some(5),
        token_ttl: Duration::from_secs(1),
        latency: Duration::from_millis(5),
        ..SandboxConfig::default()
    })
    .await;
    use credentials as c;
    let fixed = [
        c::SEAL_PASSWORD,
        c::ARMOR_PASSWORD,
        c::NETOGRAPHY_SHARED_SECRET,
        c::NETOGRAPHY_APPKEY,
        c::SPREETAIL_CLIENT_SECRET,
        c::KALIBRATE_CLIENT_SECRET,
    ];
    for (provider, _, job, _) in PROVIDER_JOBS {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        env.push(page_size(job, 100));
        env.push(("RUST_LOG".into(), "trace".into()));
        // One request at a time: with tokens revoked every 5 requests, a request renewed
        // after a 401 could otherwise meet its fresh token already revoked by the others,
        // which is a second 401 and, by design, a failed run.
        env.push((
            format!("{}__CONCURRENCY", apisnap::env::job_prefix(job)),
            "1".into(),
        ));
        env.push((
            "APISNAP_PROVIDER_ARMOR__AUTH__TOKEN__LIFETIME_SECS".into(),
            "1".into(),
        ));
        env.push((
            "APISNAP_PROVIDER_ARMOR__AUTH__TOKEN__MAX_REAUTH".into(),
            "100".into(),
        ));
        for p in ["SEAL_METRICS", "NETOGRAPHY", "SPREETAIL", "KALIBRATE"] {
            env.push((
                format!("APISNAP_PROVIDER_{p}__AUTH__TOKEN__MAX_REAUTH"),
                "100".into(),
            ));
        }
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        assert!(text(&out.stderr).contains("TRACE"));
        let mut secrets: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        secrets.extend(sandbox.issued_tokens());
        for s in &secrets {
            for (what, bytes) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
                assert!(
                    !text(bytes).contains(s.as_str()),
                    "{provider}: a secret appears in {what}"
                );
            }
        }
        // Output and everything else apisnap wrote, except the token cache, which holds a
        // token by design (owner-only).
        for f in ws.files().iter().filter(|f| !f.starts_with("cache")) {
            let content = std::fs::read(ws.path().join(f)).unwrap();
            for s in &secrets {
                assert!(
                    !content.windows(s.len()).any(|w| w == s.as_bytes()),
                    "{provider}: a secret appears in {}",
                    f.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_an_expired_token_cause_one_login() {
    let sandbox = sandbox(SandboxConfig {
        token_ttl: Duration::from_millis(1500),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = apisnap::env::Env::empty();
    for (k, v) in provider_env(&sandbox, &ws, "seal_metrics") {
        env.set(k, v);
    }
    let def =
        apisnap::config::load_job(&ws.path().join("jobs/seal_metrics_events.toml"), &env).unwrap();
    let provider = def.provider.clone();
    let base = url::Url::parse(&sandbox.base_url("seal")).unwrap();
    let auth = std::sync::Arc::new(provider.auth.build("seal_metrics", &base, &env).unwrap());
    let tls = provider.tls.build(&env).unwrap();
    let client = apisnap::http::Http {
        handshakes: tls.handshakes.clone(),
        client: apisnap::http::client(
            apisnap::USER_AGENT,
            Duration::from_secs(5),
            Duration::from_secs(5),
            &apisnap::http::Proxying::Environment,
            tls,
        )
        .unwrap(),
        retry: provider.retry.clone(),
        max_response_bytes: provider.max_response_bytes,
        via: None,
        peer: Default::default(),
    };
    let burst = || {
        futures_util::future::join_all((0..16).map(|_| {
            let auth = auth.clone();
            let client = client.clone();
            tokio::spawn(async move { auth.credentials(&client).await.unwrap().generation })
        }))
    };
    let first = burst().await;
    assert_eq!(sandbox.stats("seal").logins, 1);
    tokio::time::sleep(Duration::from_millis(1600)).await; // now expired
    let second = burst().await;
    assert_eq!(
        sandbox.stats("seal").logins,
        2,
        "16 callers on an expired token: one login"
    );
    let generation = second[0].as_ref().unwrap();
    assert_ne!(first[0].as_ref().unwrap(), generation);
    // 16 requests rejected with the same token: one re-login.
    let rejected = futures_util::future::join_all((0..16).map(|_| {
        let auth = auth.clone();
        let g = *generation;
        tokio::spawn(async move { auth.rejected(g).await.unwrap() })
    }))
    .await;
    assert!(rejected.iter().all(|r| *r.as_ref().unwrap()));
    burst().await;
    assert_eq!(sandbox.stats("seal").logins, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reauthentication_budget_stops_a_run_that_keeps_being_rejected() {
    let sandbox = sandbox(SandboxConfig {
        records: 5_000,
        revoke_every: Some(1),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "armor");
    env.push(page_size("armor_events", 100));
    env.push(("APISNAP_JOB_ARMOR_EVENTS__CONCURRENCY".into(), "1".into()));
    env.push((
        "APISNAP_PROVIDER_ARMOR__AUTH__TOKEN__MAX_REAUTH".into(),
        "3".into(),
    ));
    let out = ws.apisnap(&["run", "armor_events"], &env).await;
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("re-authenticated 4 times within 600 s"),
        "{err}"
    );
    assert!(err.contains("the budget is 3"), "{err}");
    assert_eq!(
        sandbox.stats("armor").logins,
        4,
        "the first login and three re-authentications"
    );
    // The whole pages received before the stop are committed as a part, for the next run to
    // resume after; nothing else is left, and the snapshot is not complete.
    let written: Vec<_> = ws
        .files()
        .into_iter()
        .filter(|f| f.starts_with("out"))
        .collect();
    assert!(
        written.iter().all(|f| f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")),
        "only committed parts are left: {written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn armor_account_context_is_validated_against_the_users_accounts() {
    let sandbox = sandbox(SandboxConfig {
        records: 300,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "armor");
    env.push((
        "APISNAP_PROVIDER_ARMOR__AUTH__ACCOUNT__ID".into(),
        "42".into(),
    ));
    let out = ws.apisnap(&["run", "armor_events"], &env).await;
    assert_exit(&out, 0);

    env.retain(|(k, _)| k != "APISNAP_PROVIDER_ARMOR__AUTH__ACCOUNT__ID");
    env.push((
        "APISNAP_PROVIDER_ARMOR__AUTH__ACCOUNT__ID".into(),
        "99".into(),
    ));
    let out = ws.apisnap(&["run", "armor_events"], &env).await;
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("account `99` (auth.account.id) is not one of this user's accounts: 7, 42"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_cache_is_owner_only_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = sandbox(SandboxConfig {
        records: 200,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "netography");
    let out = ws.apisnap(&["run", "netography_alerts"], &env).await;
    assert_exit(&out, 0);
    let cache_dir = ws.path().join("cache/apisnap/tokens");
    let files: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1);
    let mode_of = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&files[0]), 0o600);
    // The directory is the owner's alone, and so is the key its names are made with.
    assert_eq!(mode_of(&cache_dir), 0o700);
    assert_eq!(mode_of(&cache_dir.join(".key")), 0o600);
    let cached = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!cached.contains(credentials::NETOGRAPHY_SHARED_SECRET));
    assert!(!cached.contains(credentials::NETOGRAPHY_APPKEY));

    // The second run uses the cached token: no new login.
    let out = ws.apisnap(&["run", "netography_alerts"], &env).await;
    assert_exit(&out, 0);
    assert_eq!(sandbox.stats("netography").logins, 1);

    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    let listing = || {
        std::fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                format!("{} {mode:o}", p.display())
            })
            .collect::<Vec<_>>()
    };
    let before = listing();
    let mut env3 = env.clone();
    env3.push(("RUST_LOG".into(), "apisnap=debug".into()));
    let out = ws.apisnap(&["run", "netography_alerts"], &env3).await;
    if out.status.code() != Some(3) {
        panic!(
            "before: {before:?}\nafter: {:?}\n{}",
            listing(),
            text(&out.stderr)
        );
    }
    let err = text(&out.stderr);
    assert!(
        err.contains("mode 644 lets other users read the token"),
        "{err}"
    );

    // A token file replaced by a link to someone else's file is refused, not followed.
    let elsewhere = ws.path().join("elsewhere.json");
    std::fs::rename(&files[0], &elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &files[0]).unwrap();
    let out = ws.apisnap(&["run", "netography_alerts"], &env).await;
    assert_exit(&out, 3);
    assert!(
        text(&out.stderr).contains("is a symbolic link: refusing it"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kalibrate_gateway_rejects_a_library_user_agent() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "kalibrate");
    env.push((
        "APISNAP_PROVIDER_KALIBRATE__USER_AGENT".into(),
        "python-requests/2.31".into(),
    ));
    let out = ws.apisnap(&["run", "kalibrate_prices"], &env).await;
    assert_exit(&out, 4);
    let err = text(&out.stderr);
    assert!(err.contains("403 Forbidden"), "{err}");
    assert!(
        err.contains("User-Agent that identifies the application"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_mistakes_of_auth_are_named() {
    let ws = Workspace::with_shipped_jobs();
    // Spreetail keeps tokens in memory only.
    let env = vec![(
        "APISNAP_PROVIDER_SPREETAIL__AUTH__TOKEN__CACHE".to_string(),
        "disk".to_string(),
    )];
    let out = ws.apisnap(&["validate", "jobs"], &env).await;
    assert_exit(&out, 2);
    assert!(text(&out.stderr).contains(
        "jobs/providers/spreetail.toml: field `auth.token.cache`: this provider keeps tokens in memory only"
    ));
    // Armor v2's interactive MFA.
    ws.write(
        "jobs/providers/armor.toml",
        "base_url = \"https://api.armor.com\"\n[auth]\ntype = \"interactive_mfa\"\nusername = \"env:ARMOR_USERNAME\"\n",
    );
    let out = ws.apisnap(&["validate", "jobs"], &[]).await;
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "jobs/providers/armor.toml: field `auth.type`: `interactive_mfa` needs a person"
        ),
        "{err}"
    );
    assert!(
        err.contains("`type = \"bearer\"` with `token = \"env:ARMOR_TOKEN\"`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_verifiers_reject_what_the_vendors_reject() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let client = reqwest::Client::new();
    // OAuth: a JSON body, and a wrong grant type.
    let url = sandbox.localhost_url(&format!(
        "/aad/{}/oauth2/v2.0/token",
        credentials::KALIBRATE_TENANT
    ));
    let r = client
        .post(&url)
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let r = client
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", credentials::KALIBRATE_CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    // JWT: a bad signature, a stale iat, a replayed jti.
    let sign = |secret: &str, iat: i64, jti: u64| {
        let claims = serde_json::json!({
            "iat": iat, "jti": jti,
            "appname": credentials::NETOGRAPHY_APPNAME,
            "appkey": credentials::NETOGRAPHY_APPKEY,
            "shortname": credentials::NETOGRAPHY_SHORTNAME,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let token_url = format!("{}/auth/token", sandbox.base_url("netography"));
    let post = |jwt: String| {
        let client = client.clone();
        let url = token_url.clone();
        async move {
            let r = client
                .post(&url)
                .json(&serde_json::json!({"jwt": jwt}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let jti = now as u64 * 1000;
    let (s, body) = post(sign("not-the-secret", now, jti)).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid request token")
    );
    let (s, body) = post(sign(
        credentials::NETOGRAPHY_SHARED_SECRET,
        now - 3600,
        jti + 1,
    ))
    .await;
    assert_eq!(
        (s, body["error"].as_str().unwrap()),
        (401, "request token iat is stale")
    );
    let (s, _) = post(sign(credentials::NETOGRAPHY_SHARED_SECRET, now, jti + 2)).await;
    assert_eq!(s, 200);
    let (s, body) = post(sign(credentials::NETOGRAPHY_SHARED_SECRET, now, jti + 2)).await;
    assert_eq!(
        (s, body["error"].as_str().unwrap()),
        (401, "request token jti was already used")
    );

    // Armor: data without an account context.
    let login = client
        .post(format!("{}/auth/authorize", sandbox.base_url("armor")))
        .json(&serde_json::json!({"userName": credentials::ARMOR_USERNAME, "password": credentials::ARMOR_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let token = client
        .post(format!("{}/auth/token", sandbox.base_url("armor")))
        .json(&serde_json::json!({"code": login["code"], "grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let r = client
        .get(format!("{}/events", sandbox.base_url("armor")))
        .header(
            "Authorization",
            format!("FH-AUTH {}", token["access_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_authenticates_fetches_one_page_and_writes_nothing() {
    let sandbox = sandbox(SandboxConfig {
        records: 5_000,
        ..SandboxConfig::default()
    })
    .await;
    for (provider, path, job, _) in PROVIDER_JOBS {
        let ws = Workspace::with_shipped_jobs();
        let env = provider_env(&sandbox, &ws, provider);
        let before = ws.files();
        let out = ws.apisnap(&["check", job], &env).await;
        assert_exit(&out, 0);
        let stdout = text(&out.stdout);
        assert!(stdout.contains("-> 200"), "{provider}: {stdout}");
        assert!(
            stdout.contains("authentication: ok (1 login)"),
            "{provider}: {stdout}"
        );
        assert!(
            stdout.contains("records on the first page: "),
            "{provider}: {stdout}"
        );
        for field in [
            "id  ", "Int64", "name", "Utf8", "tags", "List(", "address", "Struct(",
        ] {
            assert!(stdout.contains(field), "{provider}: `{field}` in {stdout}");
        }
        assert_eq!(sandbox.stats(path).data_requests, 1, "{provider}: one page");
        // Only the token cache may appear.
        let after: Vec<_> = ws
            .files()
            .into_iter()
            .filter(|f| !f.starts_with("cache"))
            .collect();
        assert_eq!(before, after, "{provider}: check wrote something");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_headers_override_provider_headers_and_the_user_agent_is_apisnaps() {
    let sandbox = sandbox(SandboxConfig {
        records: 50,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    // The provider sends `Accept: application/json`; the endpoint overrides it and adds one.
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__ENDPOINT__HEADERS__ACCEPT".into(),
        "application/vnd.seal+json".into(),
    ));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__ENDPOINT__HEADERS__X-REPORT".into(),
        "full".into(),
    ));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 0);
    let data: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/seal/stats/events"))
        .collect();
    assert!(!data.is_empty());
    for r in data {
        let header = |name: &str| {
            r.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            header("accept"),
            ["application/vnd.seal+json"],
            "endpoint wins, once"
        );
        assert_eq!(header("x-report"), ["full"]);
        assert_eq!(header("user-agent"), [apisnap::USER_AGENT]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_after_a_fresh_login_fails_naming_the_provider_and_credential_sources() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    // Logins succeed, but the data API does not accept this scheme: every request is a 401.
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__AUTH__TOKEN__SCHEME".into(),
        "Token".into(),
    ));
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY".into(),
        "1".into(),
    ));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("provider `seal_metrics`: authentication failed"),
        "{err}"
    );
    assert!(err.contains("even after a fresh login"), "{err}");
    assert!(
        err.contains("email from env:SEAL_METRICS_EMAIL, password from env:SEAL_METRICS_PASSWORD"),
        "{err}"
    );
    assert_eq!(
        sandbox.stats("seal").logins,
        2,
        "one login, one renewal, then stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_in_the_query_never_appears_in_logs_or_errors() {
    let sandbox = sandbox(SandboxConfig::default()).await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "jobs/providers/seal_metrics.toml",
        "base_url = \"https://example.invalid\"\n[auth]\ntype = \"api_key\"\nkey = \"env:SEAL_KEY\"\nquery_param = \"api_key\"\n",
    );
    let key = "k3y-that-must-not-leak-0123456789";
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push(("SEAL_KEY".into(), key.into()));
    env.push(("RUST_LOG".into(), "trace".into()));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    // The sandbox wants a bearer token: a static key cannot be renewed, so it fails at once.
    assert_exit(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("a static credential cannot be renewed"),
        "{err}"
    );
    assert!(err.contains("GET http://127.0.0.1:"), "{err}");
    assert!(!err.contains(key), "the key leaked: {err}");
    // It was sent, though.
    assert!(
        sandbox
            .requests()
            .iter()
            .any(|r| r.target.contains(&format!("api_key={key}")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netographys_jti_can_be_an_integer_or_a_uuid() {
    let sandbox = sandbox(SandboxConfig {
        records: 300,
        ..SandboxConfig::default()
    })
    .await;
    for form in ["integer", "uuid"] {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, "netography");
        env.push(("APISNAP_PROVIDER_NETOGRAPHY__AUTH__JTI".into(), form.into()));
        let out = ws.apisnap(&["run", "netography_alerts"], &env).await;
        assert_exit(&out, 0);
        check_output(&ws, "parquet", 300);
    }
}
