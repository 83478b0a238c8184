//! Airtable: `GET /v0/{baseId}/{tableIdOrName}`. `{"records": [{"id", "createdTime",
//! "fields"}], "offset"}`; send `?offset=` back; no `offset` key on the last page.
//! `pageSize` 100 by default and at most; `maxRecords` caps the whole list. "Returned
//! records do not include any fields with empty values": an empty text, an empty list or an
//! unchecked box is left out of `fields`, never `null`, so fields first appear on later
//! records. An offset the server did not issue is a 422 (`LIST_RECORDS_ITERATOR_NOT_AVAILABLE`,
//! what an expired one gets).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

const SALT: u64 = 90;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "AUTHENTICATION_REQUIRED",
        "Authentication required",
    )
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"type": kind, "message": message}});
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/v0/{base}/{table}", get(records))
}

/// Record `i`: its empty fields left out.
pub fn record(i: u64) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    fields.insert(
        "Name".into(),
        format!("{} — tarea {i}", super::name(i)).into(),
    );
    fields.insert("Count".into(), (i * 3).into());
    if i % 5 == 3 {
        fields.insert(
            "Notes".into(),
            format!("Llamar el lunes\nref {i} 📞").into(),
        );
    }
    if !super::blank(i, 91) {
        let status = super::pick(&["Todo", "In progress", "Done ✅"], i, 92);
        fields.insert("Status".into(), status.into());
    }
    // A checkbox is there only when checked.
    if i.is_multiple_of(4) {
        fields.insert("Done".into(), true.into());
    }
    let tags: Vec<&str> = ["urgent", "客户", "Q1"]
        .into_iter()
        .take((i % 3) as usize)
        .collect();
    if !tags.is_empty() {
        fields.insert("Tags".into(), tags.into());
    }
    if i.is_multiple_of(2) {
        let due = super::created(i) + chrono::Duration::days(14);
        fields.insert("Due".into(), due.format("%Y-%m-%d").to_string().into());
    }
    if i % 6 != 5 {
        let who = i % 7;
        fields.insert(
            "Assignee".into(),
            serde_json::json!({
                "id": format!("usr{}", super::base62(super::mix(who, 93), 14)),
                "email": format!("member{who}@example.com"),
                "name": super::name(who),
            }),
        );
    }
    serde_json::json!({
        "id": super::opaque_id("rec", i, SALT),
        "createdTime": super::created(i).format("%Y-%m-%dT%H:%M:%S.000Z").to_string(),
        "fields": fields,
    })
}

/// An offset: an iterator id, then the id of the next record.
fn offset(next: u64) -> String {
    let iterator = super::base62(super::mix(next, 94), 14);
    format!("itr{iterator}/{}", super::opaque_id("rec", next, SALT))
}

fn read_offset(text: &str) -> Option<u64> {
    let (iterator, rec) = text.split_once('/')?;
    if !iterator.starts_with("itr") || iterator.len() != 17 {
        return None;
    }
    super::opaque_index("rec", rec, SALT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    page_size: Option<u64>,
    offset: Option<String>,
    max_records: Option<u64>,
}

async fn records(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((base, _table)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    if !base.starts_with("app") {
        let body = serde_json::json!({"error": "NOT_FOUND"});
        return super::reply(StatusCode::NOT_FOUND, &body, &[]);
    }
    let size = q.page_size.unwrap_or(100).clamp(1, 100);
    let start = match q.offset.as_deref() {
        None => 0,
        Some(text) => match read_offset(text) {
            Some(start) => start,
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                    "The list records iterator is not available: start again from the first page",
                );
            }
        },
    };
    let last = q.max_records.unwrap_or(u64::MAX).min(shared.records());
    let size = size.min(last.saturating_sub(start));
    let (records, end) = super::page(&shared, start, size, record);
    let mut body = serde_json::json!({ "records": records });
    if end < last {
        body["offset"] = offset(end).into();
    }
    super::answer(&shared, body, Vec::new()).await
}
