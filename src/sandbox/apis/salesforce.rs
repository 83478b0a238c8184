//! Salesforce REST: `GET /services/data/{version}/query?q=<SOQL>`, then `GET` each
//! `nextRecordsUrl` (a path relative to the instance: here under `/salesforce`) until `done`
//! is true, when `nextRecordsUrl` is left out. `totalSize` counts every record the query
//! matches. The batch size comes from `Sforce-Query-Options: batchSize=N` (2000 by default,
//! 200 to 2000) and stays with the locator, which carries it. The SOQL is not run: any
//! `SELECT … FROM …` lists the accounts. Errors are JSON arrays; times are
//! `2026-01-01T10:00:00.000+0000`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::{Credential, Sends, Shared};

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Scheme("Bearer")],
    refused,
};

fn refused(_missing: bool) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "INVALID_SESSION_ID",
        "Session expired or invalid",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Token"),
    );
    response
}

/// Salesforce's error body: an array of errors.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!([{"message": message, "errorCode": code}]);
    super::reply(status, &body, &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/query/{locator}", get(more))
}

/// `2013-05-20T20:49:32.000+0000`: UTC, milliseconds always zero, no colon in the offset.
fn sf(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
}

/// Account `i`.
pub fn record(i: u64) -> serde_json::Value {
    let id = format!("0015g00000{}", super::base62(i, 8));
    let billing = (!super::blank(i, 40)).then(|| {
        serde_json::json!({
            "city": super::pick(&["São Paulo", "Zürich", "Reykjavík", "大阪"], i, 41),
            "country": super::pick(&["Brazil", "Switzerland", "Iceland", "Japan"], i, 41),
            "geocodeAccuracy": null,
            "postalCode": format!("{:05}", (i * 91) % 100_000),
            "state": null,
            "street": format!("{} Rua Augusta\nSala {}", i % 900 + 1, i % 40),
        })
    });
    let revenue = (i % 9 != 4).then(|| (i.wrapping_mul(15_485_863) % 90_000_000) as f64 + 0.5);
    let employees = (!super::blank(i, 42)).then_some(10 + i % 5000);
    let activity = (i.is_multiple_of(3)).then(|| super::updated(i).format("%Y-%m-%d").to_string());
    let url = format!("/services/data/v62.0/sobjects/Account/{id}");
    let industry = super::pick(
        &[Some("Technology"), Some("Retail"), Some("Banking"), None],
        i,
        43,
    );
    serde_json::json!({
        "attributes": {"type": "Account", "url": url},
        "Id": id,
        "Name": super::name(i),
        "Industry": industry,
        "AnnualRevenue": revenue,
        "NumberOfEmployees": employees,
        "BillingAddress": billing,
        "IsDeleted": false,
        "CreatedDate": sf(super::created(i)),
        "LastModifiedDate": sf(super::updated(i)),
        "LastActivityDate": activity,
    })
}

/// `v62.0`: the versions Salesforce's paths take.
fn is_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
        })
}

/// A query locator, `01gRO0000016PIAYA2-500` in form: the batch size in four hex digits,
/// then the offset after the dash.
fn locator(batch: u64, offset: u64) -> String {
    format!("01g{batch:04X}00000PIAYA2-{offset}")
}

fn read_locator(text: &str) -> Option<(u64, u64)> {
    let (id, offset) = text.split_once('-')?;
    let batch =
        u64::from_str_radix(id.strip_prefix("01g")?.strip_suffix("00000PIAYA2")?, 16).ok()?;
    Some((batch.clamp(200, 2000), offset.parse().ok()?))
}

#[derive(Deserialize)]
struct QueryParams {
    q: Option<String>,
}

async fn query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(version): Path<String>,
    Query(params): Query<QueryParams>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    let Some(soql) = params.q.filter(|q| !q.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let upper = soql.to_uppercase();
    if !upper.trim_start().starts_with("SELECT ") || !upper.contains(" FROM ") {
        let message = format!(
            "unexpected token: '{}'",
            soql.split_whitespace().next().unwrap_or_default()
        );
        return error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", &message);
    }
    // `Sforce-Query-Options: batchSize=1000`; a value out of range is brought into it.
    let batch = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|o| o.trim().strip_prefix("batchSize="))
        })
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(2000)
        .clamp(200, 2000);
    batch_at(&shared, &version, batch, 0).await
}

async fn more(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((version, locator)): Path<(String, String)>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    match read_locator(&locator) {
        Some((batch, offset)) => batch_at(&shared, &version, batch, offset).await,
        None => error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ),
    }
}

/// The batch of `batch` records from `offset`.
async fn batch_at(shared: &Shared, version: &str, batch: u64, offset: u64) -> Response {
    if !is_version(version) {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    }
    let total = shared.records();
    let (records, end) = super::page(shared, offset, batch, record);
    let done = end >= total;
    let mut body = serde_json::json!({"totalSize": total, "done": done});
    if !done {
        // Relative to the instance, as Salesforce's: the sandbox's instance is `/salesforce`.
        body["nextRecordsUrl"] = format!(
            "/salesforce/services/data/{version}/query/{}",
            locator(batch, end)
        )
        .into();
    }
    body["records"] = serde_json::Value::Array(records);
    let usage = (
        HeaderName::from_static("sforce-limit-info"),
        "api-usage=18/5000".to_string(),
    );
    super::answer(shared, body, vec![usage]).await
}
