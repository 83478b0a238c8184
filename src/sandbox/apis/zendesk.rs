//! Zendesk incremental cursor export: `GET /api/v2/incremental/tickets/cursor.json`. The
//! first request names `?start_time=<unix seconds>`, the next ones `?cursor=<after_cursor>`;
//! `{"tickets": [...], "after_url", "after_cursor", "before_url", "before_cursor",
//! "end_of_stream"}`. `end_of_stream` is true on the page that reaches the present, which
//! still carries an `after_cursor` (kept for the next poll): asked for, it answers an empty
//! page with the same cursor. `per_page` 1000 by default and at most. Tickets come in
//! `updated_at` order; `via.source.from` and `to` are always `{}`, as Zendesk sends them.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;

use super::{Credential, Sends, Shared, TOKEN};

/// The Basic user of an API token: `{email}/token`.
pub const BASIC_USER: &str = "analyst@example.com/token";
/// Ticket `i`'s id is `FIRST_ID + i`.
const FIRST_ID: u64 = 35_436;
/// Seconds between two tickets' `updated_at` (as [`super::created`]).
const STEP: i64 = 67;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Basic(BASIC_USER, TOKEN), Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    let body = serde_json::json!({"error": "Couldn't authenticate you"});
    super::reply(StatusCode::UNAUTHORIZED, &body, &[])
}

fn invalid(description: &str) -> Response {
    let body =
        serde_json::json!({"error": "InvalidPaginationParameter", "description": description});
    super::reply(StatusCode::BAD_REQUEST, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/v2/incremental/tickets/cursor.json", get(tickets))
}

fn z(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Ticket `i`: updated at [`super::created`]`(i)`, so that the export's order is the data
/// set's; created up to a month before.
pub fn record(i: u64) -> serde_json::Value {
    let id = FIRST_ID + i;
    let updated = super::created(i);
    let created = updated - chrono::Duration::days((i % 30) as i64);
    let tags: Vec<&str> = ["vip", "facturación", "返品", "urgent"]
        .into_iter()
        .take((i % 3) as usize)
        .collect();
    let external = (i % 10 == 4).then(|| format!("crm-{i}"));
    let value = (!super::blank(i, 70)).then(|| super::pick(&["gold", "silver", "bronze"], i, 71));
    let priority = super::pick(&[None, Some("low"), Some("normal"), Some("high")], i, 74);
    serde_json::json!({
        "url": format!("https://acme.zendesk.com/api/v2/tickets/{id}.json"),
        "id": id,
        "external_id": external,
        "via": {
            "channel": super::pick(&["web", "email", "api"], i, 72),
            "source": {"from": {}, "to": {}, "rel": null},
        },
        "created_at": z(created),
        "updated_at": z(updated),
        "subject": format!("{}: no puedo iniciar sesión 🙁", super::name(i)),
        "status": super::pick(&["new", "open", "pending", "solved", "closed"], i, 73),
        "priority": priority,
        "requester_id": 20_978_392 + i % 400,
        "tags": tags,
        "custom_fields": [{"id": 360_001_234, "value": value}],
    })
}

/// Zendesk's cursors: base64 of `<updated_at>.0||<id>|` of the last ticket returned.
fn cursor(last: u64) -> String {
    let text = format!(
        "{}.0||{}|",
        super::created(last).timestamp(),
        FIRST_ID + last
    );
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The ticket a cursor was issued after.
fn read_cursor(cursor: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (_, id) = text.split_once("||")?;
    id.strip_suffix('|')?
        .parse::<u64>()
        .ok()?
        .checked_sub(FIRST_ID)
}

#[derive(Deserialize)]
struct ExportQuery {
    start_time: Option<i64>,
    cursor: Option<String>,
    per_page: Option<u64>,
}

async fn tickets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let per_page = q.per_page.unwrap_or(1000).clamp(1, 1000);
    let start = match (&q.cursor, q.start_time) {
        (Some(c), _) => match read_cursor(c) {
            Some(last) => last + 1,
            None => return invalid("cursor is invalid"),
        },
        // The first ticket updated at or after `start_time`.
        (None, Some(t)) if t >= 0 => match t - super::BASE_TIME {
            behind if behind <= 0 => 0,
            after => (after as u64).div_ceil(STEP as u64),
        },
        (None, Some(_)) => return invalid("start_time must be a positive unix time"),
        (None, None) => return invalid("start_time or cursor is required"),
    };
    let (tickets, end) = super::page(&shared, start, per_page, record);
    let after = match end {
        0 => None,
        end => Some(cursor(end - 1)),
    };
    let url = |c: &str| {
        format!(
            "{}/zendesk/api/v2/incremental/tickets/cursor.json?{}",
            super::origin(&shared),
            super::query(&[("cursor", c.to_string())])
        )
    };
    let before = (start > 0).then(|| cursor(start - 1));
    let body = serde_json::json!({
        "tickets": tickets,
        "after_url": after.as_deref().map(url),
        "after_cursor": after,
        "before_url": before.as_deref().map(url),
        "before_cursor": before,
        "end_of_stream": end >= shared.records(),
    });
    let limits = vec![
        (HeaderName::from_static("x-rate-limit"), "700".to_string()),
        (
            HeaderName::from_static("x-rate-limit-remaining"),
            "699".to_string(),
        ),
    ];
    super::answer(&shared, body, limits).await
}
