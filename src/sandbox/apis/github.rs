//! GitHub REST: `GET /repos/{owner}/{repo}/issues`. A bare array; `?page=&per_page=` (30 by
//! default, at most 100); the next page only in the `Link` header, whose absolute URLs name
//! the repository by id (`/repositories/{id}/issues`, as GitHub's do) and which is left out
//! when one page holds everything. Blank fields are `null`, never left out; pull requests
//! come in the list too, with a `pull_request` key.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

/// The repository's id, in the `Link` URLs.
const REPOSITORY_ID: u64 = 1_300_192;

const CREDENTIAL: Credential = Credential {
    // GitHub takes `token <t>` as well as `Bearer <t>`.
    accepts: &[Sends::Scheme("Bearer"), Sends::Scheme("token")],
    refused,
};

fn refused(_missing: bool) -> Response {
    super::reply(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401",
        }),
        &[],
    )
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/repos/{owner}/{repo}/issues", get(issues))
        .route("/repositories/{id}/issues", get(issues))
}

/// Issue (or pull request) `i`.
pub fn record(i: u64) -> serde_json::Value {
    let number = i + 1;
    let state = if i % 4 == 3 { "closed" } else { "open" };
    let login = format!("octo-{}", super::pick(&["cat", "dog", "fox", "owl"], i, 1));
    let labels = match i % 3 {
        0 => serde_json::json!([]),
        1 => serde_json::json!([{"id": 208_045_946, "name": "bug", "color": "f29513"}]),
        _ => serde_json::json!([
            {"id": 208_045_947, "name": "enhancement", "color": "a2eeef"},
            {"id": 208_045_948, "name": "good first issue 🌱", "color": "7057ff"},
        ]),
    };
    let null = serde_json::Value::Null;
    let assignee = match i % 3 {
        0 => serde_json::json!({"login": "hubot", "id": 1}),
        _ => null.clone(),
    };
    let body: serde_json::Value = match super::blank(i, 2) {
        true => null.clone(),
        false => format!("Steps to reproduce:\n1. open the 東京 page\n2. … ({i})").into(),
    };
    let closed_at: serde_json::Value = match state {
        "closed" => z(super::updated(i)).into(),
        _ => null,
    };
    let mut issue = serde_json::json!({
        "id": 1_000_000_000 + i,
        "number": number,
        "title": format!("{} can't sign in (#{number})", super::name(i)),
        "state": state,
        "user": {"login": login, "id": 583_231 + i % 50},
        "labels": labels,
        "assignee": assignee,
        "comments": i % 7,
        "body": body,
        "closed_at": closed_at,
        "created_at": z(super::created(i)),
        "updated_at": z(super::updated(i)),
    });
    if i.is_multiple_of(10) {
        issue["pull_request"] = serde_json::json!({
            "url": format!("https://api.github.com/repos/octo/hello/pulls/{number}"),
            "merged_at": serde_json::Value::Null,
        });
    }
    issue
}

/// GitHub's `2026-01-01T10:00:00Z`: whole seconds, `Z`.
fn z(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[derive(Deserialize)]
struct IssuesQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    state: Option<String>,
}

async fn issues(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<IssuesQuery>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let per_page = q.per_page.unwrap_or(30).clamp(1, 100);
    let page = q.page.unwrap_or(1).max(1);
    let total = shared.records();
    let last = total.div_ceil(per_page).max(1);
    let (records, _) = super::page(
        &shared,
        (page - 1).saturating_mul(per_page),
        per_page,
        record,
    );
    let url = |p: u64| {
        let mut pairs = vec![("per_page", per_page.to_string()), ("page", p.to_string())];
        if let Some(state) = &q.state {
            pairs.insert(0, ("state", state.clone()));
        }
        format!(
            "{}/github/repositories/{REPOSITORY_ID}/issues?{}",
            super::origin(&shared),
            super::query(&pairs)
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    let reset = chrono::Utc::now().timestamp() + 3600;
    let mut out: Vec<(HeaderName, String)> = vec![
        (HeaderName::from_static("x-ratelimit-limit"), "5000".into()),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            "4999".into(),
        ),
        (HeaderName::from_static("x-ratelimit-used"), "1".into()),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            reset.to_string(),
        ),
        (
            HeaderName::from_static("x-ratelimit-resource"),
            "core".into(),
        ),
    ];
    // One header line, the links comma-separated, as GitHub sends it; none for one page.
    if !links.is_empty() {
        out.push((header::LINK, links.join(", ")));
    }
    super::answer(&shared, serde_json::Value::Array(records), out).await
}
