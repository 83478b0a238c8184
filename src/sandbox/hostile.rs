//! Endpoints that behave like real APIs at their worst (under `/seal/hostile`, on Seal
//! Metrics' records and tokens): the client has to cope through its configuration, and the
//! tests check every record through the binary.
//!
//! - `pages`: page numbers, the page size capped at [`CAP`] whatever is asked, the record
//!   total stated.
//! - `link`: `Link` headers whose URLs hold commas (`fields=id,name`), one link per header
//!   line, `rel="next"` not the first.
//! - `cursor`: every third page empty mid-stream, still carrying a cursor; `has_more` as the
//!   strings `"yes"`/`"1"` and, at the end, `"no"`.
//! - `next`: a next URL in the body, with an empty page mid-stream and `has_more: true`.
//! - `range`: `Range` requests answered with at most [`CAP`] records and a `Content-Range`
//!   that claims the whole range asked for (its last end `u64::MAX`).
//! - `lying`: skip/limit pages whose `total` states [`LIE`] more records than there are.
//! - `echo`: next URLs that echo the credential the request came with: the bearer token as
//!   `access_token=…`, or the API key (`?api_key=`[`API_KEY`]) as `api_key=…`, as many APIs'
//!   next links do.
//! - `other-port`: a next URL on the same host at another port (`?to=PORT`).
//! - `huge`: a page of [`HUGE`] bytes, streamed (a few hundred kilobytes when compressed).
//! - `fractions`: skip/limit pages where record [`FRACTION_AT`]'s integer `quantity` is
//!   `19.99`, and every record has a `serial` past the range of int64 ([`serial`]).
//! - `status/{code}`: always that status (403, 404, ...), with a JSON error.
//! - `static/{kind}`: skip/limit pages for a static credential: `bearer` (`Authorization:
//!   FH-AUTH` [`API_KEY`]), `basic` ([`BASIC_USER`]:[`BASIC_PASSWORD`]), `header`
//!   (`X-API-Key`), `query` (`?api_key=`), or `none` (no credential at all).
//! - `quote`: a 400 whose body quotes the `?api_key=` it came with as it is, percent-encoded
//!   (both hex cases), JSON-escaped with `\/`, and base64, as servers' error messages do.
//! - `gzip/pages`, `br/pages`, `zstd/pages`, `deflate/pages`: skip/limit pages compressed
//!   with that one encoding, whatever the client prefers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{SealToken, Shape, Shared, SkipLimit, authorize, page_body, serve};

const NAME: &str = "seal";
/// The most records a hostile endpoint returns in one answer.
pub const CAP: u64 = 10;
/// How many records more than it has the `lying` endpoint states.
pub const LIE: u64 = 5;
/// The record whose integer field the `fractions` endpoint gives a fraction.
pub const FRACTION_AT: u64 = 150;
/// The user and password the `static/basic` endpoint accepts.
pub const BASIC_USER: &str = "sandbox-user";
pub const BASIC_PASSWORD: &str = "sandbox-basic-password";
/// The size of the `huge` endpoint's answer, uncompressed.
pub const HUGE: u64 = 256 * 1024 * 1024;
/// The static API key the `echo` endpoint accepts in `?api_key=`.
pub const API_KEY: &str = "sandbox-static-api-key-0123";

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/hostile/pages", get(pages))
        .route("/hostile/link", get(link))
        .route("/hostile/cursor", get(cursor))
        .route("/hostile/next", get(next))
        .route("/hostile/range", get(range))
        .route("/hostile/lying", get(lying))
        .route("/hostile/echo", get(echo))
        .route("/hostile/other-port", get(other_port))
        .route("/hostile/huge", get(huge))
        .route("/hostile/fractions", get(fractions))
        .route("/hostile/status/{code}", get(status))
        .route("/hostile/static/{kind}", get(static_auth))
        .route("/hostile/quote", get(quote))
        // The same pages, each route compressed with one encoding only.
        .nest("/hostile/gzip", encoded().layer(only("gzip")))
        .nest("/hostile/br", encoded().layer(only("br")))
        .nest("/hostile/zstd", encoded().layer(only("zstd")))
        .nest("/hostile/deflate", encoded().layer(only("deflate")))
}

