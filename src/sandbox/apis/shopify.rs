//! Shopify Admin REST: `GET /admin/api/{version}/orders.json`. `{"orders": [...]}`, nothing
//! about paging in the body: the `Link` header carries `rel="next"` and `rel="previous"`
//! with an opaque `page_info` (base64 of a JSON position, as Shopify's is), left out when
//! one page holds everything. `limit` 50 by default, capped at 250. A request with
//! `page_info` may add only `limit` and `fields`: any filter beside it is a 400, as Shopify
//! answers (`?since_id=`, the older keyset, is a filter). Times carry the shop's offset
//! (`+01:00`); prices are strings. The `status=open` default is not emulated: every
//! order is listed whatever `status` says.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use axum::routing::get;

use super::{Credential, Sends, Shared};

/// The first order's id; order `i` is `FIRST_ID + i`.
const FIRST_ID: u64 = 5_512_345_000_000;

const CREDENTIAL: Credential = Credential {
    accepts: &[Sends::Header("x-shopify-access-token")],
    refused,
};

fn refused(_missing: bool) -> Response {
    let message = "[API] Invalid API key or access token (unrecognized login or wrong password)";
    error(StatusCode::UNAUTHORIZED, message.into())
}

fn error(status: StatusCode, errors: serde_json::Value) -> Response {
    super::reply(status, &serde_json::json!({ "errors": errors }), &[])
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/admin/api/{version}/orders.json", get(orders))
}

/// The shop's time: `2026-01-01T05:00:00+01:00`.
fn shop(t: chrono::DateTime<chrono::Utc>) -> String {
    let offset = chrono::FixedOffset::east_opt(3600).expect("a valid offset");
    t.with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Products, in several scripts.
const TITLES: [&str; 4] = ["Camiseta Ñandú", "马克杯 Mug", "Sticker 🚀", "Zürich cap"];

/// Order `i`.
pub fn record(i: u64) -> serde_json::Value {
    let id = FIRST_ID + i;
    let items: Vec<serde_json::Value> = (0..i % 3 + 1)
        .map(|k| {
            let sku = (!super::blank(i, 20 + k)).then(|| format!("SKU-{:04}", (i + k) % 9000));
            serde_json::json!({
                "id": 13_000_000_000 + i * 3 + k,
                "title": super::pick(&TITLES, i, 21 + k),
                "quantity": (i + k) % 4 + 1,
                "price": format!("{}.{:02}", 5 + (i * 7 + k) % 60, (i * 13) % 100),
                "sku": sku,
            })
        })
        .collect();
    let email = (!super::blank(i, 22)).then(|| format!("buyer{i}@example.com"));
    let last_name = (!super::blank(i, 23)).then(|| super::name(i + 3));
    let cancelled_at = i.is_multiple_of(17).then(|| shop(super::updated(i)));
    let financial = super::pick(
        &["paid", "pending", "refunded", "partially_refunded"],
        i,
        24,
    );
    let fulfillment = (i.is_multiple_of(3)).then_some("fulfilled");
    serde_json::json!({
        "id": id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
        "name": format!("#{}", 1001 + i),
        "email": email,
        "created_at": shop(super::created(i)),
        "updated_at": shop(super::updated(i)),
        "currency": "EUR",
        "total_price": format!("{}.{:02}", 10 + i % 500, (i * 29) % 100),
        "financial_status": financial,
        "fulfillment_status": fulfillment,
        "cancelled_at": cancelled_at,
        "customer": {
            "id": 7_000_000_000u64 + i % 300,
            "first_name": super::name(i),
            "last_name": last_name,
        },
        "line_items": items,
    })
}

/// A `page_info`: where the next (or previous) page starts, as Shopify's base64 JSON.
fn page_info(direction: &str, id: u64) -> String {
    let key = match direction {
        "next" => "last_id",
        _ => "first_id",
    };
    super::opaque(&serde_json::json!({"direction": direction, key: id}).to_string())
}

/// The records `[start, end)` a `page_info` asks for, `None` if it is not one.
fn read_page_info(text: &str, limit: u64) -> Option<(u64, u64)> {
    let info: serde_json::Value = serde_json::from_str(&super::unopaque(text)?).ok()?;
    match info["direction"].as_str()? {
        "next" => {
            let start = info["last_id"].as_u64()?.checked_sub(FIRST_ID)? + 1;
            Some((start, start.saturating_add(limit)))
        }
        "prev" => {
            let end = info["first_id"].as_u64()?.checked_sub(FIRST_ID)?;
            Some((end.saturating_sub(limit), end))
        }
        _ => None,
    }
}

/// `2024-01` or `unstable`: the versions Shopify's paths take.
fn is_version(v: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    v == "unstable"
        || v.split_once('-')
            .is_some_and(|(y, m)| digits(y, 4) && digits(m, 2))
}

async fn orders(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(version): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(refusal) = super::check(&headers, CREDENTIAL) {
        return refusal;
    }
    if !is_version(&version) {
        return error(StatusCode::NOT_FOUND, "Not Found".into());
    }
    let limit = match q.get("limit").map(|l| l.parse::<u64>()) {
        None => 50,
        Some(Ok(l)) => l.clamp(1, 250),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"limit": "Expected Integer"}),
            );
        }
    };
    let (start, end) = match q.get("page_info") {
        Some(info) => {
            if let Some(filter) = q
                .keys()
                .find(|k| !["page_info", "limit", "fields"].contains(&k.as_str()))
            {
                let message = format!("{filter} cannot be passed when page_info is present");
                return error(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"page_info": [message]}),
                );
            }
            match read_page_info(info, limit) {
                Some(range) => range,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"page_info": ["Invalid value."]}),
                    );
                }
            }
        }
        None => match q.get("since_id").map(|s| s.parse::<u64>()) {
            None => (0, limit),
            Some(Ok(since)) => {
                let start = since.saturating_sub(FIRST_ID - 1);
                (start, start.saturating_add(limit))
            }
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"since_id": "Expected Integer"}),
                );
            }
        },
    };
    let (orders, end) = super::page(&shared, start, end - start, record);
    let url = |direction: &str, id: u64| {
        let pairs = [
            ("limit", limit.to_string()),
            ("page_info", page_info(direction, id)),
        ];
        format!(
            "{}/shopify/admin/api/{version}/orders.json?{}",
            super::origin(&shared),
            super::query(&pairs)
        )
    };
    let mut links = Vec::new();
    if start > 0 && start <= shared.records() {
        links.push(format!(
            "<{}>; rel=\"previous\"",
            url("prev", FIRST_ID + start)
        ));
    }
    if end < shared.records() && !orders.is_empty() {
        links.push(format!(
            "<{}>; rel=\"next\"",
            url("next", FIRST_ID + end - 1)
        ));
    }
    let mut out = vec![(
        HeaderName::from_static("x-shopify-shop-api-call-limit"),
        "1/40".to_string(),
    )];
    if !links.is_empty() {
        out.push((header::LINK, links.join(", ")));
    }
    super::answer(&shared, serde_json::json!({ "orders": orders }), out).await
}
