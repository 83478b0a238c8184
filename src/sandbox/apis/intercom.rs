//! Intercom: `GET /contacts`. `{"type": "list", "data": [...], "total_count", "pages":
//! {"type": "pages", "next": {"page", "starting_after"}, "page", "per_page",
//! "total_pages"}}`; send `?starting_after=` back; `pages.next` is absent on the last page.
//! `per_page` 50 by default (the prose's figure), capped at 150. The cursor is base64 of
//! `[<created_at in ms>, "<id>"]` of the last contact, as Intercom's; another is a 400.
//! Times are unix seconds; lists inside a contact are truncated list objects.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

const SALT: u64 = 120;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Access Token Invalid",
    )
}

/// Intercom's error body.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "type": "error.list",
        "request_id": uuid::Uuid::new_v4().simple().to_string(),
        "errors": [{"code": code, "message": message}],
    });
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/contacts", get(contacts))
}

/// Contact `i`'s id: 24 hex digits, the first eight its creation time (a MongoDB id).
fn id(i: u64) -> String {
    let ts = super::created(i).timestamp();
    format!("{ts:08x}{}", super::hex_id("", i, SALT, 6, 10))
}

/// The index of the contact whose id is `id`.
pub(super) fn index(id_text: &str) -> Option<u64> {
    let i = super::hex_index("", id_text.get(8..)?, SALT, 6, 10)?;
    (id(i) == id_text).then_some(i)
}

/// Contact `i`.
pub fn record(i: u64) -> serde_json::Value {
    let id = id(i);
    let lead = i % 5 == 2;
    let created = super::created(i).timestamp();
    let tags: Vec<serde_json::Value> = (0..i % 3)
        .map(|k| {
            let tag = 700 + k;
            serde_json::json!({"type": "tag", "id": tag.to_string(), "url": format!("/tags/{tag}")})
        })
        .collect();
    let total = tags.len();
    let external = (!lead && !super::blank(i, 121)).then(|| i.to_string());
    let seen = (!i.is_multiple_of(4)).then(|| super::updated(i).timestamp());
    let (country, city) = super::pick(
        &[
            ("Spain", "Málaga"),
            ("Japan", "東京"),
            ("Iceland", "Reykjavík"),
        ],
        i,
        122,
    );
    serde_json::json!({
        "type": "contact",
        "id": id,
        "workspace_id": "ecahpwf5",
        "external_id": external,
        "role": if lead { "lead" } else { "user" },
        "email": format!("contact{i}@example.com"),
        "name": super::name(i),
        "phone": (i.is_multiple_of(10)).then(|| format!("+44 7700 9{:05}", i % 100_000)),
        "created_at": created,
        "updated_at": super::updated(i).timestamp(),
        "signed_up_at": (!lead).then_some(created),
        "last_seen_at": seen,
        "location": {"type": "location", "country": country, "region": null, "city": city},
        "tags": {
            "type": "list",
            "data": tags,
            "url": format!("/contacts/{id}/tags"),
            "total_count": total,
            "has_more": false,
        },
    })
}

/// The cursor after contact `last`.
fn cursor(last: u64) -> String {
    let key = serde_json::json!([super::created(last).timestamp() * 1000, id(last)]);
    base64::engine::general_purpose::STANDARD.encode(key.to_string())
}

fn read_cursor(cursor: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor.trim())
        .ok()?;
    let key: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    index(key.get(1)?.as_str()?)
}

#[derive(Deserialize)]
struct ListQuery {
    per_page: Option<u64>,
    starting_after: Option<String>,
}

async fn contacts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let per_page = q.per_page.unwrap_or(50).clamp(1, 150);
    let start = match q.starting_after.as_deref() {
        None => 0,
        Some(c) => match read_cursor(c) {
            Some(last) => last + 1,
            None => {
                let message = "Invalid starting_after param value, please use the starting_after \
                               value returned in the pages.next object.";
                return error(StatusCode::BAD_REQUEST, "client_error", message);
            }
        },
    };
    let total = shared.records();
    let (data, end) = super::page(&shared, start, per_page, record);
    let page = start / per_page + 1;
    let mut pages = serde_json::json!({"type": "pages"});
    if end < total && end > start {
        pages["next"] = serde_json::json!({"page": page + 1, "starting_after": cursor(end - 1)});
    }
    pages["page"] = page.into();
    pages["per_page"] = per_page.into();
    pages["total_pages"] = total.div_ceil(per_page).into();
    let body = serde_json::json!({
        "type": "list",
        "data": data,
        "total_count": total,
        "pages": pages,
    });
    let reset = chrono::Utc::now().timestamp() + 10;
    let limits = vec![
        (
            HeaderName::from_static("x-ratelimit-limit"),
            "10000".to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            "9999".to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            reset.to_string(),
        ),
    ];
    super::answer(&shared, body, limits).await
}