async fn auth(shared: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    authorize(shared, NAME, headers, "Bearer").await
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<u64>,
    per_page: Option<u64>,
    fields: Option<String>,
}

/// Pages of [`CAP`] records whatever `per_page` asks; `total` is the number of records.
async fn pages(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<PageQuery>,
) -> Response {
    let page = q.page.unwrap_or(1).max(1);
    let body = page_body(&shared, Shape::Data, (page - 1) * CAP, CAP, &[]);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// Pages of `per_page` records; the links on separate header lines, with commas in them.
async fn link(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<PageQuery>,
) -> Response {
    let size = q.per_page.unwrap_or(100).clamp(1, CAP);
    let page = q.page.unwrap_or(1).max(1);
    let fields = q.fields.unwrap_or_else(|| "id,name".into());
    let url = |p: u64| format!("/seal/hostile/link?page={p}&per_page={size}&fields={fields}");
    let mut links = vec![
        (header::LINK, format!("<{}>; rel=\"first\"", url(1))),
        (
            header::LINK,
            format!("<{}>; title=\"a, b\"; rel=\"self\"", url(page)),
        ),
    ];
    if page * size < shared.records() {
        links.push((header::LINK, format!("<{}>; rel=\"next\"", url(page + 1))));
    }
    let body = page_body(&shared, Shape::Data, (page - 1) * size, size, &[]);
    serve(&shared, NAME, &token, body, links).await
}

#[derive(Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
    limit: Option<u64>,
}

/// `h-<start>-<page>` cursors; every third page is empty and does not advance.
async fn cursor(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<CursorQuery>,
) -> Response {
    let (start, page) = q
        .cursor
        .as_deref()
        .and_then(|c| c.strip_prefix("h-"))
        .and_then(|c| c.split_once('-'))
        .and_then(|(s, p)| Some((s.parse().ok()?, p.parse().ok()?)))
        .unwrap_or((0u64, 0u64));
    let empty = page % 3 == 2;
    let limit = if empty {
        0
    } else {
        q.limit.unwrap_or(100).min(CAP)
    };
    let end = (start + limit).min(shared.records());
    let (next, more) = if end < shared.records() {
        let flag = if page % 2 == 0 { "yes" } else { "1" };
        (format!("h-{end}-{}", page + 1).into(), flag)
    } else {
        (serde_json::Value::Null, "no")
    };
    let extra = [("next_cursor", next), ("has_more", more.into())];
    let body = page_body(&shared, Shape::Data, start, limit, &extra);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

#[derive(Deserialize)]
struct NextQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    page: Option<u64>,
}

/// Next URLs in the body; the third page is empty, with a next URL and `has_more: true`.
async fn next(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<NextQuery>,
) -> Response {
    let (skip, page) = (q.skip.unwrap_or(0), q.page.unwrap_or(0));
    let asked = q.limit.unwrap_or(100);
    let limit = if page == 2 { 0 } else { asked.min(CAP) };
    let end = (skip + limit).min(shared.records());
    let (next, more) = if end < shared.records() {
        let url = format!(
            "/seal/hostile/next?skip={end}&limit={asked}&page={}",
            page + 1
        );
        (serde_json::Value::String(url), true)
    } else {
        (serde_json::Value::Null, false)
    };
    let extra = [("next", next), ("has_more", more.into())];
    let body = page_body(&shared, Shape::Data, skip, limit, &extra);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// `Range: entities=S-E`: at most [`CAP`] records, and a `Content-Range` that claims the
/// whole range asked for; the last answer's end is `u64::MAX`.
async fn range(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    headers: HeaderMap,
) -> Response {
    let asked = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('='))
        .and_then(|(_, r)| r.split(';').next())
        .and_then(|r| r.trim().split_once('-'))
        .and_then(|(s, e)| Some((s.parse::<u64>().ok()?, e.parse::<u64>().ok()?)));
    let (start, end) = asked.unwrap_or((0, 99));
    let total = shared.records();
    let body = page_body(&shared, Shape::Bare, start, CAP, &[]);
    let claimed_end = if start + CAP >= total { u64::MAX } else { end };
    let content_range = format!("entities {start}-{claimed_end}/{total}");
    serve(
        &shared,
        NAME,
        &token,
        body,
        vec![(header::CONTENT_RANGE, content_range)],
    )
    .await
}

