//! Every common pagination style, on Seal Metrics' records and tokens (under `/seal/v2`), so
//! that each strategy can be run end to end against one data set.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{SealToken, Shape, Shared, SkipLimit, page_body, serve};

const NAME: &str = "seal";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/events/pages", get(pages))
        .route("/v2/events/cursor", get(cursor))
        .route("/v2/events/cursor-loop", get(cursor_loop))
        .route("/v2/events/next", get(next))
        .route("/v2/events/next-foreign", get(next_foreign))
        .route("/v2/events/link", get(link))
        .route("/v2/events/search", post(search))
        .route("/v2/events/all", get(all))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<u64>,
    per_page: Option<u64>,
}

/// `?page=1&per_page=100` (1-based) -> `{"data": [...], "total_pages": n, "total": N}`.
async fn pages(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<PageQuery>,
) -> Response {
    // The server's page size: the asked one, capped.
    let size = q
        .per_page
        .unwrap_or(100)
        .clamp(1, shared.config.max_page_size);
    let page = q.page.unwrap_or(1).max(1);
    let pages = shared.records().div_ceil(size);
    let body = page_body(
        &shared,
        Shape::Data,
        (page - 1) * size,
        size,
        &[("page", page.into()), ("total_pages", pages.into())],
    );
    serve(&shared, NAME, &token, body, Vec::new()).await
}

#[derive(Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `?cursor=<opaque>&limit=100` -> `{"data": [...], "next_cursor": "<opaque>" | null}`.
async fn cursor(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<CursorQuery>,
) -> Response {
    let start = q
        .cursor
        .as_deref()
        .and_then(|c| c.strip_prefix("c-"))
        .and_then(|c| u64::from_str_radix(c, 16).ok())
        .unwrap_or(0);
    let limit = q.limit.unwrap_or(100).min(shared.config.max_page_size);
    let end = (start + limit).min(shared.records());
    let next = if end < shared.records() {
        serde_json::Value::String(format!("c-{end:x}"))
    } else {
        serde_json::Value::Null
    };
    let body = page_body(&shared, Shape::Data, start, limit, &[("next_cursor", next)]);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// A broken server that hands out the same cursor forever.
async fn cursor_loop(State(shared): State<Arc<Shared>>, SealToken(token): SealToken) -> Response {
    let body = page_body(
        &shared,
        Shape::Data,
        0,
        10,
        &[("next_cursor", "same".into())],
    );
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// `?skip=0&limit=100` -> `{"data": [...], "next": "/seal/v2/events/next?skip=100&limit=100"}`
/// (a relative URL; null on the last page).
async fn next(
    State(shared): State<Arc<Shared>>,
    token: SealToken,
    Query(q): Query<SkipLimit>,
) -> Response {
    next_page(shared, token, q, false).await
}

/// As `next`, but the next URL is absolute and names the host `localhost`: another host.
async fn next_foreign(
    State(shared): State<Arc<Shared>>,
    token: SealToken,
    Query(q): Query<SkipLimit>,
) -> Response {
    next_page(shared, token, q, true).await
}

async fn next_page(
    shared: Arc<Shared>,
    SealToken(token): SealToken,
    q: SkipLimit,
    foreign: bool,
) -> Response {
    let (skip, limit) = q.get();
    let end = (skip + limit.min(shared.config.max_page_size)).min(shared.records());
    let next = if end < shared.records() {
        let path = format!("/seal/v2/events/next?skip={end}&limit={limit}");
        match (foreign, shared.addr.get()) {
            (true, Some(addr)) => {
                format!("{}://localhost:{}{path}", shared.scheme(), addr.port()).into()
            }
            _ => path.into(),
        }
    } else {
        serde_json::Value::Null
    };
    let body = page_body(&shared, Shape::Data, skip, limit, &[("next", next)]);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// `?page=1&per_page=100` -> records, and `Link: <...page=2...>; rel="next"` until the last.
async fn link(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<PageQuery>,
) -> Response {
    let size = q
        .per_page
        .unwrap_or(100)
        .clamp(1, shared.config.max_page_size);
    let page = q.page.unwrap_or(1).max(1);
    let mut links = vec![format!(
        "</seal/v2/events/link?page=1&per_page={size}>; rel=\"first\""
    )];
    if page * size < shared.records() {
        links.push(format!(
            "</seal/v2/events/link?page={}&per_page={size}>; rel=\"next\"",
            page + 1
        ));
    }
    let body = page_body(&shared, Shape::Data, (page - 1) * size, size, &[]);
    serve(
        &shared,
        NAME,
        &token,
        body,
        vec![(header::LINK, links.join(", "))],
    )
    .await
}

#[derive(Deserialize)]
struct Search {
    skip: Option<u64>,
    limit: Option<u64>,
    filter: Option<String>,
}

/// POST `{"filter": "all", "skip": 0, "limit": 100}` -> `{"data": [...], "total": N}`.
async fn search(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    body: axum::body::Bytes,
) -> Response {
    let Ok(req) = serde_json::from_slice::<Search>(&body) else {
        return super::json_error(
            axum::http::StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "expected a JSON body"}),
        );
    };
    if req.filter.as_deref() != Some("all") {
        return super::json_error(
            axum::http::StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "`filter` is required"}),
        );
    }
    let body = page_body(
        &shared,
        Shape::Data,
        req.skip.unwrap_or(0),
        req.limit.unwrap_or(100),
        &[],
    );
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// Everything in one answer.
async fn all(State(shared): State<Arc<Shared>>, SealToken(token): SealToken) -> Response {
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"data\":");
    let n = shared.records();
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        super::data::write_record(i, &mut body);
    }
    body.extend_from_slice(b"]}");
    serve(&shared, NAME, &token, body, Vec::new()).await
}
