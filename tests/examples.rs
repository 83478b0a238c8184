//! `jobs/examples/`: a provider and a job for each of the well-known APIs the sandbox
//! emulates (`apisnap::sandbox::apis`), each run through the binary against its sandbox
//! API with only `base_url` and the credentials changed, and every value of every record
//! compared with what the API served. A newcomer with one of these APIs starts from a file
//! that works.

mod common;

use apisnap::sandbox::SandboxConfig;
use apisnap::sandbox::apis::{self, BASIC_PASSWORD, JIRA_EMAIL, TOKEN, TWILIO_ACCOUNT_SID};
use common::{Workspace, assert_exit, text};

/// Records each API holds in the test: several pages of every one's largest page.
const RECORDS: u64 = 2_500;

/// The credentials each example's provider reads, set to what its sandbox accepts.
fn credentials(api: &str) -> Vec<(&'static str, String)> {
    let token = |name| vec![(name, TOKEN.to_string())];
    match api {
        "github" => token("GITHUB_TOKEN"),
        "stripe" => token("STRIPE_SECRET_KEY"),
        "shopify" => token("SHOPIFY_ACCESS_TOKEN"),
        "hubspot" => token("HUBSPOT_TOKEN"),
        "salesforce" => vec![
            ("SALESFORCE_ACCESS_TOKEN", TOKEN.into()),
            ("SALESFORCE_CLIENT_ID", "sandbox".into()),
            ("SALESFORCE_CLIENT_SECRET", "sandbox-secret".into()),
        ],
        "slack" => token("SLACK_TOKEN"),
        "google" => token("GOOGLE_ACCESS_TOKEN"),
        "zendesk" => vec![
            ("ZENDESK_USER", "analyst@example.com/token".into()),
            ("ZENDESK_API_TOKEN", TOKEN.into()),
            ("ZENDESK_OAUTH_TOKEN", TOKEN.into()),
        ],
        "okta" => token("OKTA_API_TOKEN"),
        "airtable" => token("AIRTABLE_TOKEN"),
        "notion" => token("NOTION_TOKEN"),
        "jira" => vec![
            ("JIRA_EMAIL", JIRA_EMAIL.into()),
            ("JIRA_API_TOKEN", BASIC_PASSWORD.into()),
        ],
        "intercom" => token("INTERCOM_TOKEN"),
        "twilio" => vec![
            ("TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT_SID.into()),
            ("TWILIO_AUTH_TOKEN", BASIC_PASSWORD.into()),
        ],
        other => panic!("no credentials for {other}"),
    }
}

/// Whether `want` (a value the API sent) and `got` (the value read back from the Parquet
/// file, as arrow-json writes it) are the same value: instants compared as instants, JSON
/// text columns as the JSON they hold, null and absent alike.
fn same(want: &serde_json::Value, got: Option<&serde_json::Value>, at: &str) -> Result<(), String> {
    use serde_json::Value as V;
    let got = got.filter(|g| !g.is_null());
    match (want, got) {
        (V::Null, None) => Ok(()),
        (_, None) | (V::Null, Some(_)) => Err(format!("{at}: want {want}, got {got:?}")),
        (V::Object(w), Some(V::Object(g))) => {
            for (k, v) in w {
                same(v, g.get(k), &format!("{at}.{k}"))?;
            }
            match g.keys().find(|k| !w.contains_key(*k) && !g[*k].is_null()) {
                Some(extra) => Err(format!("{at}.{extra}: not sent, got {}", g[extra])),
                None => Ok(()),
            }
        }
        (V::Array(w), Some(V::Array(g))) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .try_for_each(|(i, (w, g))| same(w, Some(g), &format!("{at}[{i}]"))),
        // A JSON text column holds the value's JSON.
        (V::Object(_) | V::Array(_), Some(V::String(text))) => {
            let parsed: V = serde_json::from_str(text).map_err(|e| format!("{at}: {e}"))?;
            same(want, Some(&parsed), at)
        }
        (V::Number(w), Some(V::Number(g))) => match (w.as_i64(), g.as_i64()) {
            (Some(w), Some(g)) if w == g => Ok(()),
            _ if w.as_f64() == g.as_f64() && w.as_i64().is_none() => Ok(()),
            _ => Err(format!("{at}: want {w}, got {g}")),
        },
        (V::String(w), Some(V::String(g))) if w == g => Ok(()),
        (V::String(w), Some(V::String(g))) => match (instant(w), instant(g)) {
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => Err(format!("{at}: want {w:?}, got {g:?}")),
        },
        (w, Some(g)) if w == g => Ok(()),
        (w, Some(g)) => Err(format!("{at}: want {w}, got {g}")),
    }
}

/// A date-time with an offset (any ISO form apisnap infers), or one arrow-json writes for a
/// UTC timestamp column (no offset).
fn instant(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let utc = |t: chrono::DateTime<chrono::FixedOffset>| t.with_timezone(&chrono::Utc);
    chrono::DateTime::parse_from_rfc3339(text)
        .map(utc)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%#z").map(utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// The scalar values in a row, for the log.
fn leaves(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => m.values().map(leaves).sum(),
        serde_json::Value::Array(a) => a.iter().map(leaves).sum(),
        _ => 1,
    }
}

/// The rows of every Parquet part under `dir`, in part order, as JSON objects.
fn rows(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut parts = common::parts(dir);
    parts.sort();
    let mut out = Vec::new();
    for part in parts {
        for batch in common::read_parquet(&part) {
            let mut writer = arrow_json::ArrayWriter::new(Vec::new());
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
            let text = writer.into_inner();
            if !text.is_empty() {
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&text).unwrap();
                out.extend(rows);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_job_syncs_its_apis_sandbox_exactly() {
    let sandbox = common::start_sandbox(SandboxConfig {
        records: RECORDS,
        ..SandboxConfig::default()
    })
    .await;
    let mut failures = Vec::new();
    assert!(apis::APIS.len() >= 12, "{:?}", apis::APIS);
    for api in apis::APIS {
        let ws = Workspace::with_shipped_jobs();
        let mut env: Vec<(String, String)> = credentials(api)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        env.push((
            format!("APISNAP_PROVIDER_{}__BASE_URL", api.to_uppercase()),
            sandbox.base_url(api),
        ));
        env.push((
            format!("APISNAP_JOB_{}__OUTPUT__DIR", api.to_uppercase()),
            ws.path().join("out").join(api).to_string_lossy().into(),
        ));
        let out = ws
            .apisnap(&["run", "--jobs-dir", "jobs/examples", api], &env)
            .await;
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{api}: exit {:?}\n{}",
                out.status.code(),
                text(&out.stderr)
            ));
            continue;
        }
        let got = rows(&ws.path().join("out").join(api));
        if got.len() as u64 != RECORDS {
            failures.push(format!("{api}: {} records of {RECORDS}", got.len()));
            continue;
        }
        eprintln!(
            "{api}: {} records, {} values compared",
            got.len(),
            got.iter().map(leaves).sum::<usize>()
        );
        for (i, row) in got.iter().enumerate() {
            let want = apis::record(api, i as u64).unwrap();
            if let Err(e) = same(&want, Some(row), &format!("{api} record {i}")) {
                failures.push(e);
                break;
            }
        }
        // The file validates as a user would run it.
        let file = format!("jobs/examples/{api}.toml");
        let out = ws.apisnap(&["validate", "--secrets", &file], &env).await;
        assert_exit(&out, 0);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_comparison_sees_every_kind_of_difference() {
    let v = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    let ok = |w: &str, g: &str| same(&v(w), Some(&v(g)), "r").is_ok();
    assert!(ok(r#"{"a": 1, "b": null}"#, r#"{"a": 1}"#));
    assert!(!ok(r#"{"a": 1}"#, r#"{"a": 2}"#));
    assert!(
        !ok(r#"{"a": 1}"#, r#"{"a": 1, "c": 3}"#),
        "a value not sent"
    );
    assert!(!ok(r#"{"a": "x"}"#, r#"{}"#), "a value lost");
    assert!(ok(
        r#"{"t": "2026-01-01T15:30:00.250+0530"}"#,
        r#"{"t": "2026-01-01T10:00:00.250"}"#
    ));
    assert!(!ok(
        r#"{"t": "2026-01-01T10:00:00Z"}"#,
        r#"{"t": "2026-01-01T10:00:01"}"#
    ));
    assert!(ok(r#"{"o": {"k": [1, {}]}}"#, r#"{"o": "{\"k\":[1,{}]}"}"#));
    assert!(!ok(r#"{"l": [1, 2]}"#, r#"{"l": [1]}"#));
    assert!(ok(r#"{"f": 1.5}"#, r#"{"f": 1.5}"#));
    assert!(!ok(r#"{"n": 7}"#, r#"{"n": 7.5}"#));
}
