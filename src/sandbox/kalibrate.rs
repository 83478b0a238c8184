//! Kalibrate: OAuth2 client credentials at an Azure AD tenant (`/aad/{tenant}/oauth2/v2.0/token`,
//! reached as another host), a data API that rejects library-default User-Agents, and
//! `/api/status`. Records under `value`, in ASCII-escaped JSON (a .NET API).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{Shape, Shared, SkipLimit, authorize, credentials, json_error, tokens};

const NAME: &str = "kalibrate";

/// User-Agent prefixes of HTTP libraries, which the gateway turns away.
const LIBRARY_AGENTS: [&str; 9] = [
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
    "java/",
];

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/prices", get(prices))
}

pub(super) fn token_routes() -> Router<Arc<Shared>> {
    Router::new().route("/{tenant}/oauth2/v2.0/token", post(token))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_error(
        status,
        serde_json::json!({"error": error, "error_description": description}),
    )
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(fault) = super::login_fault(&shared).await {
        return fault;
    }
    let counters = shared.counters(NAME);
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if tenant != credentials::KALIBRATE_TENANT {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if field("client_id") != credentials::KALIBRATE_CLIENT_ID
        || field("client_secret") != credentials::KALIBRATE_CLIENT_SECRET
    {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    if field("scope") != credentials::KALIBRATE_SCOPE {
        counters.failed_logins.fetch_add(1, Ordering::Relaxed);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
        );
    }
    counters.logins.fetch_add(1, Ordering::Relaxed);
    let ttl = shared.config.token_ttl;
    let token = shared.tokens.issue(NAME, ttl);
    axum::Json(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": shared.config.stated(true),
        "ext_expires_in": ttl.as_secs(),
        "access_token": token,
    }))
    .into_response()
}

/// The gateway's rule: an application must say who it is. `Some` is the rejection.
fn gateway(headers: &HeaderMap) -> Option<Response> {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if agent.is_empty() || LIBRARY_AGENTS.iter().any(|p| agent.starts_with(p)) {
        return Some(json_error(
            StatusCode::FORBIDDEN,
            serde_json::json!({"message": "Forbidden: requests must carry a User-Agent that identifies the application"}),
        ));
    }
    None
}

async fn status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = gateway(&headers) {
        return r;
    }
    match tokens::from_header(&headers, "Bearer") {
        Some(t) if shared.tokens.valid(NAME, t) => axum::Json(serde_json::json!({
            "token": t,
            "audience": "api://sandbox.data.thekalibratecloud.com",
            "issuer": format!("https://sts.windows.net/{}/", credentials::KALIBRATE_TENANT),
            "version": "1.0",
        }))
        .into_response(),
        _ => json_error(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Unauthorized"}),
        ),
    }
}

async fn prices(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(page): Query<SkipLimit>,
) -> Response {
    if let Some(r) = gateway(&headers) {
        return r;
    }
    let token = match authorize(&shared, NAME, &headers, "Bearer").await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (skip, limit) = page.get();
    let body = super::page_body(&shared, Shape::Value, skip, limit, &[]);
    super::serve(&shared, NAME, &token, ascii_escaped(&body), Vec::new()).await
}

/// The body as .NET's JSON writer sends it: every non-ASCII character escaped (`\u00e9`),
/// those beyond the Basic Multilingual Plane as surrogate pairs (`\ud83d\ude80`). In JSON
/// such characters stand only inside strings, so each can be escaped where it stands.
fn ascii_escaped(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(body.len() + body.len() / 8);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_are_ascii_with_surrogate_pairs() {
        let body = super::ascii_escaped("{\"name\":\"Zoë 🚀\"}".as_bytes());
        assert!(body.is_ascii());
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"name":"Zo\u00eb \ud83d\ude80"}"#
        );
        let back: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back["name"], "Zoë 🚀");
    }
}
