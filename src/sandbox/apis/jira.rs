//! Jira Cloud: `GET|POST /rest/api/3/search/jql` (parameters in the query, or in a JSON body
//! for POST). `{"issues": [...], "nextPageToken", "isLast"}`; send `nextPageToken` back; on
//! the last page `isLast` is true and `nextPageToken` is absent (not null). No total. The
//! JQL must be bounded (a bare `ORDER BY` is a 400). Without `fields`, issues carry only
//! their `id`; with them, `fields` holds those named (`*all`: every one). `maxResults` 50
//! by default, at most 5000 for ids only and 100 with fields ("the API may return fewer
//! items per page where a large number of fields are requested"). The old
//! `/rest/api/3/search` is gone: 410. Times carry the caller's profile offset, without a
//! colon (`…+0530`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{BASIC_PASSWORD, Credential, JIRA_EMAIL, Sends, Shared};

const TAG: &str = "jql";

const CREDENTIAL: Credential = Credential {
    accepts: &[
        Sends::Basic(JIRA_EMAIL, BASIC_PASSWORD),
        Sends::Scheme("Bearer"),
    ],
    refused,
};

fn refused(_missing: bool) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "You are not authenticated. Authentication required to perform this operation.",
    )
}

/// Jira's error body.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"errorMessages": [message], "errors": {}});
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/search/jql", get(search).post(search))
        .route("/rest/api/3/search", get(removed).post(removed))
}

async fn removed() -> Response {
    error(
        StatusCode::GONE,
        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. \
         A full migration guideline is available at \
         https://developer.atlassian.com/changelog/#CHANGE-2046",
    )
}

/// `2022-03-20T06:21:50.520+0530`: the caller's time zone, milliseconds.
fn jira(t: chrono::DateTime<chrono::Utc>) -> String {
    let offset = chrono::FixedOffset::east_opt(5 * 3600 + 1800).expect("a valid offset");
    t.with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Issue `i`, with every field.
pub fn record(i: u64) -> serde_json::Value {
    let id = (10_000 + i).to_string();
    let (status, category) = super::pick(
        &[
            ("To Do", "new"),
            ("In Progress", "indeterminate"),
            ("Done", "done"),
        ],
        i,
        110,
    );
    let assignee = (!super::blank(i, 111) && !i.is_multiple_of(4)).then(|| {
        serde_json::json!({
            "accountId": format!("5b10ac8d82e05b22cc7d{:04x}", i % 97),
            "displayName": super::name(i % 97),
            "active": true,
        })
    });
    let text = format!("Falla el inicio de sesión ({i}) — 再現手順あり");
    let description = (i % 3 == 1).then(|| {
        serde_json::json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": text}]},
        ]})
    });
    let labels: Vec<&str> = ["backend", "ログイン", "regression"]
        .into_iter()
        .take((i % 4) as usize)
        .collect();
    let due = (i % 5 == 2).then(|| {
        (super::created(i) + chrono::Duration::days(10))
            .format("%Y-%m-%d")
            .to_string()
    });
    let priority = ["Highest", "High", "Medium", "Low"][(i % 4) as usize];
    let updated = super::updated(i);
    serde_json::json!({
        "expand": "renderedFields,names,schema,operations,editmeta,changelog",
        "id": id,
        "self": format!("https://acme.atlassian.net/rest/api/3/issue/{id}"),
        "key": format!("AP-{}", i + 1),
        "fields": {
            "summary": format!("{} cannot log in", super::name(i)),
            "status": {"name": status, "statusCategory": {"key": category}},
            "priority": {"id": (1 + i % 4).to_string(), "name": priority},
            "assignee": assignee,
            "labels": labels,
            "duedate": due,
            "description": description,
            "created": jira(super::created(i)),
            "updated": jira(updated),
        },
    })
}

/// What a search asks, from the query string or a POST body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Search {
    jql: Option<String>,
    next_page_token: Option<String>,
    max_results: Option<u64>,
    /// `summary,status` in a query string, `["summary", "status"]` in a body.
    fields: Option<serde_json::Value>,
}

async fn search(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<Search>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let search = match body.is_empty() {
        true => query,
        false => match serde_json::from_slice::<Search>(&body) {
            Ok(search) => search,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid request payload: {e}"),
                );
            }
        },
    };
    let bounded = search
        .jql
        .as_deref()
        .map(str::trim)
        .is_some_and(|j| !j.is_empty() && !j.to_ascii_uppercase().starts_with("ORDER BY"));
    if !bounded {
        return error(
            StatusCode::BAD_REQUEST,
            "Unbounded JQL queries are not allowed here. Please add a search restriction to your \
             query.",
        );
    }
    let fields: Option<Vec<String>> = match &search.fields {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(s.split(',').map(|f| f.trim().to_string()).collect())
        }
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect(),
        ),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "fields: expected a list of field names",
            );
        }
    };
    let cap = if fields.is_some() { 100 } else { 5000 };
    let size = search.max_results.unwrap_or(50).clamp(1, cap);
    let start = match search.next_page_token.as_deref() {
        None => 0,
        Some(token) => match super::position(TAG, token) {
            Some(start) => start,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "The provided next page token is invalid or expired.",
                );
            }
        },
    };
    let (issues, end) = super::page(&shared, start, size, record);
    let issues: Vec<serde_json::Value> = issues
        .into_iter()
        .map(|mut issue| match &fields {
            None => serde_json::json!({ "id": issue["id"] }),
            Some(names) if names.iter().any(|n| n == "*all" || n == "*navigable") => issue,
            Some(names) => {
                if let Some(all) = issue["fields"].as_object_mut() {
                    all.retain(|k, _| names.contains(k));
                }
                issue
            }
        })
        .collect();
    let mut body = serde_json::json!({ "issues": issues });
    if end < shared.records() {
        body["nextPageToken"] = super::cursor(TAG, end).into();
    }
    body["isLast"] = (end >= shared.records()).into();
    super::answer(&shared, body, Vec::new()).await
}
