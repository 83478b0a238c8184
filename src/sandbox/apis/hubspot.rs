//! HubSpot CRM v3: `GET /crm/v3/objects/contacts`. `{"results": [...], "paging": {"next":
//! {"after", "link"}}}`; send `?after=` back; `paging` is absent on the last page. `limit`
//! 10 by default, capped at 100. Ids are numeric strings and every property value is a
//! string (dates in properties as epoch milliseconds, `null` when unset); `createdAt` and
//! `updatedAt` are ISO 8601 with milliseconds.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

const TAG: &str = "hs-contacts";

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(missing: bool) -> Response {
    let message = match missing {
        true => {
            "Authentication credentials not found. This API supports OAuth 2.0 \
                 authentication and you can find more details at \
                 https://developers.hubspot.com/docs/methods/auth/oauth-overview"
        }
        false => "Authentication credentials not found. The access token provided is invalid.",
    };
    error(StatusCode::UNAUTHORIZED, "INVALID_AUTHENTICATION", message)
}

fn error(status: StatusCode, category: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "status": "error",
        "message": message,
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "category": category,
    });
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/crm/v3/objects/contacts", get(contacts))
}

/// `2019-10-30T03:30:17.883Z`.
fn ms_z(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Contact `i`.
pub fn record(i: u64) -> serde_json::Value {
    let id = (51 + i * 50).to_string();
    let created = super::created(i) + chrono::Duration::milliseconds(((i * 7) % 1000) as i64);
    let email = (!super::blank(i, 30)).then(|| format!("contact{i}@example.com"));
    let surname = super::pick(&["García", "Müller", "王", "O'Neil"], i, 32);
    let lastname = (!super::blank(i, 31)).then_some(surname);
    // A date property: epoch milliseconds, as a string.
    let closedate = (i % 4 == 1).then(|| (super::updated(i).timestamp() * 1000).to_string());
    serde_json::json!({
        "id": id,
        "properties": {
            "closedate": closedate,
            "createdate": ms_z(created),
            "email": email,
            "firstname": super::name(i),
            "hs_object_id": id,
            "lastmodifieddate": ms_z(super::updated(i)),
            "lastname": lastname,
            "lifecyclestage": super::pick(&["lead", "subscriber", "customer"], i, 33),
        },
        "createdAt": ms_z(created),
        "updatedAt": ms_z(super::updated(i)),
        "archived": false,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u64>,
    after: Option<String>,
}

async fn contacts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let start = match q.after.as_deref().map(|a| super::position(TAG, a)) {
        None => 0,
        Some(Some(start)) => start,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "Invalid input: `after` is not a paging cursor this endpoint issued",
            );
        }
    };
    let (results, end) = super::page(&shared, start, limit, record);
    let mut body = serde_json::json!({ "results": results });
    if end < shared.records() {
        let after = super::cursor(TAG, end);
        let pairs = [("limit", limit.to_string()), ("after", after.clone())];
        let link = format!(
            "{}/hubspot/crm/v3/objects/contacts?{}",
            super::origin(&shared),
            super::query(&pairs)
        );
        body["paging"] = serde_json::json!({"next": {"after": after, "link": link}});
    }
    let limits = [
        ("x-hubspot-ratelimit-daily", "250000"),
        ("x-hubspot-ratelimit-daily-remaining", "249999"),
        ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
        ("x-hubspot-ratelimit-max", "190"),
        ("x-hubspot-ratelimit-remaining", "189"),
    ];
    let out = limits
        .iter()
        .map(|&(k, v)| (HeaderName::from_static(k), v.to_string()))
        .collect();
    super::answer(&shared, body, out).await
}