/// Skip/limit pages whose `total` is [`LIE`] more than the records there are.
async fn lying(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<SkipLimit>,
) -> Response {
    let (skip, limit) = q.get();
    let mut body = page_body(&shared, Shape::Bare, skip, limit, &[]);
    let stated = shared.records() + LIE;
    let mut wrapped = b"{\"data\":".to_vec();
    wrapped.append(&mut body);
    wrapped.extend_from_slice(format!(",\"total\":{stated}}}").as_bytes());
    serve(&shared, NAME, &token, wrapped, Vec::new()).await
}

#[derive(Deserialize)]
struct EchoQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    api_key: Option<String>,
}

/// Skip/limit pages with next URLs that carry the request's own credential back.
async fn echo(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<EchoQuery>,
) -> Response {
    let echoed = match q.api_key.as_deref() {
        Some(key) if key == API_KEY => {
            // As `authorize` does for tokens: counted, and slowed by the latency.
            shared
                .counters(NAME)
                .data_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(shared.config.latency).await;
            format!("api_key={key}")
        }
        Some(_) => {
            return super::json_error(
                axum::http::StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "bad api key"}),
            );
        }
        None => match auth(&shared, &headers).await {
            Ok(token) => format!("access_token={token}"),
            Err(r) => return r,
        },
    };
    let (skip, limit) = (q.skip.unwrap_or(0), q.limit.unwrap_or(100));
    let end = (skip + limit.min(CAP)).min(shared.records());
    let next = if end < shared.records() {
        format!("/seal/hostile/echo?skip={end}&limit={limit}&{echoed}").into()
    } else {
        serde_json::Value::Null
    };
    let body = page_body(
        &shared,
        Shape::Data,
        skip,
        limit.min(CAP),
        &[("next", next)],
    );
    serve(&shared, NAME, "", body, Vec::new()).await
}

#[derive(Deserialize)]
struct OtherPortQuery {
    to: u16,
}

