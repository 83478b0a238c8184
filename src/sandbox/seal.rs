//! Seal Metrics: email + password login, `expires_at`, Bearer tokens, skip/limit pages with
//! the records under `data`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Shared, credentials, json_error, tokens};

const NAME: &str = "seal";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/stats/events", get(events))
}

#[derive(Deserialize)]
struct Login {
    email: Option<String>,
    password: Option<String>,
}

async fn login(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let counters = shared.counters(NAME);
    let login: Option<Login> = serde_json::from_slice(&body).ok();
    let ok = login.is_some_and(|l| {
        l.email.as_deref() == Some(credentials::SEAL_EMAIL)
            && l.password.as_deref() == Some(credentials::SEAL_PASSWORD)
    });
    if !ok {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "Invalid email or password"}),
        );
    }
    counters.logins.fetch_add(1, Ordering::Relaxed);
    let ttl = shared.config.token_ttl;
    let token = shared.tokens.issue(NAME, ttl);
    let expires_at = chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    axum::Json(serde_json::json!({
        "access_token": token,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Page {
    skip: Option<u64>,
    limit: Option<u64>,
}

async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    let counters = shared.counters(NAME);
    counters.data_requests.fetch_add(1, Ordering::Relaxed);
    let authorized =
        tokens::from_header(&headers, "Bearer").is_some_and(|t| shared.tokens.valid(NAME, t));
    if !authorized {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid or expired token"}),
        );
    }
    let skip = page.skip.unwrap_or(0);
    let limit = page.limit.unwrap_or(100);
    let mut body = Vec::with_capacity(64 + limit.min(10_000) as usize * 320);
    body.extend_from_slice(b"{\"data\":");
    shared.records_array(skip, limit, &mut body);
    body.extend_from_slice(format!(",\"total\":{}}}", shared.config.records).as_bytes());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
