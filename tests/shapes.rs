//! Against list endpoints shaped as well-known APIs document theirs, and collections that
//! change while they are read: every strategy either writes every record once (compared
//! value by value) or fails naming what did not add up — never exit 0 with fewer or more
//! records than the API holds.

mod common;

use apisnap::sandbox::{CHANGE, CHANGES, HOSTILE_LIE, SandboxConfig, ragged_size};
use common::{Workspace, assert_exit, check, only_file, provider_env, text};

use common::seal_job as job;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_and_token_only_lists_are_read_to_their_real_end() {
    let records = 437;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let cases = [
        // Stripe: `?starting_after=<id of the last record>`, `has_more`; 250 asked, 100 sent
        // (was: exit 0 after the first page, the cursor at `/data/-1/id` never resolved).
        (
            "stripe",
            "path = \"/shapes/stripe/customers\"",
            "type = \"keyset\"\nkey_param = \"starting_after\"\nkey_pointer = \"/id\"\n\
             limit_param = \"limit\"\npage_size = 250\nhas_more_pointer = \"/has_more\"",
        ),
        // The same without the flag: an empty page ends it.
        (
            "stripe_no_flag",
            "path = \"/shapes/stripe/customers\"",
            "type = \"keyset\"\nkey_param = \"starting_after\"\nkey_pointer = \"/id\"\n\
             limit_param = \"limit\"\npage_size = 100",
        ),
        // The key in the path, `start` for the first page.
        (
            "in_path",
            "path = \"/shapes/feed/after/{page.key}\"",
            "type = \"keyset\"\nkey_param = \"after\"\nkey_pointer = \"/id\"\nparams_in = \"path\"\n\
             first_key = \"start\"\nlimit_param = \"limit\"\npage_size = 60\n\
             has_more_pointer = \"/has_more\"",
        ),
        // Google: empty and short pages mid-stream, each with a `nextPageToken`; only its
        // absence ends the list (was: exit 0 at the first empty page).
        (
            "google",
            "path = \"/shapes/google/users\"\nrecords_pointer = \"/users\"",
            "type = \"cursor\"\ncursor_param = \"pageToken\"\n\
             cursor_pointer = \"/nextPageToken\"\nlimit_param = \"maxResults\"\npage_size = 40",
        ),
    ];
    for (name, endpoint, pagination) in cases {
        let ws = Workspace::with_shipped_jobs();
        job(&ws, name, endpoint, pagination, "");
        let env = provider_env(&sandbox, &ws, "seal_metrics");
        let out = ws.apisnap(&["run", name], &env).await;
        assert_exit(&out, 0);
        check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    }
    // An API that sends a cursor with its last, empty page says so with `end`; on Google's
    // shape that setting would stop early, so the default is the token's absence.
    let ws = Workspace::with_shipped_jobs();
    job(
        &ws,
        "google_empty_end",
        "path = \"/shapes/google/users\"\nrecords_pointer = \"/users\"",
        "type = \"cursor\"\ncursor_param = \"pageToken\"\ncursor_pointer = \"/nextPageToken\"\n\
         limit_param = \"maxResults\"\npage_size = 40\nend = \"empty_page\"",
        "",
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "google_empty_end"], &env).await;
    assert_exit(&out, 0);
    assert_eq!(
        check::parquet_from(&only_file(&ws.path().join("out"), "parquet"), 0),
        40,
        "a page of 40, then the empty page ends it as asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_has_more_flag_that_says_true_is_never_overruled() {
    let records = 137;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    // Stripe's list read as a cursor whose pointer is not there: `has_more` says true and
    // no next request can be formed (was: exit 0 with the first page).
    let ws = Workspace::with_shipped_jobs();
    job(
        &ws,
        "stripe_as_cursor",
        "path = \"/shapes/stripe/customers\"",
        "type = \"cursor\"\ncursor_param = \"starting_after\"\ncursor_pointer = \"/data/-1/id\"\n\
         has_more_pointer = \"/has_more\"",
        "",
    );
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["run", "stripe_as_cursor"], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the has-more flag at `/has_more` says more pages follow")
            && stderr.contains("no cursor at `/data/-1/id`"),
        "{stderr}"
    );
    assert!(!ws.path().join("out/stripe_as_cursor/_SUCCESS").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_written_as_other_number_forms_are_read_and_checked() {
    let records = 137;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    for form in ["float", "exp", "string"] {
        let ws = Workspace::with_shipped_jobs();
        let env = provider_env(&sandbox, &ws, "seal_metrics");
        let pagination = "type = \"offset\"\npage_size = 50\ntotal_pointer = \"/total\"";
        // The truth: every record, and the total stops the pages (no empty page asked).
        let name = format!("totals_{form}");
        let path = format!("path = \"/shapes/totals/{form}\"");
        job(&ws, &name, &path, pagination, "");
        let before = sandbox.stats("seal").data_requests;
        let out = ws.apisnap(&["run", &name], &env).await;
        assert_exit(&out, 0);
        assert_eq!(sandbox.stats("seal").data_requests - before, 3, "{form}");
        check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
        // A total that states more than there are (was: exit 0, never checked).
        let name = format!("lying_{form}");
        let path = format!("path = \"/shapes/totals/{form}\"\nquery = {{ lie = 1 }}");
        job(&ws, &name, &path, pagination, "");
        let out = ws.apisnap(&["run", &name], &env).await;
        assert_exit(&out, 4);
        let stated = records + HOSTILE_LIE;
        assert!(
            text(&out.stderr).contains(&format!(
                "stated {stated} records but the run wrote {records}"
            )),
            "{form}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_that_changes_under_offset_paging_fails_and_keyset_reads_it_exactly() {
    let records = 100;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    for change in ["insert", "delete"] {
        // Offset paging, newest first: records inserted at the front repeat the ones read,
        // deleted ones skip some; the total moves, and the run fails naming both counts
        // (was: exit 0 with 115 rows, 15 of them twice, or 85, 15 missing).
        let ws = Workspace::with_shipped_jobs();
        let env = provider_env(&sandbox, &ws, "seal_metrics");
        sandbox.reset_changes();
        job(
            &ws,
            "by_offset",
            &format!("path = \"/shapes/changing/{change}\""),
            "type = \"offset\"\npage_size = 10\ntotal_pointer = \"/total\"",
            "",
        );
        let out = ws.apisnap(&["run", "by_offset"], &env).await;
        assert_exit(&out, 4);
        // Pages in flight together are each followed by a change: the count seen at the
        // second page has moved by one change or more.
        let stderr = text(&out.stderr);
        let moved = stderr
            .split(&format!("the API stated {records} records at first and "))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{change}: {stderr}"));
        match change {
            "insert" => assert!(moved > records && (moved - records).is_multiple_of(CHANGE)),
            _ => assert!(moved < records && (records - moved).is_multiple_of(CHANGE)),
        }
        assert!(stderr.contains("keyset"), "{stderr}");
        assert!(!ws.path().join("out/by_offset/_SUCCESS").exists());

        // Keyset pages by the last id read: exact whatever changed at the front.
        sandbox.reset_changes();
        job(
            &ws,
            "by_key",
            &format!("path = \"/shapes/changing/{change}\""),
            "type = \"keyset\"\nkey_param = \"starting_after\"\nkey_pointer = \"/id\"\n\
             limit_param = \"limit\"\npage_size = 10\nhas_more_pointer = \"/has_more\"",
            "",
        );
        let out = ws.apisnap(&["run", "by_key"], &env).await;
        assert_exit(&out, 0);
        let file = only_file(&ws.path().join("out/by_key"), "parquet");
        // Every record there was when the run began, newest first, each once; inserted
        // ones are newer than the first read, deleted ones were read before they went.
        let rows = check::parquet_rows(&file, (0..records).rev());
        assert_eq!(rows, records, "{change}");
    }
    // The job may accept the change: warned, complete.
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    sandbox.reset_changes();
    job(
        &ws,
        "accepting",
        "path = \"/shapes/changing/insert\"",
        "type = \"offset\"\npage_size = 10\ntotal_pointer = \"/total\"",
        "on_count_mismatch = \"warn\"",
    );
    let out = ws.apisnap(&["run", "accepting"], &env).await;
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("changed while the run read the pages"),
        "{stderr}"
    );
    assert_exit(&out, 0);
}

// The collection changes after more than the first page (a change seen at the second).
const _: () = assert!(CHANGES > 1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_varying_size_cost_at_most_the_pages_needed_and_the_limit() {
    let records = 2300;
    let limit = 8;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    job(
        &ws,
        "ragged",
        "path = \"/shapes/ragged\"",
        "type = \"offset\"\npage_size = 50",
        &format!("concurrency = {limit}"),
    );
    let before = sandbox.stats("seal").data_requests;
    let out = ws.apisnap(&["run", "ragged"], &env).await;
    assert_exit(&out, 0);
    let made = sandbox.stats("seal").data_requests - before;
    check::parquet(&only_file(&ws.path().join("out"), "parquet"), records);
    // The pages the data needs, and the empty one that ends it.
    let (mut skip, mut needed) = (0, 1);
    while skip < records {
        skip += ragged_size(skip);
        needed += 1;
    }
    eprintln!("ragged pages: {needed} needed, {made} requests made");
    assert!(
        made <= needed + limit,
        "{made} requests for {needed} pages (was 226-309 for about 50)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_value_from_the_future_is_warned_counted_and_kept_out_of_the_mark() {
    use apisnap::sandbox::{FUTURE_AT, FUTURE_TIME};
    let records = 300;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    ws.write(
        "jobs/future.toml",
        "provider = \"seal_metrics\"\n[endpoint]\npath = \"/shapes/future\"\n\
         [pagination]\ntype = \"offset\"\npage_size = 100\ntotal_pointer = \"/total\"\n\
         [output]\ndir = \"out/{job}/{run_id}\"\n\
         [incremental]\ncursor_field = \"created_at\"\nparam = \"created_after\"\n",
    );
    let mark = || {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ws.path().join("state/future.json")).unwrap())
                .unwrap();
        state["history"][0]["high_water"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let report = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(ws.path().join("state/future.report.json")).unwrap())
            .unwrap()
    };
    let out = ws.apisnap(&["run", "future"], &env).await;
    assert_exit(&out, 0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("past the run's start")
            && stderr.contains(FUTURE_TIME.trim_end_matches('Z'))
            && stderr.contains(&format!("record={}", FUTURE_AT + 1)),
        "{stderr}"
    );
    // The mark is the newest real time, not 2099 (was: 2099, and every later run fetched
    // nothing at exit 0).
    let newest = apisnap::sandbox::data::record(records - 1).created_at;
    assert_eq!(mark(), newest);
    assert_eq!(report()["future_marks"], 1);
    let snapshots = common::snapshot_dirs(&ws.path().join("out/future"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshots[0].join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            manifest["records"].as_u64(),
            manifest["future_marks"].as_u64()
        ),
        (Some(records), Some(1))
    );

    // New records come; the next run asks from the real mark and gets them (and the record
    // from 2099 again, which is after any mark: counted again).
    sandbox.set_records(records + 50);
    let out = ws.apisnap(&["run", "future"], &env).await;
    assert_exit(&out, 0);
    assert_eq!(report()["records"], 51);
    assert_eq!(report()["future_marks"], 1);
    assert_eq!(
        mark(),
        apisnap::sandbox::data::record(records + 49).created_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_stated_at_http_200_are_classed_by_the_providers_errors_table() {
    let records = 250;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.push((
        "APISNAP_PROVIDER_SEAL_METRICS__RETRY__BASE_DELAY_MS".into(),
        "20".into(),
    ));
    let provider = ws.path().join("jobs/providers/seal_metrics.toml");
    let shipped = std::fs::read_to_string(&provider).unwrap();
    let slack_job = |name: &str, fail: &str| {
        job(
            &ws,
            name,
            &format!(
                "path = \"/shapes/slack/conversations.list\"\nrecords_pointer = \"/channels\"\n\
                 query = {{ {fail} }}"
            ),
            "type = \"cursor\"\ncursor_param = \"cursor\"\n\
             cursor_pointer = \"/response_metadata/next_cursor\"\nlimit_param = \"limit\"\n\
             page_size = 100",
            "",
        )
    };
    // Without `[errors]`: an error body at 200 has no records, so it reads as a malformed
    // page (retried, exit 4) — the API's own word is not understood.
    sandbox.reset_changes();
    slack_job("unconfigured", "fail = \"invalid_auth\"");
    let out = ws.apisnap(&["run", "unconfigured"], &env).await;
    assert_exit(&out, 4);

    std::fs::write(
        &provider,
        format!(
            "{shipped}\n[errors]\nsuccess_pointer = \"/ok\"\ncode_pointer = \"/error\"\n\
             credentials = [\"invalid_auth\", \"token_expired\"]\nretry = [\"ratelimited\"]\n"
        ),
    )
    .unwrap();
    // Refused credentials: one renewal, as after a 401, then exit 3 — not retried as a fault.
    sandbox.reset_changes();
    slack_job("refused", "fail = \"invalid_auth\"");
    let logins = sandbox.stats("seal").logins;
    let out = ws.apisnap(&["run", "refused"], &env).await;
    assert_exit(&out, 3);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("was rejected with 200 OK stating `invalid_auth` even after a fresh login"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("retrying"),
        "not retried as a fault: {stderr}"
    );
    assert_eq!(
        sandbox.stats("seal").logins - logins,
        2,
        "a login and one renewal"
    );
    // Rate limited at 200: retried, then every record.
    sandbox.reset_changes();
    slack_job("limited", "fail = \"ratelimited\", fail_count = 2");
    let out = ws.apisnap(&["run", "limited"], &env).await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stderr).contains("stating `ratelimited`"),
        "{}",
        text(&out.stderr)
    );
    check::parquet(
        &only_file(&ws.path().join("out/limited"), "parquet"),
        records,
    );
    // Any other stated error: exit 4 at once, not retried.
    sandbox.reset_changes();
    slack_job("missing", "fail = \"channel_not_found\"");
    let before = sandbox.stats("seal").data_requests;
    let out = ws.apisnap(&["run", "missing"], &env).await;
    assert_exit(&out, 4);
    assert!(
        text(&out.stderr).contains("stating the error `channel_not_found` (not one to retry)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sandbox.stats("seal").data_requests - before, 1);
    // The whole list when nothing fails, the cursor "" at the end.
    slack_job("all", "");
    let out = ws.apisnap(&["run", "all"], &env).await;
    assert_exit(&out, 0);
    check::parquet(&only_file(&ws.path().join("out/all"), "parquet"), records);
}

/// Every row of the Parquet files under `dir`, in order.
fn rows(dir: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    let mut parts = common::parts(dir);
    parts.sort();
    parts.iter().flat_map(|p| common::read_parquet(p)).collect()
}

/// The value at a dotted path of struct columns in `row`, as text (`None`: null or absent).
fn cell(batch: &arrow_array::RecordBatch, path: &str, row: usize) -> Option<String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let mut names = path.split('.');
    let mut column = batch.column_by_name(names.next().unwrap())?.clone();
    for name in names {
        if column.is_null(row) {
            return None;
        }
        column = column.as_struct().column_by_name(name)?.clone();
    }
    (!column.is_null(row))
        .then(|| arrow_cast::display::array_value_to_string(&column, row).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_that_are_always_empty_and_fields_that_appear_later_inside_objects() {
    use apisnap::sandbox::{AIRTABLE_BAD, airtable_record, zendesk_ticket};
    let records = 260;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    // Zendesk: `via.source.from` and `to` are `{}` on every ticket (was: exit 1, "Parquet
    // does not support writing empty structs", the column not named). A cursor comes with
    // the last page too; `has_more: false` ends it.
    job(
        &ws,
        "zendesk",
        "path = \"/shapes/zendesk/tickets\"\nrecords_pointer = \"/tickets\"",
        "type = \"cursor\"\ncursor_param = \"page[after]\"\ncursor_pointer = \"/meta/after_cursor\"\n\
         limit_param = \"page[size]\"\npage_size = 100\nhas_more_pointer = \"/meta/has_more\"",
        "",
    );
    let out = ws.apisnap(&["run", "zendesk"], &env).await;
    assert_exit(&out, 0);
    let mut i = 0;
    for batch in rows(&ws.path().join("out/zendesk")) {
        for row in 0..batch.num_rows() {
            let want = zendesk_ticket(i);
            assert_eq!(cell(&batch, "id", row), Some(want["id"].to_string()));
            assert_eq!(
                cell(&batch, "subject", row).as_deref(),
                want["subject"].as_str()
            );
            assert_eq!(cell(&batch, "via.source.from", row).as_deref(), Some("{}"));
            assert_eq!(cell(&batch, "via.source.to", row).as_deref(), Some("{}"));
            assert_eq!(cell(&batch, "via.source.rel", row), None);
            i += 1;
        }
    }
    assert_eq!(i, records);
    // `schema infer` writes a column file apisnap takes back, and a run with it matches.
    let out = ws
        .apisnap(
            &[
                "schema",
                "infer",
                "zendesk",
                "--out",
                "schemas/zendesk.columns.toml",
            ],
            &env,
        )
        .await;
    assert_exit(&out, 0);
    let columns = std::fs::read_to_string(ws.path().join("schemas/zendesk.columns.toml")).unwrap();
    assert!(columns.contains("type = \"json\""), "{columns}");
    job(
        &ws,
        "zendesk_declared",
        "path = \"/shapes/zendesk/tickets\"\nrecords_pointer = \"/tickets\"",
        "type = \"cursor\"\ncursor_param = \"page[after]\"\ncursor_pointer = \"/meta/after_cursor\"\n\
         limit_param = \"page[size]\"\npage_size = 100\nhas_more_pointer = \"/meta/has_more\"",
        "[schema]\nfile = \"schemas/zendesk.columns.toml\"",
    );
    let out = ws.apisnap(&["run", "zendesk_declared"], &env).await;
    assert_exit(&out, 0);

    // Airtable: fields left out when empty, so `fields.Tags` first comes on the second page
    // and `fields.Address.zip` on the third.
    let airtable = |name: &str, schema: &str| {
        job(
            &ws,
            name,
            "path = \"/shapes/airtable/records\"\nrecords_pointer = \"/records\"",
            "type = \"cursor\"\ncursor_param = \"offset\"\ncursor_pointer = \"/offset\"\n\
             limit_param = \"pageSize\"\npage_size = 100",
            &format!("[schema]\n{schema}"),
        )
    };
    // The default, `fail`, names the nested fields (was: a decode error whose own advice,
    // `on_invalid = "null"`, failed too).
    airtable("airtable_fail", "drift = \"fail\"");
    let out = ws.apisnap(&["run", "airtable_fail"], &env).await;
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`fields.Tags`") && stderr.contains("schema.drift = \"evolve\""),
        "{stderr}"
    );
    // Following its advice: `evolve` grows the object; the bad `Count` then fails, naming
    // the value, and following that advice (`on_invalid = "null"`) writes it as null.
    airtable("airtable_evolve", "drift = \"evolve\"");
    let out = ws.apisnap(&["run", "airtable_evolve"], &env).await;
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("field `fields.Count`: the value \"many\"")
            && stderr.contains("on_invalid = \"null\""),
        "{stderr}"
    );
    airtable(
        "airtable_evolve",
        "drift = \"evolve\"\non_invalid = \"null\"",
    );
    let out = ws
        .apisnap(&["run", "airtable_evolve", "--fresh"], &env)
        .await;
    assert_exit(&out, 0);
    let mut i = 0;
    for batch in rows(&ws.path().join("out/airtable_evolve")) {
        for row in 0..batch.num_rows() {
            let want = airtable_record(i);
            let f = &want["fields"];
            assert_eq!(cell(&batch, "id", row).as_deref(), want["id"].as_str());
            assert_eq!(
                cell(&batch, "fields.Name", row).as_deref(),
                f["Name"].as_str()
            );
            let count = (i != AIRTABLE_BAD).then(|| f["Count"].to_string());
            assert_eq!(cell(&batch, "fields.Count", row), count, "record {i}");
            assert_eq!(
                cell(&batch, "fields.Notes", row).as_deref(),
                f["Notes"].as_str()
            );
            let tags = f["Tags"].as_array().map(|t| {
                let t: Vec<&str> = t.iter().map(|v| v.as_str().unwrap()).collect();
                format!("[{}]", t.join(", "))
            });
            assert_eq!(cell(&batch, "fields.Tags", row), tags, "record {i}");
            assert_eq!(
                cell(&batch, "fields.Address.zip", row).as_deref(),
                f["Address"]["zip"].as_str(),
                "record {i}"
            );
            i += 1;
        }
    }
    assert_eq!(i, records);
    // `ignore` drops them, and counts each by its path.
    airtable(
        "airtable_ignore",
        "drift = \"ignore\"\non_invalid = \"null\"",
    );
    let out = ws.apisnap(&["run", "airtable_ignore"], &env).await;
    assert_exit(&out, 0);
    let snapshot = ws.path().join("out/airtable_ignore");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("_manifest.json")).unwrap()).unwrap();
    let tags = (150..records).filter(|i| i.is_multiple_of(2)).count();
    assert_eq!(manifest["dropped_fields"]["fields.Tags"], tags);
    assert_eq!(
        manifest["dropped_fields"]["fields.Address.zip"],
        records - 220
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_twice_in_a_run_fails_it_or_is_kept_once_by_its_key() {
    let records = 100;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    // Offset pages, newest first, 3 records inserted at the front after each of the first
    // five pages: each insert pushes 3 records already read onto the next page.
    let changing = |name: &str, extra: &str| {
        job(
            &ws,
            name,
            "path = \"/shapes/changing/insert\"\nkey = [\"id\"]",
            "type = \"offset\"\npage_size = 10\ntotal_pointer = \"/total\"",
            &format!("concurrency = 1\non_count_mismatch = \"warn\"\n{extra}"),
        )
    };
    sandbox.reset_changes();
    changing("twice", "");
    let out = ws.apisnap(&["run", "twice"], &env).await;
    assert_exit(&out, 4);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the record with id = 92 came twice"),
        "{stderr}"
    );
    assert!(!ws.path().join("out/twice/_SUCCESS").exists());

    sandbox.reset_changes();
    changing("once", "on_duplicate = \"keep_newest\"");
    let out = ws.apisnap(&["run", "once"], &env).await;
    assert_exit(&out, 0);
    let snapshot = ws.path().join("out/once");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["duplicates"], CHANGE * CHANGES);
    assert_eq!(manifest["records"], records);
    // Every record there was at the start, once, every value as generated.
    let file = only_file(&snapshot, "parquet");
    let mut ids: Vec<u64> = common::read_parquet(&file)
        .iter()
        .flat_map(|b| {
            use arrow_array::cast::AsArray;
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>()
                .values()
                .iter()
                .map(|v| *v as u64)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(check::parquet_rows(&file, ids.clone().into_iter()), records);
    ids.sort();
    assert_eq!(ids, (0..records).collect::<Vec<_>>());

    // A key that names no field would never find a duplicate: said, with the field.
    job(
        &ws,
        "misspelled",
        "path = \"/shapes/changing/insert\"\nkey = [\"ID\"]",
        "type = \"offset\"\npage_size = 10",
        "",
    );
    let out = ws.apisnap(&["run", "misspelled"], &env).await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("endpoint.key") && stderr.contains("`ID`") && stderr.contains("id, name"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_settings_that_cannot_be_followed_are_refused_with_the_field_named() {
    let ws = Workspace::with_shipped_jobs();
    let cases = [
        // A key in the path needs the placeholder, and the key the first request sends.
        (
            "path = \"/events\"",
            "type = \"keyset\"\nkey_param = \"after\"\nkey_pointer = \"/id\"\nparams_in = \"path\"",
            &["endpoint.path", "{page.key}", "pagination.first_key"][..],
        ),
        // A keyset needs a field of the record, not the whole record.
        (
            "path = \"/events\"",
            "type = \"keyset\"\nkey_param = \"after\"\nkey_pointer = \"\"",
            &["pagination.key_pointer"][..],
        ),
        // `path` is for keys only.
        (
            "path = \"/events\"",
            "type = \"offset\"\nparams_in = \"path\"",
            &["pagination.params_in"][..],
        ),
        // `end` takes two values.
        (
            "path = \"/events\"",
            "type = \"cursor\"\nend = \"short_page\"",
            &["pagination.end", "next_absent", "empty_page"][..],
        ),
    ];
    for (endpoint, pagination, words) in cases {
        job(&ws, "bad", endpoint, pagination, "");
        let out = ws.apisnap(&["validate", "jobs/bad.toml"], &[]).await;
        assert_exit(&out, 2);
        let stderr = text(&out.stderr);
        for word in words {
            assert!(stderr.contains(word), "{word}: {stderr}");
        }
        assert!(stderr.contains("jobs/bad.toml"), "{stderr}");
    }
    // Keeping the newest copy rewrites the snapshot whole: not per slice yet.
    ws.write(
        "jobs/bad.toml",
        "provider = \"seal_metrics\"\non_duplicate = \"keep_newest\"\n\
         [endpoint]\npath = \"/events\"\nquery = { from = \"{window.start}\" }\nkey = [\"id\"]\n\
         [pagination]\ntype = \"offset\"\n[windows]\nstart = \"-2d\"\nend = \"now\"\nstep = \"1d\"\n",
    );
    let out = ws.apisnap(&["validate", "jobs/bad.toml"], &[]).await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("on_duplicate") && stderr.contains("partitions or windows"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyset_run_killed_again_and_again_resumes_after_its_last_committed_key() {
    let records = 20_000;
    let sandbox = common::start_sandbox(SandboxConfig {
        records,
        latency: std::time::Duration::from_millis(4),
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let env = provider_env(&sandbox, &ws, "seal_metrics");
    ws.write(
        "jobs/customers.toml",
        "provider = \"seal_metrics\"\n[endpoint]\npath = \"/shapes/stripe/customers\"\n\
         key = [\"id\"]\n[pagination]\ntype = \"keyset\"\nkey_param = \"starting_after\"\n\
         key_pointer = \"/id\"\nlimit_param = \"limit\"\npage_size = 100\n\
         has_more_pointer = \"/has_more\"\n[output]\ndir = \"out/{job}\"\npart_records = 700\n",
    );
    let mut rng = fastrand::Rng::with_seed(20261206);
    let mut kills = 0;
    while kills < 6 {
        let mut child = common::spawn(&ws, &env, &["run", "customers"]);
        tokio::time::sleep(std::time::Duration::from_millis(rng.u64(150..600))).await;
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        kills += 1;
    }
    assert!(kills >= 3, "the runs should last long enough to be killed");
    let out = ws.apisnap(&["run", "customers"], &env).await;
    assert_exit(&out, 0);
    // Every record once, in order, every value: the checkpoint's key took each resumed run
    // on after the last committed record (and the committed keys were read back: a record
    // fetched twice would have failed the run).
    common::check_parquet_snapshot(&ws.path().join("out/customers"), records);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("state/customers.json")).unwrap())
            .unwrap();
    assert!(state["in_progress"].is_null(), "{state}");
}
