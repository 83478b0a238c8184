//! Twilio: `GET /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic with the
//! Account SID and the Auth Token. `{"end", "first_page_uri", "messages": [...],
//! "next_page_uri", "page", "page_size", "previous_page_uri", "start", "uri"}`: follow
//! `next_page_uri` (relative to the API's host: here under `/twilio`), `null` on the last
//! page. It carries an opaque `PageToken` (`PA` and the last message's sid). `PageSize` 50 by
//! default; over 1000 is an error (20007), not capped, as Twilio documents. Times are
//! RFC 2822; counts and prices are strings; `date_sent` is `null` until sent.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{BASIC_PASSWORD, Credential, Sends, Shared, TWILIO_ACCOUNT_SID};

const SALT: u64 = 130;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Basic(TWILIO_ACCOUNT_SID, BASIC_PASSWORD)],
    refused,
};

fn refused(_missing: bool) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
    );
    response
}

/// Twilio's error body.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/2010-04-01/Accounts/{sid}/Messages.json", get(messages))
}

fn sid(i: u64) -> String {
    super::hex_id("SM", i, SALT, 20, 12)
}

/// The index of the message whose sid is `sid`.
pub(super) fn index(sid: &str) -> Option<u64> {
    super::hex_index("SM", sid, SALT, 20, 12)
}

/// RFC 2822, as Twilio writes it: `Tue, 14 Aug 2018 19:37:39 +0000`.
fn rfc2822(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// Message `i`.
pub fn record(i: u64) -> serde_json::Value {
    let sid = sid(i);
    let status = super::pick(
        &[
            "delivered",
            "delivered",
            "sent",
            "failed",
            "queued",
            "received",
        ],
        i,
        131,
    );
    let inbound = status == "received";
    let sent =
        (status != "queued").then(|| rfc2822(super::created(i) + chrono::Duration::seconds(1)));
    let price =
        (status != "queued" && !super::blank(i, 132)).then(|| format!("-0.0{:04}", 750 + i % 50));
    let error_code = (status == "failed").then_some(30003);
    let body = super::pick(
        &[
            "Hola 👋 tu código es",
            "ご予約を確認しました",
            "Votre colis arrive",
            "Your code is",
        ],
        i,
        133,
    );
    let (ours, theirs) = (
        "+15017122661".to_string(),
        format!("+3460{:07}", i % 10_000_000),
    );
    let (from, to) = if inbound {
        (theirs, ours)
    } else {
        (ours, theirs)
    };
    let own = format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{sid}");
    serde_json::json!({
        "account_sid": TWILIO_ACCOUNT_SID,
        "body": format!("{body} {:06}", super::mix(i, 134) % 1_000_000),
        "date_created": rfc2822(super::created(i)),
        "date_sent": sent,
        "direction": if inbound { "inbound" } else { "outbound-api" },
        "error_code": error_code,
        "from": from,
        "num_segments": (1 + i % 3).to_string(),
        "price": price,
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": format!("{own}/Media.json"),
            "feedback": format!("{own}/Feedback.json"),
        },
        "to": to,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQuery {
    page_size: Option<u64>,
    page: Option<u64>,
    page_token: Option<String>,
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let path = format!("/2010-04-01/Accounts/{account}/Messages.json");
    if account != TWILIO_ACCOUNT_SID {
        let message = format!("The requested resource {path} was not found");
        return error(StatusCode::NOT_FOUND, 20404, &message);
    }
    let size = q.page_size.unwrap_or(50).max(1);
    if size > 1000 {
        return error(StatusCode::BAD_REQUEST, 20007, "Page size too large");
    }
    let page = q.page.unwrap_or(0);
    // `PA<sid>`: the page after that message; `PB<sid>`: the page before it.
    let start = match q.page_token.as_deref() {
        None => page.saturating_mul(size),
        Some(token) => match (token.get(..2), token.get(2..).and_then(index)) {
            (Some("PA"), Some(last)) => last + 1,
            (Some("PB"), Some(first)) => first.saturating_sub(size),
            _ => return error(StatusCode::BAD_REQUEST, 20001, "Invalid PageToken"),
        },
    };
    let (messages, end) = super::page(&shared, start, size, record);
    // Relative to the API's host, which for the sandbox's Twilio is `/twilio`.
    let uri = |page: u64, token: Option<String>| {
        let mut pairs = vec![("PageSize", size.to_string()), ("Page", page.to_string())];
        if let Some(token) = token {
            pairs.push(("PageToken", token));
        }
        format!("/twilio{path}?{}", super::query(&pairs))
    };
    let next = (end < shared.records() && end > start)
        .then(|| uri(page + 1, Some(format!("PA{}", sid(end - 1)))));
    let previous =
        (start > 0 && page > 0).then(|| uri(page - 1, Some(format!("PB{}", sid(start)))));
    let body = serde_json::json!({
        "end": if end > start { end - 1 } else { start },
        "first_page_uri": uri(0, None),
        "messages": messages,
        "next_page_uri": next,
        "page": page,
        "page_size": size,
        "previous_page_uri": previous,
        "start": start,
        "uri": uri(page, q.page_token.clone()),
    });
    let id = (
        HeaderName::from_static("twilio-request-id"),
        format!("RQ{}", uuid::Uuid::new_v4().simple()),
    );
    super::answer(&shared, body, vec![id]).await
}
