//! Slack Web API: `GET /api/users.list` (POST too, parameters in the query). `{"ok": true,
//! "members": [...], "cache_ts", "response_metadata": {"next_cursor"}}`; send `?cursor=`
//! back; `next_cursor` is `""` on the last page. `limit` is capped at 1000; some pages
//! hold fewer members than asked while more follow (Slack: "It's possible to receive fewer
//! results than your specified limit"). Every failure is HTTP 200 with `{"ok": false,
//! "error": CODE}`: `not_authed`, `invalid_auth`, `invalid_cursor`, and `limit_required`
//! when a workspace this large is asked for without a `limit`. Times are unix seconds.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

/// Member `i`'s id is `U0` and `ID_BASE + i` in eight hex digits.
const ID_BASE: u64 = 0x4A3C_0000;
/// The most members one answer holds without a `limit`.
const WHOLE_SET: u64 = 1000;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(missing: bool) -> Response {
    stated(if missing {
        "not_authed"
    } else {
        "invalid_auth"
    })
}

/// An error as Slack states it: HTTP 200, `ok: false`.
fn stated(code: &str) -> Response {
    super::reply(
        StatusCode::OK,
        &serde_json::json!({"ok": false, "error": code}),
        &[],
    )
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/users.list", get(users).post(users))
}

fn id(i: u64) -> String {
    format!("U0{:08X}", ID_BASE.wrapping_add(i))
}

/// The index of the member whose id is `id`.
pub(super) fn index(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("U0").filter(|h| h.len() == 8)?;
    u64::from_str_radix(hex, 16).ok()?.checked_sub(ID_BASE)
}

/// Member `i`.
pub fn record(i: u64) -> serde_json::Value {
    let bot = i % 40 == 7;
    let tz = (!super::blank(i, 50)).then(|| {
        super::pick(
            &["Europe/Madrid", "Asia/Tokyo", "America/Los_Angeles"],
            i,
            51,
        )
    });
    // Bots have no e-mail.
    let email = (!bot).then(|| format!("member{i}@example.com"));
    let away = i.is_multiple_of(6);
    serde_json::json!({
        "id": id(i),
        "team_id": "T012AB3C4",
        "name": format!("member.{i}"),
        "deleted": i % 25 == 24,
        "real_name": super::name(i),
        "tz": tz,
        "is_admin": i.is_multiple_of(50),
        "is_bot": bot,
        "updated": super::updated(i).timestamp(),
        "profile": {
            "email": email,
            "display_name": super::name(i + 1),
            "status_text": if away { "Vacaciones 🌴" } else { "" },
            "image_48": format!("https://avatars.slack-edge.com/2026-01-01/{i}_48.png"),
        },
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u64>,
    cursor: Option<String>,
}

/// Slack's cursors: base64 of `user:<the next member's id>`.
fn next_cursor(next: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("user:{}", id(next)))
}

fn read_cursor(cursor: &str) -> Option<u64> {
    let text = base64::engine::general_purpose::STANDARD
        .decode(cursor.trim())
        .ok()?;
    index(std::str::from_utf8(&text).ok()?.strip_prefix("user:")?)
}

async fn users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let total = shared.records();
    let start = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match read_cursor(c) {
            Some(start) => start,
            None => return stated("invalid_cursor"),
        },
    };
    let limit = match q.limit.filter(|&l| l > 0) {
        Some(l) => l.min(1000),
        None if total > WHOLE_SET => return stated("limit_required"),
        None => WHOLE_SET,
    };
    // Every few pages holds a third of what was asked, more following.
    let size = match start > 0 && super::mix(start, 52).is_multiple_of(4) {
        true => (limit / 3).max(1),
        false => limit,
    };
    let (members, end) = super::page(&shared, start, size, record);
    let next = match end < total {
        true => next_cursor(end),
        false => String::new(),
    };
    let body = serde_json::json!({
        "ok": true,
        "members": members,
        "cache_ts": chrono::Utc::now().timestamp(),
        "response_metadata": {"next_cursor": next},
    });
    super::answer(&shared, body, Vec::new()).await
}
