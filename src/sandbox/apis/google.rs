//! Google Drive v3: `GET /drive/v3/files` (files.list). `{"kind": "drive#fileList",
//! "nextPageToken", "incompleteSearch": false, "files": [...]}`; send `?pageToken=` back;
//! `nextPageToken` is absent at the end. `pageSize` 100 by default, capped at 1000.
//! "Partial or empty result pages are possible even before the end of the files list has
//! been reached": of every four pages the second is empty and the third half full, each
//! with a token. As Google requires (AIP-158), a token is good only with the `pageSize` it
//! was issued for. Fields without a value are left out (a folder has no `size`), never
//! `null`; `size` is an int64, so a string.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

/// What every page token starts with, as Google's do.
const TOKEN_HEAD: &str = "~!!~AI9FV7";

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "authError",
        "Invalid Credentials",
        ("header", "Authorization"),
    )
}

/// Google's error body.
fn error(status: StatusCode, reason: &str, message: &str, at: (&str, &str)) -> Response {
    let body = serde_json::json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "errors": [{
            "domain": "global",
            "reason": reason,
            "message": message,
            "locationType": at.0,
            "location": at.1,
        }],
    }});
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/drive/v3/files", get(files))
}

/// RFC 3339 with milliseconds: `2026-01-01T10:00:00.000Z`.
fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// File `i`.
pub fn record(i: u64) -> serde_json::Value {
    let (mime, ext) = super::pick(
        &[
            ("application/pdf", ".pdf"),
            ("application/vnd.google-apps.spreadsheet", ""),
            ("image/png", ".png"),
            ("text/csv", ".csv"),
        ],
        i,
        60,
    );
    let folder = i % 20 == 7;
    let mime = if folder {
        "application/vnd.google-apps.folder"
    } else {
        mime
    };
    let mut file = serde_json::json!({
        "kind": "drive#file",
        "id": format!("1{}{}", super::base62(super::mix(i, 61), 11), super::base62(i, 8)),
        "name": format!("{} — informe {i}{}", super::name(i), if folder { "" } else { ext }),
        "mimeType": mime,
        "parents": ["0AJf3kQ9xYzUk9PVA"],
        "createdTime": rfc3339(super::created(i)),
        "modifiedTime": rfc3339(super::updated(i)),
        "starred": i.is_multiple_of(9),
        "trashed": false,
        "owners": [{
            "kind": "drive#user",
            "displayName": super::name(i + 2),
            "emailAddress": format!("owner{}@example.com", i % 12),
            "me": i.is_multiple_of(12),
        }],
    });
    // Google docs and folders have no size: the key is left out.
    if !folder && !mime.starts_with("application/vnd.google-apps") {
        file["size"] = (1024 + super::mix(i, 62) % 5_000_000).to_string().into();
    }
    if i % 8 == 3 {
        file["description"] = format!("Revisión nº {i} ✅").into();
    }
    file
}

/// A page token: the next file, the next page's number and the page size.
fn page_token(start: u64, page: u64, size: u64) -> String {
    format!(
        "{TOKEN_HEAD}{}",
        super::opaque(&format!("drive:{start}:{page}:{size}"))
    )
}

fn read_page_token(token: &str) -> Option<(u64, u64, u64)> {
    let text = super::unopaque(token.strip_prefix(TOKEN_HEAD)?)?;
    let mut parts = text
        .strip_prefix("drive:")?
        .split(':')
        .map(|n| n.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    page_size: Option<u64>,
    page_token: Option<String>,
}

async fn files(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let (start, page) = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => (0, 0),
        Some(token) => match read_page_token(token) {
            Some((start, page, issued_for)) if issued_for == size => (start, page),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "Invalid Value",
                    ("parameter", "pageToken"),
                );
            }
        },
    };
    let this = match page % 4 {
        1 => 0,
        2 => (size / 2).max(1),
        _ => size,
    };
    let (files, end) = super::page(&shared, start, this, record);
    let mut body = serde_json::json!({"kind": "drive#fileList"});
    if end < shared.records() {
        body["nextPageToken"] = page_token(end, page + 1, size).into();
    }
    body["incompleteSearch"] = false.into();
    body["files"] = serde_json::Value::Array(files);
    super::answer(&shared, body, Vec::new()).await
}
