//! Against servers that do not agree with the client: capped page sizes, `Link` headers with
//! commas and several lines, empty pages mid-stream, has-more flags as strings, a
//! `Content-Range` that claims more than it sent, a total that lies. Every case runs the
//! real binary and either writes every record (compared value by value) or fails naming what
//! did not add up — never exit 0 with fewer records than the API stated.

mod common;

use apisnap::sandbox::{HOSTILE_CAP, HOSTILE_LIE, SandboxConfig};
use common::{Workspace, assert_exit, check, only_file, provider_env, text};

use common::seal_job as job;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_reads_every_record_from_a_hostile_server() {
    let records = 137;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let cases = [
        // Pages capped at 10 when 50 are asked, with the record total stated: the number
        // of pages follows the server's page size (was: 3 pages, 30 of 137 records).
        (
            "capped_pages",
            "path = \"/hostile/pages\"",
            "type = \"page\"\npage_size = 50\ntotal_pointer = \"/total\"",
        ),
        // Commas inside the URLs, one link per header line, `rel="next"` not first (was:
        // the first page only).
        (
            "link_with_commas",
            "path = \"/hostile/link\"\nquery = { page = 1, per_page = 50, fields = \"id,name\" }",
            "type = \"link_header\"",
        ),
        // Every third page empty but with a cursor and `has_more: "1"`/`"yes"` (was: the
        // run ended at the first empty page; the strings read as false).
        (
            "cursor_with_empty_pages",
            "path = \"/hostile/cursor\"",
            "type = \"cursor\"\ncursor_pointer = \"/next_cursor\"\nlimit_param = \"limit\"\n\
             page_size = 50\nhas_more_pointer = \"/has_more\"",
        ),
        // An empty page mid-stream with a next URL and `has_more: true`.
        (
            "next_url_with_an_empty_page",
            "path = \"/hostile/next\"\nquery = { skip = 0, limit = 50 }",
            "type = \"next_url\"\nnext_pointer = \"/next\"\nhas_more_pointer = \"/has_more\"",
        ),
        // At most 10 records for a range of 50, and a Content-Range that claims all 50, the
        // last one ending at u64::MAX (was: 1 record in 5 written; then a wrap to 0).
        (
            "short_ranges",
            "path = \"/hostile/range\"\nrecords_pointer = \"\"",
            "type = \"range_header\"\nunit = \"entities\"\npage_size = 50",
        ),
    ];
    for (name, endpoint, pagination) in cases {
        let ws = Workspace::with_shipped_jobs();
        job(&ws, name, endpoint, pagination, "");
        let env = provider_env(&sandbox, &ws, "seal_metrics");
        let out = ws.apisnap(&["run", name], &env).await;
        assert_exit(&out, 0);
        let file = only_file(&ws.path().join("out"), "parquet");
        // Every record, each once, every value as generated.
        check::parquet(&file, records);
    }
}

