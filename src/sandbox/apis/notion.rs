//! Notion: `POST /v1/databases/{id}/query` (and, since version 2025-09-03,
//! `POST /v1/data_sources/{id}/query`, the same list). The paging parameters go in the JSON
//! body: `{"page_size": N, "start_cursor": "…"}`; `{"object": "list", "results": [...],
//! "next_cursor", "has_more", "type": "page_or_database", "page_or_database": {}}`, and at the
//! end `has_more: false` with `next_cursor: null`. The cursor is the id of the next page, as
//! Notion's are. `page_size` 100 by default and at most. The `Notion-Version` header is
//! required (400 `missing_version` without it). Page times have whole minutes
//! (`…T10:04:00.000Z`); property values are typed objects, `null` when unset.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;

use super::{Credential, Sends, Shared};

/// The database every page is in.
const DATABASE: &str = "a1d8501e-1ac1-43e9-a6bd-ea9fe6c8822b";
/// Scrambles the index in a page id's last group.
const MASK: u64 = 0x5f3a_9c11_d2e4;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "API token is invalid.",
    )
}

/// Notion's error body.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "object": "error",
        "status": status.as_u16(),
        "code": code,
        "message": message,
        "request_id": uuid::Uuid::new_v4().to_string(),
    });
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/databases/{id}/query", post(query))
        .route("/v1/data_sources/{id}/query", post(query))
}

/// A version-4 UUID whose last group holds `i`.
fn uuid_of(i: u64, salt: u64) -> String {
    let (a, b) = (super::mix(i, salt), super::mix(i, salt + 1));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        (i ^ MASK) & 0xffff_ffff_ffff,
    )
}

/// The index of the page whose id is `id`.
pub(super) fn index(id: &str) -> Option<u64> {
    let (_, last) = id.rsplit_once('-')?;
    let i = u64::from_str_radix(last, 16).ok()? ^ MASK;
    (last.len() == 12 && uuid_of(i, 100) == id).then_some(i)
}

/// `2022-10-24T22:54:00.000Z`: whole minutes.
fn minutes(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:00.000Z").to_string()
}

/// Page `i`.
pub fn record(i: u64) -> serde_json::Value {
    let id = uuid_of(i, 100);
    let title = format!("{} — sprint {i}", super::name(i));
    let user = serde_json::json!({"object": "user", "id": uuid_of(i % 5, 102)});
    let icon = (i.is_multiple_of(3)).then(|| serde_json::json!({"type": "emoji", "emoji": "🚀"}));
    let select = (!super::blank(i, 104)).then(|| {
        let (name, color) = super::pick(
            &[
                ("Not started", "gray"),
                ("En curso", "blue"),
                ("完了", "green"),
            ],
            i,
            105,
        );
        serde_json::json!({"id": format!("opt{}", i % 3), "name": name, "color": color})
    });
    let due = (i.is_multiple_of(2)).then(|| {
        let day = (super::created(i) + chrono::Duration::days(7))
            .format("%Y-%m-%d")
            .to_string();
        serde_json::json!({"start": day, "end": null, "time_zone": null})
    });
    let slug: String = title
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    serde_json::json!({
        "object": "page",
        "id": id,
        "created_time": minutes(super::created(i)),
        "last_edited_time": minutes(super::updated(i)),
        "created_by": user,
        "last_edited_by": user,
        "cover": null,
        "icon": icon,
        "parent": {"type": "database_id", "database_id": DATABASE},
        "archived": false,
        "in_trash": false,
        "properties": {
            "Name": {"id": "title", "type": "title", "title": [{
                "type": "text",
                "text": {"content": title, "link": null},
                "plain_text": title,
                "href": null,
            }]},
            "Status": {"id": "%3AbKr", "type": "select", "select": select},
            "Due": {"id": "M%3BBw", "type": "date", "date": due},
        },
        "url": format!("https://www.notion.so/{slug}-{}", id.replace('-', "")),
    })
}

async fn query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    if !headers.contains_key("notion-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, \
             instead was `undefined`.",
        );
    }
    let request: serde_json::Value = match body.is_empty() {
        true => serde_json::json!({}),
        false => match serde_json::from_slice(&body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "Error parsing JSON body.",
                );
            }
        },
    };
    let size = match &request["page_size"] {
        serde_json::Value::Null => 100,
        v => match v.as_u64() {
            Some(n) => n.clamp(1, 100),
            None => {
                let message = "body failed validation: body.page_size should be a number.";
                return error(StatusCode::BAD_REQUEST, "validation_error", message);
            }
        },
    };
    let start = match &request["start_cursor"] {
        serde_json::Value::Null => 0,
        v => match v.as_str().and_then(index) {
            Some(start) => start,
            None => {
                let message = format!("start_cursor provided is invalid: {v}");
                return error(StatusCode::BAD_REQUEST, "validation_error", &message);
            }
        },
    };
    let (results, end) = super::page(&shared, start, size, record);
    let more = end < shared.records();
    let body = serde_json::json!({
        "object": "list",
        "results": results,
        "next_cursor": more.then(|| uuid_of(end, 100)),
        "has_more": more,
        "type": "page_or_database",
        "page_or_database": {},
        "request_id": uuid::Uuid::new_v4().to_string(),
    });
    super::answer(&shared, body, Vec::new()).await
}
