//! Spreetail: client credentials answered in a `{success, data}` envelope; `success: false`
//! is a failure even with HTTP 200. Records in the same envelope.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Shape, Shared, SkipLimit, authorize, credentials, json_error, records_page};

const NAME: &str = "spreetail";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/orders", get(orders))
}

#[derive(Deserialize)]
struct Login {
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn login(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Some(fault) = super::login_fault(&shared).await {
        return fault;
    }
    let counters = shared.counters(NAME);
    let login: Option<Login> = serde_json::from_slice(&body).ok();
    let (id, secret) = login
        .map(|l| {
            (
                l.client_id.unwrap_or_default(),
                l.client_secret.unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    if id == credentials::SPREETAIL_SUSPENDED_CLIENT_ID {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        // The guide's "account suspended" case, answered with 200.
        return axum::Json(serde_json::json!({"success": false, "error": "Account suspended"}))
            .into_response();
    }
    if id != credentials::SPREETAIL_CLIENT_ID || secret != credentials::SPREETAIL_CLIENT_SECRET {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"success": false, "error": "Invalid credentials"}),
        );
    }
    counters.logins.fetch_add(1, Ordering::Relaxed);
    let ttl = shared.config.token_ttl;
    let token = shared.tokens.issue(NAME, ttl);
    axum::Json(serde_json::json!({
        "success": true,
        "data": {"access_token": token, "expires_in": shared.config.stated(false), "client_id": id},
    }))
    .into_response()
}

async fn orders(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(page): Query<SkipLimit>,
) -> Response {
    let token = match authorize(&shared, NAME, &headers, "Bearer").await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (skip, limit) = page.get();
    records_page(&shared, NAME, &token, Shape::Envelope, skip, limit).await
}