// The server really caps below the page size the jobs above ask for.
const _: () = assert!(HOSTILE_CAP < 50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_the_records_do_not_reach_fails_the_run_unless_the_job_accepts_it() {
    let records = 120;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let pagination = "type = \"offset\"\npage_size = 50\ntotal_pointer = \"/total\"";
    job(&ws, "lying", "path = \"/hostile/lying\"", pagination, "");
    let out = ws.apisnap(&["run", "lying"], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    let stated = records + HOSTILE_LIE;
    assert!(
        stderr.contains(&format!(
            "stated {stated} records but the run wrote {records}"
        )),
        "{stderr}"
    );
    let snapshot = ws.path().join("out/lying");
    assert!(!snapshot.join("_SUCCESS").exists(), "not marked complete");
    assert!(!ws.path().join("out/latest.json").exists());
    // The committed parts stay, and a resumed run (nothing left to fetch) checks the same.
    let out = ws.apisnap(&["run", "lying"], &env).await;
    assert_exit(&out, 4);

    // The job accepts the difference: complete, with a warning and both numbers kept.
    job(
        &ws,
        "lying",
        "path = \"/hostile/lying\"",
        pagination,
        "on_count_mismatch = \"warn\"",
    );
    let out = ws.apisnap(&["run", "lying"], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("differ from the count"),
        "{}",
        text(&out.stderr)
    );
    assert!(snapshot.join("_SUCCESS").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["records"], records);
    assert_eq!(manifest["stated_records"], stated);
    check::parquet(&only_file(&snapshot, "parquet"), records);
}

/// Everything a run leaves that a person or a log collector reads: its output, the state,
/// the run report, `status --json`.
async fn everything_shown(
    ws: &Workspace,
    env: &[(String, String)],
    outputs: &[&std::process::Output],
) -> String {
    let mut all = String::new();
    for out in outputs {
        all.push_str(&text(&out.stdout));
        all.push_str(&text(&out.stderr));
    }
    for file in ws.files() {
        if file.extension().is_some_and(|e| e == "json") {
            all.push_str(&std::fs::read_to_string(ws.path().join(&file)).unwrap());
        }
    }
    let status = ws.apisnap(&["status", "--json"], env).await;
    all.push_str(&text(&status.stdout));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_server_echoes_in_its_next_urls_are_never_shown_stored_or_sent_twice() {
    use apisnap::sandbox::HOSTILE_API_KEY;
    let records = 137;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: std::time::Duration::from_millis(60),
        ..SandboxConfig::default()
    })
    .await;
    let endpoint = "path = \"/hostile/echo\"\nquery = { skip = 0, limit = 10 }";
    let pagination = "type = \"next_url\"\nnext_pointer = \"/next\"";

    // A bearer token, echoed as `access_token=…`; and a static key sent in the query,
    // echoed as `api_key=…`.
    for keyed in [false, true] {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, "seal_metrics");
        env.push(("APISNAP_LOG".into(), "debug".into()));
        let name = if keyed { "keyed" } else { "bearer" };
        let extra = if keyed {
            ws.write(
                "jobs/providers/keyed.toml",
                &format!(
                    "base_url = \"{}\"\n[auth]\ntype = \"api_key\"\nkey = \"env:HOSTILE_KEY\"\n\
                     query_param = \"api_key\"\n",
                    sandbox.base_url("seal")
                ),
            );
            env.push(("HOSTILE_KEY".into(), HOSTILE_API_KEY.into()));
            "provider = \"keyed\""
        } else {
            ""
        };
        let job_text = format!(
            "{}\n[endpoint]\n{endpoint}\n[pagination]\n{pagination}\n[output]\ndir = \"out/{{job}}\"\n",
            if keyed {
                extra
            } else {
                "provider = \"seal_metrics\""
            }
        );
        ws.write(&format!("jobs/{name}.toml"), &job_text);

        // Stopped mid-run, so that the checkpoint holds a server's URL; then resumed.
        let child = common::spawn(&ws, &env, &["run", name]);
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        common::terminate(&child);
        let stopped = child.wait_with_output().await.unwrap();
        assert_eq!(
            stopped.status.code(),
            Some(130),
            "{}",
            text(&stopped.stderr)
        );
        let state = std::fs::read_to_string(ws.path().join(format!("state/{name}.json"))).unwrap();
        assert!(
            state.contains("hostile/echo?skip="),
            "a server URL is kept: {state}"
        );
        let finished = ws.apisnap(&["run", name], &env).await;
        assert_exit(&finished, 0);
        common::check_parquet_snapshot(&ws.path().join("out").join(name), records);

        let shown = everything_shown(&ws, &env, &[&stopped, &finished]).await;
        assert!(shown.contains("hostile/echo?skip="), "URLs were logged");
        let mut secrets = sandbox.issued_tokens();
        secrets.push(HOSTILE_API_KEY.to_string());
        for secret in &secrets {
            assert!(
                !shown.contains(secret.as_str()),
                "{name}: a credential was shown"
            );
        }
        assert!(!shown.contains("access_token="), "{name}");
        // Each request carries the key once, where the provider says, and no token in its URL.
        for r in sandbox
            .requests()
            .iter()
            .filter(|r| r.target.starts_with("/seal/hostile/echo"))
        {
            assert!(!r.target.contains("access_token="), "{}", r.target);
            let keys = r.target.matches("api_key=").count();
            assert!(keys <= 1, "sent twice: {}", r.target);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_url_on_another_port_of_the_same_host_gets_no_credentials() {
    let sandbox = common::start_sandbox(SandboxConfig::default()).await;
    // Something listens on the other port, to see whether apisnap connects there.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = elsewhere.local_addr().unwrap().port();
    let ws = Workspace::with_shipped_jobs();
    job(
        &ws,
        "other_port",
        &format!("path = \"/hostile/other-port\"\nquery = {{ to = {port} }}"),
        "type = \"next_url\"\nnext_pointer = \"/next\"",
        "",
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "other_port"], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("on port {port}, which is not the provider's")),
        "{stderr}"
    );
    assert!(
        stderr.contains("refusing to send credentials there"),
        "{stderr}"
    );
    let connected =
        tokio::time::timeout(std::time::Duration::from_millis(200), elsewhere.accept()).await;
    assert!(connected.is_err(), "apisnap connected to the other port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_kind_rides_out_faults_on_its_login_endpoints() {
    use apisnap::sandbox::{Fault, FaultConfig};
    let records = 3_000;
    // Half the login and token requests fail: 500, 503, 429 with Retry-After, a reset.
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        login_faults: FaultConfig {
            rate: 0.5,
            seed: 7,
            kinds: ["500", "503", "429", "close"]
                .iter()
                .map(|f| Fault::parse(f).unwrap())
                .collect(),
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    for (provider, path, job, format) in common::PROVIDER_JOBS {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, provider);
        let p = apisnap::env::provider_prefix(provider);
        for (k, v) in [
            ("RETRY__BASE_DELAY_MS", "20"),
            ("RETRY__MAX_DELAY_MS", "1200"),
            ("RETRY__MAX_RETRIES", "8"),
        ] {
            env.push((format!("{p}__{k}"), v.into()));
        }
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        common::check_output(&ws, format, records);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("retrying the login request"),
            "{provider}: the faults reached its login:\n{stderr}"
        );
        let _ = path;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_token_lifetimes_are_clamped_and_a_login_storm_is_stopped() {
    let records = 2_000;
    // Login answers that state a lifetime of 1e300 seconds (the token really lives an hour).
    let forever = common::start_sandbox(SandboxConfig {
        records,
        stated_lifetime: Some(serde_json::json!(1e300)),
        ..SandboxConfig::default()
    })
    .await;
    let stating = [
        ("netography", "netography_alerts", "parquet"),
        ("spreetail", "spreetail_orders", "csv"),
        ("kalibrate", "kalibrate_prices", "parquet"),
    ];
    for (provider, job, format) in stating {
        let ws = Workspace::with_shipped_jobs();
        let env = provider_env(&forever, &ws, provider);
        let out = ws.apisnap(&["run", job], &env).await;
        assert_exit(&out, 0);
        common::check_output(&ws, format, records);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("the token's lifetime is out of range"),
            "{provider}: a WARN says so:\n{stderr}"
        );
    }

    // A lifetime stated as 0 (or negative): clamped to a second, every request would log in
    // again; the budget of logins stops the run before the credentials go out a 4th time.
    for stated in [serde_json::json!(0), serde_json::json!(-5)] {
        let zero = common::start_sandbox(SandboxConfig {
            records,
            stated_lifetime: Some(stated.clone()),
            latency: std::time::Duration::from_millis(150),
            ..SandboxConfig::default()
        })
        .await;
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&zero, &ws, "netography");
        let p = apisnap::env::provider_prefix("netography");
        env.push((format!("{p}__AUTH__TOKEN__MAX_LOGINS"), "3".into()));
        let job = apisnap::env::job_prefix("netography_alerts");
        env.push((format!("{job}__CONCURRENCY"), "1".into()));
        env.push((format!("{job}__PAGINATION__PAGE_SIZE"), "100".into()));
        let out = ws.apisnap(&["run", "netography_alerts"], &env).await;
        assert_exit(&out, 3);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("logged in 3 times") && stderr.contains("auth.token.max_logins"),
            "stated {stated}: {stderr}"
        );
        assert_eq!(zero.stats("netography").logins, 3, "stated {stated}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_refused_for_its_credentials_is_sent_once() {
    let sandbox = common::start_sandbox(SandboxConfig::default()).await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.retain(|(k, _)| k != "SEAL_METRICS_PASSWORD");
    env.push(("SEAL_METRICS_PASSWORD".into(), "wrong".into()));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 3);
    let logins = sandbox
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/seal/auth/login"))
        .count();
    assert_eq!(logins, 1, "a 401 on the login is not retried");
    assert!(
        !text(&out.stderr).contains("retrying"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_past_max_response_bytes_is_refused_before_it_fills_memory() {
    // 256 MiB of page, a few hundred kilobytes on the wire.
    let sandbox = common::start_sandbox(SandboxConfig {
        compress: true,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    job(
        &ws,
        "huge",
        "path = \"/hostile/huge\"",
        "type = \"none\"",
        "",
    );
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__MAX_RESPONSE_BYTES".into(),
        (8 * 1024 * 1024).to_string(),
    ));
    let out = ws.apisnap(&["run", "huge"], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("answered more than 8 MiB (decompressed)")
            && stderr.contains("max_response_bytes"),
        "{stderr}"
    );
    // Refused at once, not retried: another attempt would be as large.
    assert!(!stderr.contains("retrying"), "{stderr}");
    let served = sandbox
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/seal/hostile/huge"))
        .count();
    assert_eq!(served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fraction_in_an_integer_column_is_invalid_not_truncated() {
    use apisnap::sandbox::HOSTILE_FRACTION_AT;
    let records = 300;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    // Page 1 makes `quantity` an int64 column; page 2 holds 19.99 in it.
    let pagination = "type = \"offset\"\npage_size = 100\ntotal_pointer = \"/total\"";
    job(
        &ws,
        "fractions",
        "path = \"/hostile/fractions\"",
        pagination,
        "",
    );
    let out = ws.apisnap(&["run", "fractions"], &env).await;
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`quantity`") && stderr.contains("19.99"),
        "names the field and the value: {stderr}"
    );

    // With `on_invalid = "null"` the value is written as null, and counted.
    ws.write(
        "jobs/fractions.toml",
        &std::fs::read_to_string(ws.path().join("jobs/fractions.toml"))
            .unwrap()
            .replace("[output]", "[schema]\non_invalid = \"null\"\n[output]"),
    );
    let out = ws.apisnap(&["run", "fractions"], &env).await;
    assert_exit(&out, 0);
    let dir = ws.path().join("out/fractions");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["records"], records);
    assert_eq!(manifest["invalid_values_nulled"]["quantity"], 1);
    let mut quantities = Vec::new();
    for part in common::parts(&dir) {
        for batch in common::read_parquet(&part) {
            let column = batch
                .column_by_name("quantity")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .clone();
            quantities.extend(column.iter());
        }
    }
    assert_eq!(
        quantities[HOSTILE_FRACTION_AT as usize], None,
        "null, not 19"
    );
    let expected = apisnap::sandbox::data::record(151).quantity;
    assert_eq!(quantities[151], Some(expected));
    // Integers past int64 are decimals, every digit kept (a float64 would round them).
    let mut serials = Vec::new();
    for part in common::parts(&dir) {
        for batch in common::read_parquet(&part) {
            let column = batch.column_by_name("serial").unwrap();
            assert_eq!(
                column.data_type(),
                &arrow_schema::DataType::Decimal128(38, 0)
            );
            let column = column
                .as_any()
                .downcast_ref::<arrow_array::Decimal128Array>()
                .unwrap();
            serials.extend(column.iter().map(|v| v.unwrap()));
        }
    }
    let expected: Vec<i128> = (0..records)
        .map(|i| apisnap::sandbox::hostile_serial(i) as i128)
        .collect();
    assert_eq!(serials, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_apisnap_advertises_is_decoded() {
    let records = 2_500;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    for encoding in ["gzip", "br", "zstd", "deflate"] {
        let ws = Workspace::with_shipped_jobs();
        let name = format!("encoded_{encoding}");
        job(
            &ws,
            &name,
            &format!("path = \"/hostile/{encoding}/pages\""),
            "type = \"offset\"\npage_size = 1000\ntotal_pointer = \"/total\"",
            "",
        );
        let env = provider_env(&sandbox, &ws, "seal_metrics");
        let out = ws.apisnap(&["run", &name], &env).await;
        assert_exit(&out, 0);
        check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
        let encodings: Vec<_> = sandbox
            .requests()
            .into_iter()
            .filter(|r| r.target.starts_with(&format!("/seal/hostile/{encoding}/")))
            .map(|r| r.content_encoding)
            .collect();
        // The full pages came compressed, with that encoding only (a tiny last page may
        // come as it is).
        let compressed: Vec<_> = encodings.iter().flatten().collect();
        assert!(compressed.len() >= 2, "{encoding}: {encodings:?}");
        assert!(
            compressed.iter().all(|e| *e == encoding),
            "{encoding}: {encodings:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_or_404_is_sent_once_and_named() {
    let sandbox = common::start_sandbox(SandboxConfig::default()).await;
    for code in [403, 404] {
        let ws = Workspace::with_shipped_jobs();
        let name = format!("status_{code}");
        job(
            &ws,
            &name,
            &format!("path = \"/hostile/status/{code}\""),
            "type = \"none\"",
            "",
        );
        let env = provider_env(&sandbox, &ws, "seal_metrics");
        let out = ws.apisnap(&["run", &name], &env).await;
        assert_exit(&out, 4);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("/hostile/status/{code} returned {code}")),
            "{stderr}"
        );
        assert!(!stderr.contains("retrying"), "{stderr}");
        let sent = sandbox
            .requests()
            .iter()
            .filter(|r| {
                r.target
                    .starts_with(&format!("/seal/hostile/status/{code}"))
            })
            .count();
        assert_eq!(sent, 1, "{code} is not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_static_credential_kind_completes_a_run() {
    use apisnap::sandbox::{HOSTILE_API_KEY, HOSTILE_BASIC_PASSWORD, HOSTILE_BASIC_USER};
    let records = 450;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let cases = [
        // Armor's v2 route: a token obtained by hand, with its own scheme.
        (
            "bearer",
            "type = \"bearer\"\ntoken = \"env:STATIC_SECRET\"\nscheme = \"FH-AUTH\"",
        ),
        (
            "basic",
            "type = \"basic\"\nusername = \"env:STATIC_USER\"\npassword = \"env:STATIC_SECRET\"",
        ),
        (
            "header",
            "type = \"api_key\"\nkey = \"env:STATIC_SECRET\"\nheader = \"X-API-Key\"",
        ),
        (
            "query",
            "type = \"api_key\"\nkey = \"env:STATIC_SECRET\"\nquery_param = \"api_key\"",
        ),
        ("none", "type = \"none\""),
    ];
    for (kind, auth) in cases {
        let ws = Workspace::with_shipped_jobs();
        ws.write(
            "jobs/providers/static.toml",
            &format!(
                "base_url = \"{}\"\n[auth]\n{auth}\n",
                sandbox.base_url("seal")
            ),
        );
        let name = format!("static_{kind}");
        ws.write(
            &format!("jobs/{name}.toml"),
            &format!(
                "provider = \"static\"\n[endpoint]\npath = \"/hostile/static/{kind}\"\n\
                 [pagination]\ntype = \"offset\"\npage_size = 100\n[output]\ndir = \"out/{{job}}\"\n"
            ),
        );
        let secret = if kind == "basic" {
            HOSTILE_BASIC_PASSWORD
        } else {
            HOSTILE_API_KEY
        };
        let env = vec![
            ("STATIC_SECRET".to_string(), secret.to_string()),
            ("STATIC_USER".to_string(), HOSTILE_BASIC_USER.to_string()),
        ];
        let out = ws.apisnap(&["run", &name], &env).await;
        assert_exit(&out, 0);
        check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
        assert!(
            !text(&out.stderr).contains(secret),
            "{kind}: the secret was shown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_endpoint_that_is_down_is_an_outage_not_refused_credentials() {
    use apisnap::sandbox::{Fault, FaultConfig};
    // Every login answers 503 (then, in a second sandbox, the login answer is too slow for
    // the provider's timeout): after the retries the run exits 4, as for any API outage —
    // the shipped CronJobs never retry exit 3 (was: exit 3, "authentication failed").
    for kind in ["503", "slow"] {
        let sandbox = common::start_sandbox(SandboxConfig {
            records: 100,
            login_faults: FaultConfig {
                rate: 1.0,
                seed: 1,
                kinds: vec![Fault::parse(kind).unwrap()],
                ..Default::default()
            },
            ..SandboxConfig::default()
        })
        .await;
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, "seal_metrics");
        for (k, v) in [
            ("RETRY__BASE_DELAY_MS", "10"),
            ("RETRY__MAX_DELAY_MS", "50"),
            ("RETRY__MAX_RETRIES", "2"),
            ("TIMEOUT_SECS", "1"),
        ] {
            env.push((format!("APISNAP_PROVIDER_SEAL_METRICS__{k}"), v.into()));
        }
        let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
        assert_exit(&out, 4);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("the login endpoint") && stderr.contains("could not be reached"),
            "{kind}: {stderr}"
        );
    }
    // A login the server refuses stays exit 3.
    let sandbox = common::start_sandbox(SandboxConfig {
        records: 100,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.retain(|(k, _)| k != "SEAL_METRICS_PASSWORD");
    env.push(("SEAL_METRICS_PASSWORD".into(), "not-the-password".into()));
    let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
    assert_exit(&out, 3);
    assert!(
        text(&out.stderr).contains("login at"),
        "{}",
        text(&out.stderr)
    );
}
