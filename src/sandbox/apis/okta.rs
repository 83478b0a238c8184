//! Okta Management API: `GET /api/v1/users`, `Authorization: SSWS <token>`. A bare array;
//! the next page only in the `Link` header, on its own line beside `rel="self"`: the
//! absolute URL with `after=<the last user's id>`; no `rel="next"` on the last page.
//! `limit` 200 by default and at most. With `q=` (a search) at most 10 users and no
//! paging, as Okta documents. `credentials.password` is always `{}`; times are
//! `2026-01-01T10:00:00.000Z`, `null` for what never happened.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

const SALT: u64 = 80;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("SSWS"), Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "E0000011",
        "Invalid token provided",
        &[],
    )
}

/// Okta's error body.
fn error(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<_> = causes
        .iter()
        .map(|c| serde_json::json!({ "errorSummary": c }))
        .collect();
    let body = serde_json::json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": format!("oae{}", super::base62(super::mix(status.as_u16().into(), 81), 19)),
        "errorCauses": causes,
    });
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/v1/users", get(users))
}

fn id(i: u64) -> String {
    format!("{}0g4", super::opaque_id("00u", i, SALT))
}

/// The index of the user whose id is `id`.
pub(super) fn index(id: &str) -> Option<u64> {
    super::opaque_index("00u", id.strip_suffix("0g4")?, SALT)
}

fn ms_z(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

/// User `i`.
pub fn record(i: u64) -> serde_json::Value {
    let id = id(i);
    let status = super::pick(
        &[
            "ACTIVE",
            "ACTIVE",
            "ACTIVE",
            "STAGED",
            "PROVISIONED",
            "SUSPENDED",
        ],
        i,
        82,
    );
    let activated = matches!(status, "ACTIVE" | "SUSPENDED").then(|| ms_z(super::created(i)));
    let last_login = (status == "ACTIVE" && !super::blank(i, 83)).then(|| ms_z(super::updated(i)));
    let login = format!("user{i}@example.com");
    let mobile = (i.is_multiple_of(4)).then(|| format!("+34 6{:08}", i % 100_000_000));
    serde_json::json!({
        "id": id,
        "status": status,
        "created": ms_z(super::created(i)),
        "activated": activated,
        "statusChanged": activated,
        "lastLogin": last_login,
        "lastUpdated": ms_z(super::updated(i)),
        "passwordChanged": activated,
        "type": {"id": "oty1162QAr8hJjTaq0g4"},
        "profile": {
            "firstName": super::name(i),
            "lastName": super::pick(&["Smith", "Sánchez", "Østergaard", "田中"], i, 84),
            "mobilePhone": mobile,
            "secondEmail": null,
            "login": login,
            "email": login,
        },
        "credentials": {"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": format!("https://acme.okta.com/api/v1/users/{id}")}},
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u64>,
    after: Option<String>,
    q: Option<String>,
}

async fn users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let search = query.q.is_some();
    let limit = match search {
        true => query.limit.unwrap_or(10).clamp(1, 10),
        false => query.limit.unwrap_or(200).clamp(1, 200),
    };
    let start = match query.after.as_deref() {
        None => 0,
        Some(after) => match index(after) {
            Some(last) => last + 1,
            None => {
                let cause = "after: the cursor is not one this endpoint issued";
                return error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: after",
                    &[cause],
                );
            }
        },
    };
    let (users, end) = super::page(&shared, start, limit, record);
    let url = |after: Option<&str>| {
        let mut pairs = Vec::new();
        if let Some(after) = after {
            pairs.push(("after", after.to_string()));
        }
        pairs.push(("limit", limit.to_string()));
        format!(
            "{}/okta/api/v1/users?{}",
            super::origin(&shared),
            super::query(&pairs)
        )
    };
    let reset = chrono::Utc::now().timestamp() + 60;
    // One `Link` line each, as Okta sends them.
    let mut out = vec![
        (
            header::LINK,
            format!("<{}>; rel=\"self\"", url(query.after.as_deref())),
        ),
        (
            HeaderName::from_static("x-rate-limit-limit"),
            "600".to_string(),
        ),
        (
            HeaderName::from_static("x-rate-limit-remaining"),
            "599".to_string(),
        ),
        (
            HeaderName::from_static("x-rate-limit-reset"),
            reset.to_string(),
        ),
    ];
    if !search && end < shared.records() && end > start {
        out.push((
            header::LINK,
            format!("<{}>; rel=\"next\"", url(Some(&id(end - 1)))),
        ));
    }
    super::answer(&shared, serde_json::Value::Array(users), out).await
}
