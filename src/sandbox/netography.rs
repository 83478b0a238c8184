//! Netography: an HS256 request token `{iat, jti, appname, appkey, shortname}` exchanged for
//! a bearer token with `expires_in`. The verifier rejects a bad signature, a stale `iat` and a
//! replayed `jti`. Records under `data.items`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Shape, Shared, SkipLimit, authorize, credentials, json_error, records_page};

const NAME: &str = "netography";
/// How old (or how far in the future) `iat` may be.
const MAX_SKEW_SECS: i64 = 60;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/auth/token", post(token))
        .route("/alerts", get(alerts))
}

#[derive(Deserialize)]
struct Body {
    jwt: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    jti: serde_json::Value,
    appname: String,
    appkey: String,
    shortname: String,
}

fn reject(shared: &Shared, message: &str) -> Response {
    shared
        .counters(NAME)
        .failed_logins
        .fetch_add(1, Ordering::Relaxed);
    json_error(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"error": message}),
    )
}

async fn token(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    if let Some(fault) = super::login_fault(&shared).await {
        return fault;
    }
    let Some(jwt) = serde_json::from_slice::<Body>(&body)
        .ok()
        .and_then(|b| b.jwt)
    else {
        return json_error(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "expected {\"jwt\": …}"}),
        );
    };
    shared.tokens.remember(&jwt);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let key =
        jsonwebtoken::DecodingKey::from_secret(credentials::NETOGRAPHY_SHARED_SECRET.as_bytes());
    let claims = match jsonwebtoken::decode::<Claims>(&jwt, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return reject(&shared, &format!("invalid request token: {e}")),
    };
    let now = chrono::Utc::now().timestamp();
    if (now - claims.iat).abs() > MAX_SKEW_SECS {
        return reject(&shared, "request token iat is stale");
    }
    // An integer (the vendor's guide) or a UUID string (RFC 7519); nothing else.
    let well_formed = claims.jti.as_u64().is_some()
        || claims
            .jti
            .as_str()
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok());
    if !well_formed {
        return reject(
            &shared,
            "request token jti is neither an integer nor a UUID",
        );
    }
    if !shared
        .jtis
        .lock()
        .expect("not poisoned")
        .insert(claims.jti.to_string())
    {
        return reject(&shared, "request token jti was already used");
    }
    if claims.appname != credentials::NETOGRAPHY_APPNAME
        || claims.appkey != credentials::NETOGRAPHY_APPKEY
        || claims.shortname != credentials::NETOGRAPHY_SHORTNAME
    {
        return reject(&shared, "unknown application");
    }
    shared.counters(NAME).logins.fetch_add(1, Ordering::Relaxed);
    let ttl = shared.config.token_ttl;
    let token = shared.tokens.issue(NAME, ttl);
    axum::Json(
        serde_json::json!({"access_token": token, "expires_in": shared.config.stated(false)}),
    )
    .into_response()
}

async fn alerts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(page): Query<SkipLimit>,
) -> Response {
    let token = match authorize(&shared, NAME, &headers, "Bearer").await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (skip, limit) = page.get();
    records_page(&shared, NAME, &token, Shape::Nested, skip, limit).await
}
