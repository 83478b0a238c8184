//! Stripe: `GET /v1/customers`. `{"object": "list", "url", "has_more", "data"}`; keyset
//! pages by `?starting_after=<id of the last customer>` (or `?ending_before=<id of the
//! first>`, going back), `limit` 10 by default and capped at 100. The server finds the
//! position from the id itself (`cus_` and 14 characters), as Stripe does; an id it never
//! issued is a 400 `resource_missing`. `created` is in unix seconds.
//!
//! Unlike Stripe (newest first) the customers come oldest first, so that the pages are
//! records `[start, end)` of the data set like every other sandbox API.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared, TOKEN};

const PREFIX: &str = "cus_";
const SALT: u64 = 11;

const CREDENTIAL: Credential = Credential {
    // The secret key as a Bearer token, or as the Basic user with no password (`-u sk_…:`).
    accepts: &[Sends::Scheme("Bearer"), Sends::Basic(TOKEN, "")],
    refused,
};

fn refused(missing: bool) -> Response {
    let message = match missing {
        true => "You did not provide an API key. You need to provide your API key in the \
                 Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
                 YOUR_SECRET_KEY')."
            .to_string(),
        false => "Invalid API Key provided: sand**************0123".to_string(),
    };
    error(StatusCode::UNAUTHORIZED, None, &message, None)
}

/// Stripe's error body.
fn error(status: StatusCode, code: Option<&str>, message: &str, param: Option<&str>) -> Response {
    let mut error = serde_json::json!({"message": message, "type": "invalid_request_error"});
    if let Some(code) = code {
        error["code"] = code.into();
        let page = code.replace('_', "-");
        error["doc_url"] = format!("https://stripe.com/docs/error-codes/{page}").into();
    }
    if let Some(param) = param {
        error["param"] = param.into();
    }
    super::reply(status, &serde_json::json!({ "error": error }), &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/v1/customers", get(customers))
}

/// The index of the customer whose id is `id`.
pub(super) fn index(id: &str) -> Option<u64> {
    super::opaque_index(PREFIX, id, SALT)
}

/// Customer `i`.
pub fn record(i: u64) -> serde_json::Value {
    let null = serde_json::Value::Null;
    let address = match i.is_multiple_of(3) || super::blank(i, 3) {
        true => null.clone(),
        false => serde_json::json!({
            "city": super::pick(&["Málaga", "Zürich", "Kraków", "東京"], i, 4),
            "country": super::pick(&["ES", "CH", "PL", "JP"], i, 4),
            "line1": format!("{} Calle Mayor", i % 200 + 1),
            "line2": null,
            "postal_code": format!("{:05}", (i * 37) % 100_000),
            "state": null,
        }),
    };
    let metadata = match i % 4 {
        0 => serde_json::json!({}),
        _ => serde_json::json!({"tier": super::pick(&["gold", "silver"], i, 5), "source": "web"}),
    };
    let email: serde_json::Value = match super::blank(i, 6) {
        true => null.clone(),
        false => format!("customer{i}@example.com").into(),
    };
    let description = (i.is_multiple_of(6)).then(|| format!("Cliente {}", super::name(i)));
    serde_json::json!({
        "id": super::opaque_id(PREFIX, i, SALT),
        "object": "customer",
        "address": address,
        "balance": -((i % 5) as i64) * 250,
        "created": super::created(i).timestamp(),
        "currency": super::pick(&[Some("usd"), Some("eur"), None], i, 7),
        "description": description,
        "email": email,
        "livemode": false,
        "metadata": metadata,
        "name": super::name(i),
        "phone": null,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u64>,
    starting_after: Option<String>,
    ending_before: Option<String>,
}

async fn customers(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let known = |param: &str, id: &str| match index(id) {
        Some(i) if i < shared.records() => Ok(i),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            Some("resource_missing"),
            &format!("No such customer: '{id}'"),
            Some(param),
        )),
    };
    let (start, end) = match (&q.starting_after, &q.ending_before) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                None,
                "You may only specify one of these parameters: ending_before, starting_after.",
                Some("ending_before"),
            );
        }
        (Some(id), None) => match known("starting_after", id) {
            Ok(i) => (i + 1, (i + 1 + limit).min(shared.records())),
            Err(e) => return e,
        },
        (None, Some(id)) => match known("ending_before", id) {
            Ok(i) => (i.saturating_sub(limit), i),
            Err(e) => return e,
        },
        (None, None) => (0, limit.min(shared.records())),
    };
    let (data, end) = super::page(&shared, start, end - start, record);
    // Going back, "more" is before the page; going forward, after it.
    let has_more = match q.ending_before {
        Some(_) => start > 0,
        None => end < shared.records(),
    };
    let body = serde_json::json!({
        "object": "list",
        "url": "/v1/customers",
        "has_more": has_more,
        "data": data,
    });
    super::answer(&shared, body, Vec::new()).await
}
