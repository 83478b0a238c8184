//! `apisnap validate`: a table of broken job and provider files, each with the message it
//! must produce (file, field, what was expected) and exit code 2.

mod common;

use common::{Workspace, assert_exit, text};

const PROVIDER: &str = r#"
base_url = "https://api.example.com/v1"
[auth]
type = "password_login"
credentials = { email = "env:T_EMAIL", password = "env:T_PASSWORD" }
[auth.token]
expires_at_pointer = "/expires_at"
"#;

const JOB: &str = r#"
provider = "acme"
[endpoint]
path = "/events"
records_pointer = "/data"
[pagination]
type = "offset"
page_size = 100
[output]
format = "parquet"
dir = "out/{job}/{date}"
[schedule]
cron = "30 2 * * 1-5"
timezone = "Europe/Madrid"
"#;

struct Case {
    name: &'static str,
    job: Option<String>,
    provider: Option<String>,
    env: &'static [(&'static str, &'static str)],
    secrets: bool,
    /// The file the message must name.
    file: &'static str,
    /// Fragments the message must contain.
    expect: &'static [&'static str],
}

fn job(from: &str, to: &str) -> Option<String> {
    assert!(JOB.contains(from), "{from}");
    Some(JOB.replacen(from, to, 1))
}

fn provider(from: &str, to: &str) -> Option<String> {
    assert!(PROVIDER.contains(from), "{from}");
    Some(PROVIDER.replacen(from, to, 1))
}

const ENV: &[(&str, &str)] = &[("T_EMAIL", "a@example.com"), ("T_PASSWORD", "pw")];
const J: &str = "jobs/events.toml";
const P: &str = "jobs/providers/acme.toml";

