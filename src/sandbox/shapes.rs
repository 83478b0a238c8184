//! List endpoints shaped as well-known APIs document theirs, and collections that change
//! while a client reads them (under `/seal/shapes`, on Seal Metrics' records and tokens).
//!
//! - `stripe/customers`: Stripe's lists (`{"object": "list", "data": [...], "has_more":
//!   bool}`), keyset pages by `?starting_after=<id of the last record>&limit=` (at most 100
//!   records, 10 by default), as Stripe's API reference documents them.
//! - `google/users`: Google's `nextPageToken` lists (the Admin SDK's `users.list`: records
//!   in `/users`, `?pageToken=&maxResults=`), where "partial or empty result pages are
//!   possible even before the end": every third page is empty, every third short, each with
//!   a token; the last page has no `nextPageToken` key at all.
//! - `totals/{form}`: skip/limit pages whose `total` is written as `float` (`30.0`), `exp`
//!   (`3e1`) or `string` (`"30"`), [`super::hostile::LIE`] more than there are with
//!   `?lie=1`.
//! - `ragged`: skip/limit pages whose size varies below a cap of [`RAGGED_CAP`] (20 to 50
//!   records, from the offset), no total.
//! - `changing/{change}`: the records newest first (highest id first), by `?skip=&limit=`
//!   with a `total`, or by `?starting_after=<id>` (keyset); after each of the first
//!   [`CHANGES`] pages served, [`CHANGE`] records are `insert`ed at the front (new ids
//!   above the data set's) or the newest [`CHANGE`] `delete`d (already read). Restarted by
//!   [`super::Sandbox::reset_changes`].
//! - `slack/conversations.list`: Slack's Web API lists: `{"ok": true, "channels": [...],
//!   "response_metadata": {"next_cursor": "…"}}`, the cursor `""` at the end. With
//!   `?fail=CODE&fail_count=N`, the first N answers (since [`super::Sandbox::reset_changes`];
//!   all without `fail_count`) are HTTP 200 with `{"ok": false, "error": CODE}`.
//! - `zendesk/tickets`: Zendesk's cursor pages (`?page[size]=&page[after]=`, `{"tickets":
//!   [...], "meta": {"has_more": bool, "after_cursor": "…"}}`, a cursor on the last page
//!   too); every ticket's `via.source.from` and `to` are `{}`, as Zendesk sends them
//!   ([`zendesk_ticket`]).
//! - `airtable/records`: Airtable's `?pageSize=&offset=` pages (`{"records": [...],
//!   "offset": "…"}`, no `offset` on the last); empty fields are left out of `fields`, so
//!   some appear first on a later page, one of them inside a nested object
//!   ([`airtable_record`]); record [`AIRTABLE_BAD`]'s `Count` is `"many"`.
//! - `feed/after/{key}`: keyset pages with the key in the path (`start` for the first),
//!   `?limit=`, `{"data": [...], "has_more": bool}`.
//! - `future`: skip/limit pages of the records created after `?created_after=` (all
//!   without it), record [`FUTURE_AT`] stamped `2099-01-01T00:00:00Z` (a test record, a
//!   clock bug).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{SealToken, Shape, Shared, SkipLimit, page_body, serve};

const NAME: &str = "seal";
/// The most records a `ragged` page holds.
pub const RAGGED_CAP: u64 = 50;
/// Pages of `changing` after which the collection changes.
pub const CHANGES: u64 = 5;
/// Records inserted or deleted after each of those pages.
pub const CHANGE: u64 = 3;
/// The record of `future` stamped in 2099.
pub const FUTURE_AT: u64 = 7;
/// Its `created_at`.
pub const FUTURE_TIME: &str = "2099-01-01T00:00:00Z";
/// The Airtable record whose `Count` is not a number.
pub const AIRTABLE_BAD: u64 = 170;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/shapes/stripe/customers", get(stripe))
        .route("/shapes/google/users", get(google))
        .route("/shapes/totals/{form}", get(totals))
        .route("/shapes/ragged", get(ragged))
        .route("/shapes/changing/{change}", get(changing))
        .route("/shapes/future", get(future))
        .route("/shapes/slack/conversations.list", get(slack))
        .route("/shapes/zendesk/tickets", get(zendesk))
        .route("/shapes/airtable/records", get(airtable))
        .route("/shapes/feed/after/{key}", get(feed))
}