/// A first page whose next URL is on this host at the port `to`: another origin.
async fn other_port(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<OtherPortQuery>,
) -> Response {
    let next = format!(
        "{}://127.0.0.1:{}/seal/hostile/other-port?to={}",
        shared.scheme(),
        q.to,
        q.to
    );
    let body = page_body(&shared, Shape::Data, 0, CAP, &[("next", next.into())]);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

/// `{"pad": "aaaa…", "data": []}`, [`HUGE`] bytes in all, streamed as it is sent.
async fn huge(_token: SealToken) -> Response {
    use axum::response::IntoResponse;
    const CHUNK: usize = 64 * 1024;
    let chunks = HUGE as usize / CHUNK;
    let pad = bytes::Bytes::from(vec![b'a'; CHUNK]);
    let stream = futures_util::stream::iter(
        std::iter::once(bytes::Bytes::from_static(b"{\"pad\":\""))
            .chain(std::iter::repeat_n(pad, chunks))
            .chain(std::iter::once(bytes::Bytes::from_static(
                b"\",\"data\":[]}",
            )))
            .map(Ok::<_, std::io::Error>),
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// Skip/limit pages of the standard records, one with `"quantity": 19.99`.
async fn fractions(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<SkipLimit>,
) -> Response {
    let (skip, limit) = q.get();
    let end = (skip + limit).min(shared.records());
    let items: Vec<serde_json::Value> = (skip..end.max(skip))
        .map(|i| {
            let mut record = serde_json::to_value(super::data::record(i)).expect("serializes");
            if i == FRACTION_AT {
                record["quantity"] = serde_json::json!(19.99);
            }
            record["serial"] = serde_json::json!(serial(i));
            record
        })
        .collect();
    let body = serde_json::json!({"data": items, "total": shared.records()}).to_string();
    serve(&shared, NAME, &token, body.into_bytes(), Vec::new()).await
}

/// The `serial` of record `i` of the `fractions` endpoint: an integer past `i64::MAX`, which
/// a float64 column would round.
pub fn serial(i: u64) -> u64 {
    u64::MAX - i
}

/// Always the status asked for.
async fn status(
    _token: SealToken,
    axum::extract::Path(code): axum::extract::Path<u16>,
) -> Response {
    let status =
        axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    super::json_error(
        status,
        serde_json::json!({"error": format!("always {code}")}),
    )
}

/// Skip/limit pages under `/pages`, to be compressed by one layer.
fn encoded() -> Router<Arc<Shared>> {
    Router::new().route("/pages", get(plain_pages))
}

/// A compression layer with only `encoding` enabled.
fn only(encoding: &str) -> tower_http::compression::CompressionLayer {
    let layer = tower_http::compression::CompressionLayer::new()
        .no_gzip()
        .no_br()
        .no_zstd()
        .no_deflate();
    match encoding {
        "gzip" => layer.gzip(true),
        "br" => layer.br(true),
        "zstd" => layer.zstd(true),
        _ => layer.deflate(true),
    }
}

async fn plain_pages(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<SkipLimit>,
) -> Response {
    let (skip, limit) = q.get();
    let body = page_body(&shared, Shape::Data, skip, limit, &[]);
    serve(&shared, NAME, &token, body, Vec::new()).await
}

#[derive(Deserialize)]
struct StaticQuery {
    skip: Option<u64>,
    limit: Option<u64>,
    api_key: Option<String>,
}

/// Pages for one static credential kind; anything else is a 401.
async fn static_auth(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Path(kind): axum::extract::Path<String>,
    Query(q): Query<StaticQuery>,
) -> Response {
    use base64::Engine as _;
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"));
    let ok = match kind.as_str() {
        "bearer" => header(header::AUTHORIZATION) == format!("FH-AUTH {API_KEY}"),
        "basic" => header(header::AUTHORIZATION) == format!("Basic {basic}"),
        "header" => header(header::HeaderName::from_static("x-api-key")) == API_KEY,
        "query" => q.api_key.as_deref() == Some(API_KEY),
        "none" => header(header::AUTHORIZATION).is_empty(),
        _ => false,
    };
    shared
        .counters(NAME)
        .data_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !ok {
        return super::json_error(
            axum::http::StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": format!("expected the {kind} credential")}),
        );
    }
    let (skip, limit) = (q.skip.unwrap_or(0), q.limit.unwrap_or(100));
    let body = page_body(&shared, Shape::Data, skip, limit, &[]);
    serve(&shared, NAME, "", body, Vec::new()).await
}

#[derive(Deserialize)]
struct QuoteQuery {
    api_key: Option<String>,
}

/// A refusal that quotes the caller's key in every encoding servers use.
async fn quote(Query(q): Query<QuoteQuery>) -> Response {
    use base64::Engine as _;
    let key = q.api_key.unwrap_or_default();
    let form: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    let escaped = key
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('/', "\\/");
    let body = format!(
        "{{\"error\": \"invalid key {key} ({form}, {lower})\", \"detail\": \"key \\\"{escaped}\\\"\", \
         \"hint\": \"{b64}\"}}",
        // Lowercase hex digits after each `%`, the key's own letters as they are.
        lower = form
            .split('%')
            .enumerate()
            .map(|(i, part)| match i {
                0 => part.to_string(),
                _ => format!(
                    "{}{}",
                    part.get(..2).unwrap_or(part).to_lowercase(),
                    part.get(2..).unwrap_or("")
                ),
            })
            .collect::<Vec<_>>()
            .join("%"),
        b64 = base64::engine::general_purpose::STANDARD.encode(&key),
    );
    (
        axum::http::StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