fn cases() -> Vec<Case> {
    let case = |name, job, provider, file, expect| Case {
        name,
        job,
        provider,
        env: ENV,
        secrets: false,
        file,
        expect,
    };
    vec![
        case(
            "unknown field",
            job("page_size = 100", "page_size = 100\npagesize = 5"),
            None,
            J,
            &[
                "field `pagination.pagesize`",
                "unknown field `pagesize`",
                "`page_size`",
            ],
        ),
        case(
            "concurrency neither a number nor adaptive",
            job(
                "provider = \"acme\"",
                "provider = \"acme\"\nconcurrency = \"fast\"",
            ),
            None,
            J,
            &[
                "field `concurrency`",
                "a number of requests (1-64) or \"adaptive\"",
            ],
        ),
        case(
            "concurrency out of range",
            job(
                "provider = \"acme\"",
                "provider = \"acme\"\nconcurrency = 0",
            ),
            None,
            J,
            &[
                "concurrency",
                "0 is out of range: expected 1-64, or \"adaptive\"",
            ],
        ),
        case(
            "missing provider",
            job("provider = \"acme\"", ""),
            None,
            J,
            &["missing field `provider`"],
        ),
        case(
            "unknown provider",
            job("provider = \"acme\"", "provider = \"acne\""),
            None,
            J,
            &[
                "field `provider`",
                "unknown provider `acne`",
                "known providers: acme",
            ],
        ),
        case(
            "bad cron",
            job("30 2 * * 1-5", "30 2 * *"),
            None,
            J,
            &["field `schedule.cron`", "has 4 fields: expected 5"],
        ),
        case(
            "bad time zone",
            job("Europe/Madrid", "Europe/Madird"),
            None,
            J,
            &[
                "field `schedule.timezone`",
                "`Europe/Madird` is not an IANA time zone",
            ],
        ),
        case(
            "bad pointer",
            job("records_pointer = \"/data\"", "records_pointer = \"data\""),
            None,
            J,
            &[
                "field `endpoint.records_pointer`",
                "not a JSON pointer",
                "`/data`",
            ],
        ),
        case(
            "unknown pagination strategy",
            job("type = \"offset\"", "type = \"pages\""),
            None,
            J,
            &[
                "field `pagination.type`",
                "unknown variant `pages`",
                "expected one of `offset`, `page`, `cursor`",
            ],
        ),
        case(
            "page size 0",
            job("page_size = 100", "page_size = 0"),
            None,
            J,
            &["field `pagination.page_size`", "expected 1 or more"],
        ),
        case(
            "page size of the wrong type",
            job("page_size = 100", "page_size = \"ten\""),
            None,
            J,
            &[
                "field `pagination.page_size`",
                "invalid type: string \"ten\", expected u64",
            ],
        ),
        Case {
            name: "missing env secret",
            job: None,
            provider: None,
            env: &[("T_EMAIL", "a@example.com")],
            secrets: true,
            file: P,
            expect: &[
                "field `auth.credentials.password`",
                "environment variable T_PASSWORD is not set",
            ],
        },
        Case {
            name: "unreadable secret file",
            job: None,
            provider: provider("env:T_PASSWORD", "file:/nonexistent/apisnap/password"),
            env: ENV,
            secrets: true,
            file: P,
            expect: &[
                "field `auth.credentials.password`",
                "cannot read secret file /nonexistent/apisnap/password",
            ],
        },
        case(
            "literal secret",
            None,
            provider("env:T_PASSWORD", "hunter2-literal"),
            P,
            &[
                "field `auth.credentials.password`",
                "a literal secret is not allowed",
                "`env:NAME` or `file:/path`",
            ],
        ),
        case(
            "bad URL",
            None,
            provider("https://api.example.com/v1", "api.example.com/v1"),
            P,
            &["field `base_url`", "is not a URL"],
        ),
        case(
            "plain http to a non-loopback host",
            None,
            provider("https://api.example.com/v1", "http://api.example.com/v1"),
            P,
            &["field `base_url`", "clear text", "expected https://"],
        ),
        case(
            "credentials in the base URL",
            None,
            provider(
                "https://api.example.com/v1",
                "https://me:s3cret@api.example.com/v1",
            ),
            P,
            &[
                "field `base_url`",
                "carries credentials",
                "[credentials removed]@api.example.com",
            ],
        ),
        case(
            "a current table beside snapshots that are not one per run",
            job(
                "dir = \"out/{job}/{date}\"",
                "dir = \"out/{job}\"\n[table]\nprimary_key = [\"id\"]",
            ),
            None,
            J,
            &[
                "field `output.dir`",
                "`{date}` or `{run_id}`",
                "out/{job}/{date}",
            ],
        ),
        case(
            "unknown output format",
            job("format = \"parquet\"", "format = \"xlsx\""),
            None,
            J,
            &[
                "field `output.format`",
                "unknown variant `xlsx`",
                "`parquet`",
                "`csv`",
            ],
        ),
        case(
            "bad template placeholder",
            job("out/{job}/{date}", "out/{job}/{day}"),
            None,
            J,
            &[
                "field `output.dir`",
                "unknown placeholder `{day}`",
                "{job}, {date}, {timestamp} or {run_id}",
            ],
        ),
        case(
            "compression on CSV",
            job(
                "format = \"parquet\"",
                "format = \"csv\"\ncompression = \"zstd\"",
            ),
            None,
            J,
            &["field `output.compression`", "applies to Parquet only"],
        ),
        case(
            "TOML syntax error",
            job("[endpoint]", "[endpoint"),
            None,
            J,
            &["TOML", "line"],
        ),
        case(
            "literal Authorization header",
            job(
                "path = \"/events\"",
                "path = \"/events\"\nheaders = { Authorization = \"Bearer abc\" }",
            ),
            None,
            J,
            &[
                "field `endpoint.headers.Authorization`",
                "comes from the provider's `auth`",
            ],
        ),
        case(
            "unknown auth kind",
            None,
            provider("type = \"password_login\"", "type = \"kerberos\""),
            P,
            &[
                "field `auth.type`",
                "unknown variant `kerberos`",
                "`password_login`",
            ],
        ),
        Case {
            name: "bad value from an environment override",
            job: None,
            provider: None,
            env: &[
                ("T_EMAIL", "a@example.com"),
                ("T_PASSWORD", "pw"),
                ("APISNAP_JOB_EVENTS__OUTPUT__FORMAT", "excel"),
            ],
            secrets: false,
            file: J,
            expect: &[
                "field `output.format`",
                "unknown variant `excel`",
                "the value comes from APISNAP_JOB_EVENTS__OUTPUT__FORMAT",
            ],
        },
        Case {
            name: "an override that cannot reach a key with capitals",
            job: job(
                "records_pointer = \"/data\"",
                "records_pointer = \"/data\"\nquery = { pageSize = \"50\" }",
            ),
            provider: None,
            env: &[
                ("T_EMAIL", "a@example.com"),
                ("T_PASSWORD", "pw"),
                ("APISNAP_JOB_EVENTS__ENDPOINT__QUERY__PAGESIZE", "10"),
            ],
            secrets: false,
            file: J,
            expect: &[
                "field `endpoint.query.pageSize`",
                "APISNAP_JOB_EVENTS__ENDPOINT__QUERY__PAGESIZE cannot override `pageSize`",
                "a key `pagesize` beside it",
            ],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_file_is_named_with_field_and_expectation() {
    let cases = cases();
    assert!(cases.len() >= 15);
    for case in cases {
        let ws = Workspace::empty();
        ws.write(J, case.job.as_deref().unwrap_or(JOB));
        ws.write(P, case.provider.as_deref().unwrap_or(PROVIDER));
        let env: Vec<(String, String)> = case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut args = vec!["validate", "jobs"];
        if case.secrets {
            args.push("--secrets");
        }
        let out = ws.apisnap(&args, &env).await;
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit code\n{err}",
            case.name
        );
        let line = err
            .lines()
            .find(|l| l.starts_with("error: ") && l.contains(case.file))
            .unwrap_or_else(|| panic!("{}: no error naming {}\n{err}", case.name, case.file));
        assert!(
            !err.contains("s3cret"),
            "{}: a password shown\n{err}",
            case.name
        );
        for fragment in case.expect {
            assert!(
                line.contains(fragment),
                "{}: expected `{fragment}` in\n{line}",
                case.name
            );
        }
        assert!(
            !err.contains("hunter2-literal"),
            "{}: the literal secret is echoed",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_files_pass_and_unset_secrets_only_warn_without_secrets_flag() {
    let ws = Workspace::empty();
    ws.write(J, JOB);
    ws.write(P, PROVIDER);
    let env: Vec<(String, String)> = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = ws.apisnap(&["validate", "--secrets"], &env).await;
    assert_exit(&out, 0);
    assert!(text(&out.stdout).contains("ok: jobs/events.toml"));
    assert!(text(&out.stdout).contains("ok: jobs/providers/acme.toml"));

    let out = ws.apisnap(&["validate"], &[]).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr)
            .contains("warning: jobs/providers/acme.toml: field `auth.credentials.email`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_jobs_validate() {
    let ws = Workspace::with_shipped_jobs();
    let out = ws.apisnap(&["validate", "jobs"], &[]).await;
    assert_exit(&out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_missing_secret_before_any_request() {
    let ws = Workspace::empty();
    ws.write(J, JOB);
    ws.write(P, PROVIDER);
    let out = ws.apisnap(&["run", "events"], &[]).await;
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("environment variable T_EMAIL is not set"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_would_leave_their_directory_and_shared_outputs_are_refused() {
    let ws = Workspace::empty();
    ws.write("jobs/providers/acme.toml", PROVIDER);
    ws.write("jobs/events.toml", JOB);
    // A job whose name is `..`: `{job}` would climb out of `out/`.
    ws.write("jobs/...toml", JOB);
    let env = [
        ("T_EMAIL".to_string(), "e".to_string()),
        ("T_PASSWORD".to_string(), "p".to_string()),
    ];
    let out = ws.apisnap(&["validate", "jobs"], &env).await;
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("...toml") && err.contains("`..` is not a plain name"),
        "{err}"
    );

    // Two jobs whose snapshots would share a directory (and its latest.json).
    std::fs::remove_file(ws.path().join("jobs/...toml")).unwrap();
    ws.write(
        "jobs/orders.toml",
        &JOB.replace("out/{job}/{date}", "out/events/{date}-b"),
    );
    let out = ws.apisnap(&["validate", "jobs"], &env).await;
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("orders.toml")
            && err.contains("field `output.dir`")
            && err.contains("where job `events` keeps its own"),
        "{err}"
    );

    // A run id that would climb out of its directory.
    std::fs::remove_file(ws.path().join("jobs/orders.toml")).unwrap();
    let out = ws
        .apisnap(&["run", "events", "--run-id", "../../etc"], &env)
        .await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("the run id `../../etc` is not a plain name"),
        "{}",
        text(&out.stderr)
    );

    // No shards at all.
    for args in [
        ["run", "events", "--shards", "0"],
        ["finalize", "events", "--shards", "0"],
    ] {
        let out = ws.apisnap(&args, &env).await;
        assert_exit(&out, 2);
        let err = text(&out.stderr);
        assert!(
            err.contains("--shards") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}