#[derive(Deserialize)]
struct StripeQuery {
    limit: Option<u64>,
    starting_after: Option<u64>,
}

/// Stripe's list object, keyset pages after the id of the last record.
async fn stripe(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<StripeQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let start = q.starting_after.map_or(0, |id| id + 1);
    let end = (start + limit).min(shared.records());
    let extra = [
        ("object", "list".into()),
        ("url", "/v1/customers".into()),
        ("has_more", (end < shared.records()).into()),
    ];
    let body = tail_first(page_body(&shared, Shape::Bare, start, limit, &[]), &extra);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleQuery {
    page_token: Option<String>,
    max_results: Option<u64>,
}

/// Google's `nextPageToken` pages, with empty and short pages mid-stream.
async fn google(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<GoogleQuery>,
) -> Response {
    // An opaque-looking token holding the next record and the page's number.
    let (start, page) = q
        .page_token
        .as_deref()
        .and_then(|t| t.strip_prefix("CkQ"))
        .and_then(|t| t.split_once('Z'))
        .and_then(|(s, p)| Some((u64::from_str_radix(s, 16).ok()?, p.parse().ok()?)))
        .unwrap_or((0u64, 0u64));
    let asked = q.max_results.unwrap_or(100).clamp(1, 500);
    let size = match page % 3 {
        1 => 0,
        2 => asked / 2,
        _ => asked,
    };
    let end = (start + size).min(shared.records());
    let mut extra: Vec<(&str, serde_json::Value)> = vec![
        ("kind", "admin#directory#users".into()),
        ("etag", "\"sandbox/etag\"".into()),
    ];
    if end < shared.records() {
        extra.push(("nextPageToken", format!("CkQ{end:x}Z{}", page + 1).into()));
    }
    let mut body = b"{\"users\":".to_vec();
    shared.records_array(start, end - start, &mut body);
    for (k, v) in &extra {
        body.extend_from_slice(format!(",{}:{v}", serde_json::Value::from(*k)).as_bytes());
    }
    body.push(b'}');
    serve(&shared, NAME, &token, body, Vec::new()).await
}

#[derive(Deserialize)]
struct TotalsQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    lie: Option<u8>,
}

