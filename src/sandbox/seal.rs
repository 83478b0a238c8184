//! Seal Metrics: email + password login, `expires_at`, Bearer tokens, skip/limit pages with
//! the records under `data`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Shape, Shared, authorize, credentials, data, json_error, page_body_from, serve};

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
    if let Some(fault) = super::login_fault(&shared).await {
        return fault;
    }
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
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    /// Only records with a greater `id` (incremental syncs).
    since_id: Option<i64>,
    /// Only records created after this ISO-8601 time (incremental syncs).
    created_after: Option<String>,
}

async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let token = match authorize(&shared, NAME, &headers, "Bearer").await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut first = q.since_id.map(|id| (id + 1).max(0) as u64).unwrap_or(0);
    if let Some(after) = &q.created_after {
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(after) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("created_after `{after}` is not ISO-8601")}),
            );
        };
        first = first.max(data::first_created_after(t.timestamp()));
    }
    let body = page_body_from(
        &shared,
        Shape::Data,
        first,
        q.skip.unwrap_or(0),
        q.limit.unwrap_or(100),
        &[],
    );
    serve(&shared, NAME, &token, body, Vec::new()).await
}
