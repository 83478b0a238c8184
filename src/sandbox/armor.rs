//! Armor v1: credentials -> code -> token (`FH-AUTH`), reissue, `GET /me` accounts, and an
//! `X-Account-Context` header required on every data request. Records come as a bare array.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{
    Shape, Shared, SkipLimit, authorize, credentials, json_error, page_body_from, serve, tokens,
};

const NAME: &str = "armor";
const SCHEME: &str = "FH-AUTH";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/auth/authorize", post(authorize_step))
        .route("/auth/token", post(token_step))
        .route("/auth/token/reissue", post(reissue))
        .route("/me", get(me))
        .route("/events", get(events))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    user_name: Option<String>,
    password: Option<String>,
}

async fn authorize_step(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Some(fault) = super::login_fault(&shared).await {
        return fault;
    }
    let creds: Option<Credentials> = serde_json::from_slice(&body).ok();
    let ok = creds.is_some_and(|c| {
        c.user_name.as_deref() == Some(credentials::ARMOR_USERNAME)
            && c.password.as_deref() == Some(credentials::ARMOR_PASSWORD)
    });
    if !ok {
        shared
            .counters(NAME)
            .failed_logins
            .fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Invalid username or password"}),
        );
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    shared
        .codes
        .lock()
        .expect("not poisoned")
        .insert(code.clone());
    axum::Json(serde_json::json!({"code": code, "redirect_uri": null})).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    code: Option<String>,
    grant_type: Option<String>,
}

async fn token_step(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Some(fault) = super::login_fault(&shared).await {
        return fault;
    }
    let req: Option<TokenRequest> = serde_json::from_slice(&body).ok();
    let Some(req) = req else {
        return json_error(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"message": "Invalid request"}),
        );
    };
    if req.grant_type.as_deref() != Some("authorization_code") {
        return json_error(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"message": "grant_type must be authorization_code"}),
        );
    }
    let known = req
        .code
        .is_some_and(|c| shared.codes.lock().expect("not poisoned").remove(&c));
    if !known {
        shared
            .counters(NAME)
            .failed_logins
            .fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Invalid code"}),
        );
    }
    shared.counters(NAME).logins.fetch_add(1, Ordering::Relaxed);
    let token = shared.tokens.issue(NAME, shared.config.token_ttl);
    axum::Json(serde_json::json!({"access_token": token, "id_token": null})).into_response()
}

#[derive(Deserialize)]
struct Reissue {
    token: Option<String>,
}

async fn reissue(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let req: Option<Reissue> = serde_json::from_slice(&body).ok();
    match req.and_then(|r| r.token) {
        Some(old) if shared.tokens.valid(NAME, &old) => {
            shared.tokens.revoke(&old);
            shared
                .counters(NAME)
                .reissues
                .fetch_add(1, Ordering::Relaxed);
            let token = shared.tokens.issue(NAME, shared.config.token_ttl);
            axum::Json(serde_json::json!({"access_token": token})).into_response()
        }
        _ => json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Token expired or invalid"}),
        ),
    }
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let valid = tokens::from_header(&headers, SCHEME).is_some_and(|t| shared.tokens.valid(NAME, t));
    if !valid {
        return json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Unauthorized"}),
        );
    }
    let accounts: Vec<_> = credentials::ARMOR_ACCOUNTS
        .iter()
        .map(|id| serde_json::json!({"accountType": "Direct", "id": id, "name": format!("Account {id}")}))
        .collect();
    axum::Json(serde_json::json!({"id": 1, "accounts": accounts})).into_response()
}

/// `entities=<start>-<end>[; max=<n>]`.
fn range(headers: &HeaderMap) -> Option<(u64, u64)> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.split(';').next()?.trim().strip_prefix("entities=")?;
    let (a, b) = spec.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(page): Query<SkipLimit>,
) -> Response {
    let token = match authorize(&shared, NAME, &headers, SCHEME).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let context = headers
        .get("x-account-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match context {
        None => json_error(
            StatusCode::FORBIDDEN,
            serde_json::json!({"message": "X-Account-Context header is required"}),
        ),
        Some(id) if !credentials::ARMOR_ACCOUNTS.contains(&id) => json_error(
            StatusCode::FORBIDDEN,
            serde_json::json!({"message": format!("Account {id} is not available to this user")}),
        ),
        Some(id) => match range(&headers) {
            // `Range: entities=0-99; max=100` -> `Content-Range: entities 0-99/1234`.
            Some((start, end)) => {
                let first = account_first(id, shared.records());
                let total = shared.records() - first;
                let limit = (end + 1)
                    .saturating_sub(start)
                    .min(shared.config.max_page_size);
                let last = (start + limit).min(total);
                let body = page_body_from(&shared, Shape::Bare, first, start, limit, &[]);
                let content_range = if last > start {
                    format!("entities {start}-{}/{total}", last - 1)
                } else {
                    format!("entities */{total}")
                };
                serve(
                    &shared,
                    NAME,
                    &token,
                    body,
                    vec![(header::CONTENT_RANGE, content_range)],
                )
                .await
            }
            None => {
                let (skip, limit) = page.get();
                let first = account_first(id, shared.records());
                let body = page_body_from(&shared, Shape::Bare, first, skip, limit, &[]);
                serve(&shared, NAME, &token, body, Vec::new()).await
            }
        },
    }
}

/// Where an account's events start in the data set: the first account (the default
/// context) sees them all, every other one the second half, so that the accounts' lists
/// differ as they do for a real user.
pub fn account_first(account: u64, records: u64) -> u64 {
    match credentials::ARMOR_ACCOUNTS.first() {
        Some(first) if *first == account => 0,
        _ => records / 2,
    }
}