/// Skip/limit pages whose total is a whole number in another JSON form.
async fn totals(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Path(form): Path<String>,
    Query(q): Query<TotalsQuery>,
) -> Response {
    let (skip, limit) = SkipLimit {
        skip: q.skip,
        limit: q.limit,
    }
    .get();
    let total = shared.records()
        + if q.lie == Some(1) {
            super::hostile::LIE
        } else {
            0
        };
    let total = match form.as_str() {
        "float" => format!("{total}.0"),
        "exp" => format!("{}e1", total as f64 / 10.0),
        _ => format!("\"{total}\""),
    };
    let mut body = b"{\"data\":".to_vec();
    shared.records_array(skip, limit, &mut body);
    body.extend_from_slice(format!(",\"total\":{total}}}").as_bytes());
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// Skip/limit pages of 20 to [`RAGGED_CAP`] records, whatever is asked.
async fn ragged(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<SkipLimit>,
) -> Response {
    let (skip, limit) = q.get();
    let size = ragged_size(skip).min(limit);
    let body = page_body(&shared, Shape::Data, skip, size, &[]);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// The records a `ragged` page at `skip` holds.
pub fn ragged_size(skip: u64) -> u64 {
    20 + (skip * 7919) % (RAGGED_CAP - 19)
}

#[derive(Deserialize)]
struct ChangingQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    starting_after: Option<u64>,
}

/// Newest first, the collection changing after each of the first pages served.
async fn changing(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Path(change): Path<String>,
    Query(q): Query<ChangingQuery>,
) -> Response {
    let served = shared.changing_pages.load(Ordering::Relaxed).min(CHANGES);
    let base = shared.records();
    // The ids in the list now, newest first: `top` down to `bottom`.
    let (top, bottom) = match change.as_str() {
        "insert" => (base + served * CHANGE, 0),
        _ => (base.saturating_sub(served * CHANGE), 0),
    };
    let limit = q.limit.unwrap_or(100).min(shared.config.max_page_size);
    let first = match q.starting_after {
        // The next id below the key that is still in the list.
        Some(key) => key.min(top),
        None => top.saturating_sub(q.skip.unwrap_or(0)),
    };
    let ids: Vec<u64> = (bottom..first).rev().take(limit as usize).collect();
    let mut body = b"{\"data\":[".to_vec();
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        super::data::write_record(*id, &mut body);
    }
    let more = ids.last().is_some_and(|&last| last > bottom);
    body.extend_from_slice(
        format!("],\"total\":{},\"has_more\":{more}}}", top - bottom).as_bytes(),
    );
    shared.changing_pages.fetch_add(1, Ordering::Relaxed);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// The record an opaque cursor `<prefix><n>` points to; the first without one.
fn position(cursor: Option<&str>, prefix: &str) -> u64 {
    cursor
        .and_then(|c| c.strip_prefix(prefix))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `{"a": .., "data": [...]}` from a bare array: the envelope's fields before the records,
/// as Stripe sends them.
fn tail_first(records: Vec<u8>, fields: &[(&str, serde_json::Value)]) -> Vec<u8> {
    let mut body = b"{".to_vec();
    for (k, v) in fields {
        body.extend_from_slice(format!("{}:{v},", serde_json::Value::from(*k)).as_bytes());
    }
    body.extend_from_slice(b"\"data\":");
    body.extend_from_slice(&records);
    body.push(b'}');
    body
}

#[derive(Deserialize)]
struct FutureQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    created_after: Option<String>,
}

/// Record `i` as `future` serves it.
fn future_record(i: u64) -> super::data::Record {
    let mut record = super::data::record(i);
    if i == FUTURE_AT {
        record.created_at = FUTURE_TIME.into();
    }
    record
}

/// Skip/limit pages of the records created after `created_after`; one from 2099.
async fn future(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<FutureQuery>,
) -> Response {
    let after = q
        .created_after
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let matching: Vec<u64> = (0..shared.records())
        .filter(|&i| {
            let at = chrono::DateTime::parse_from_rfc3339(&future_record(i).created_at);
            after.is_none_or(|after| at.is_ok_and(|at| at > after))
        })
        .collect();
    let (skip, limit) = (
        q.skip.unwrap_or(0) as usize,
        q.limit.unwrap_or(100) as usize,
    );
    let page: Vec<_> = matching
        .iter()
        .skip(skip)
        .take(limit)
        .map(|&i| future_record(i))
        .collect();
    let body = serde_json::json!({"data": page, "total": matching.len()});
    serve(
        &shared,
        NAME,
        &token,
        body.to_string().into_bytes(),
        Vec::new(),
    )
    .await
}

#[derive(Deserialize)]
struct SlackQuery {
    cursor: Option<String>,
    limit: Option<u64>,
    fail: Option<String>,
    fail_count: Option<u64>,
}

/// Slack's cursor lists, errors stated at HTTP 200.
async fn slack(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<SlackQuery>,
) -> Response {
    let n = shared.stated_requests.fetch_add(1, Ordering::Relaxed);
    if let Some(code) = &q.fail
        && q.fail_count.is_none_or(|count| n < count)
    {
        let body = serde_json::json!({"ok": false, "error": code});
        return serve(
            &shared,
            NAME,
            &token,
            body.to_string().into_bytes(),
            Vec::new(),
        )
        .await;
    }
    // Slack's cursors are base64 of an opaque position; here `dXNlcjo` and the next record.
    let start = position(q.cursor.as_deref(), "dXNlcjo");
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let end = (start + limit).min(shared.records());
    let next = match end < shared.records() {
        true => format!("dXNlcjo{end}"),
        false => String::new(),
    };
    let mut body = b"{\"ok\":true,\"channels\":".to_vec();
    shared.records_array(start, end - start, &mut body);
    body.extend_from_slice(
        format!(",\"response_metadata\":{{\"next_cursor\":\"{next}\"}}}}").as_bytes(),
    );
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// Zendesk ticket `i`: `via.source.from` and `to` always `{}`.
pub fn zendesk_ticket(i: u64) -> serde_json::Value {
    let at = chrono::DateTime::from_timestamp(1_767_225_600 + i as i64 * 60, 0).expect("in range");
    let status = ["new", "open", "pending", "solved"][i as usize % 4];
    serde_json::json!({
        "id": i + 1,
        "subject": format!("Ticket #{i}: Zoë can't log in ✨"),
        "status": status,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": null}},
        "created_at": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

#[derive(Deserialize)]
struct ZendeskQuery {
    #[serde(rename = "page[size]")]
    size: Option<u64>,
    #[serde(rename = "page[after]")]
    after: Option<String>,
}

/// Zendesk's cursor pages of tickets.
async fn zendesk(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<ZendeskQuery>,
) -> Response {
    let start = position(q.after.as_deref(), "eyJv");
    let size = q.size.unwrap_or(100).clamp(1, 100);
    let end = (start + size).min(shared.records());
    let tickets: Vec<_> = (start..end).map(zendesk_ticket).collect();
    let body = serde_json::json!({
        "tickets": tickets,
        "meta": {"has_more": end < shared.records(), "after_cursor": format!("eyJv{end}"),
                 "before_cursor": format!("eyJv{start}")},
        "links": {"prev": null, "next": null},
    });
    serve(
        &shared,
        NAME,
        &token,
        body.to_string().into_bytes(),
        Vec::new(),
    )
    .await
}

/// Airtable record `i`: fields that are empty are left out, as Airtable does; `Tags` first
/// from record 150 on, `Address.zip` from 220 on.
pub fn airtable_record(i: u64) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    fields.insert("Name".into(), format!("Item {i} — ñandú").into());
    fields.insert(
        "Count".into(),
        match i {
            AIRTABLE_BAD => "many".into(),
            _ => (i * 3).into(),
        },
    );
    if i % 5 == 3 {
        fields.insert("Notes".into(), format!("note {i}").into());
    }
    if i >= 150 && i.is_multiple_of(2) {
        fields.insert("Tags".into(), serde_json::json!(["a", format!("t{i}")]));
    }
    let mut address = serde_json::Map::new();
    let city = ["Málaga", "Zürich"][i as usize % 2];
    address.insert("city".into(), city.into());
    if i >= 220 {
        address.insert("zip".into(), format!("{:05}", i * 7).into());
    }
    fields.insert("Address".into(), address.into());
    serde_json::json!({
        "id": format!("rec{i:014}"),
        "createdTime": "2026-01-01T00:00:00.000Z",
        "fields": fields,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AirtableQuery {
    page_size: Option<u64>,
    offset: Option<String>,
}

/// Airtable's pages of records.
async fn airtable(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<AirtableQuery>,
) -> Response {
    let start = position(q.offset.as_deref(), "itrZ/rec");
    let size = q.page_size.unwrap_or(100).clamp(1, 100);
    let end = (start + size).min(shared.records());
    let records: Vec<_> = (start..end).map(airtable_record).collect();
    let mut body = serde_json::json!({ "records": records });
    if end < shared.records() {
        body["offset"] = format!("itrZ/rec{end}").into();
    }
    serve(
        &shared,
        NAME,
        &token,
        body.to_string().into_bytes(),
        Vec::new(),
    )
    .await
}

/// Keyset pages with the key in the path: the records after id `key` (`start`: from the
/// first).
async fn feed(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Path(key): Path<String>,
    Query(q): Query<SkipLimit>,
) -> Response {
    let start = match key.as_str() {
        "start" => 0,
        id => match id.parse::<u64>() {
            Ok(id) => id + 1,
            Err(_) => {
                return super::json_error(
                    axum::http::StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("`{id}` is not a key")}),
                );
            }
        },
    };
    let limit = q.limit.unwrap_or(100).min(shared.config.max_page_size);
    let end = (start + limit).min(shared.records());
    let more = [("has_more", (end < shared.records()).into())];
    let body = tail_first(page_body(&shared, Shape::Bare, start, limit, &[]), &more);
    serve(&shared, NAME, &token, body, Vec::new()).await
}
