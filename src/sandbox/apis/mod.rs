//! The list endpoints of well-known APIs, each under its own base path and on the path the
//! real API has, so that a job written for the real API reads the sandbox with only its
//! provider's `base_url` changed (`https://api.github.com` → `http://127.0.0.1:PORT/github`).
//! Shapes, page-size caps, next-page and end signals, error bodies and quirks follow the
//! vendors' documentation as summed up in `docs/api_shapes.md`.
//!
//! - `/github`: `GET /repos/{owner}/{repo}/issues` — a bare array, `?page=&per_page=` (30,
//!   at most 100), absolute `Link` URLs (on `/repositories/{id}/issues`, as GitHub's are), no
//!   `Link` at all when one page holds everything; blank fields are `null`.
//! - `/stripe`: `GET /v1/customers` — `{"object": "list", "data", "has_more"}`, keyset by
//!   `?starting_after=<id>` (or `ending_before`), `limit` 10, at most 100.
//! - `/shopify`: `GET /admin/api/{version}/orders.json` — `{"orders"}`, `Link` with
//!   `page_info` (`rel="next"`, `rel="previous"`), `limit` 50, at most 250; a filter beside
//!   `page_info` is a 400.
//! - `/hubspot`: `GET /crm/v3/objects/contacts` — `{"results", "paging": {"next":
//!   {"after"}}}`, `paging` absent at the end, `limit` 10, at most 100.
//! - `/salesforce`: `GET /services/data/{version}/query?q=` then `nextRecordsUrl` (relative)
//!   until `done`, `totalSize`, batches from `Sforce-Query-Options: batchSize=` (200-2000).
//! - `/slack`: `GET|POST /api/users.list` — `{"ok": true, "members", "response_metadata":
//!   {"next_cursor"}}`, `""` at the end, short pages mid-stream, errors at HTTP 200.
//! - `/google`: `GET /drive/v3/files` — `{"files", "nextPageToken"}`, empty and partial
//!   pages mid-stream with a token, no token at the end.
//! - `/zendesk`: `GET /api/v2/incremental/tickets/cursor.json` — `?start_time=` then
//!   `?cursor=<after_cursor>` until `end_of_stream`; `via.source.from` is `{}`.
//! - `/okta`: `GET /api/v1/users` — a bare array, `Authorization: SSWS`, `Link` lines `self`
//!   and `next` (`after=<user id>`), `limit` 200 at most; `credentials.password` is `{}`.
//! - `/airtable`: `GET /v0/{base}/{table}` — `{"records", "offset"}`, empty fields left out.
//! - `/notion`: `POST /v1/databases/{id}/query` (and `/v1/data_sources/{id}/query`) —
//!   `start_cursor` in the JSON body, `{"results", "next_cursor", "has_more"}`;
//!   `Notion-Version` required.
//! - `/jira`: `GET|POST /rest/api/3/search/jql` — `{"issues", "nextPageToken", "isLast"}`,
//!   no token on the last page; the old `/rest/api/3/search` answers 410.
//! - `/intercom`: `GET /contacts` — `{"type": "list", "data", "total_count", "pages":
//!   {"next": {"starting_after"}}}`, `per_page` 50, at most 150.
//! - `/twilio`: `GET /2010-04-01/Accounts/{sid}/Messages.json` — `{"messages",
//!   "next_page_uri"}` (relative, `null` at the end), Basic auth, `PageSize` over 1000 a 400.
//!
//! Every API takes the one credential [`TOKEN`], sent as that API sends it; Twilio and
//! Jira take HTTP Basic ([`TWILIO_ACCOUNT_SID`] or [`JIRA_EMAIL`], [`BASIC_PASSWORD`]).
//! Records are generated from their index ([`record`]): the pages serve records
//! `[start, end)` of the data set in order, so a test can regenerate what it should have read.
//! The APIs keep no provider counters; they add the configured latency and faults.

// A handler's early answer is a `Response` it sends at once, not an error carried up:
// boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod airtable;
mod github;
mod google;
mod hubspot;
mod intercom;
mod jira;
mod notion;
mod okta;
mod salesforce;
mod shopify;
mod slack;
mod stripe;
mod twilio;
mod zendesk;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::Shared;

/// The static credential every API accepts, in that API's own header form.
pub const TOKEN: &str = "sandbox-api-token-0123";
/// Twilio's Basic user: the Account SID, which its paths carry too.
pub const TWILIO_ACCOUNT_SID: &str = "AC5ef8732a3c49700934481addd5ce1659";
/// Jira's Basic user: the account's e-mail.
pub const JIRA_EMAIL: &str = "analyst@example.com";
/// The Basic password of Twilio (its Auth Token) and Jira (the API token).
pub const BASIC_PASSWORD: &str = TOKEN;

/// The emulated APIs, by base path.
pub const APIS: &[&str] = &[
    "github",
    "stripe",
    "shopify",
    "hubspot",
    "salesforce",
    "slack",
    "google",
    "zendesk",
    "okta",
    "airtable",
    "notion",
    "jira",
    "intercom",
    "twilio",
];

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .nest("/github", github::routes())
        .nest("/stripe", stripe::routes())
        .nest("/shopify", shopify::routes())
        .nest("/hubspot", hubspot::routes())
        .nest("/salesforce", salesforce::routes())
        .nest("/slack", slack::routes())
        .nest("/google", google::routes())
        .nest("/zendesk", zendesk::routes())
        .nest("/okta", okta::routes())
        .nest("/airtable", airtable::routes())
        .nest("/notion", notion::routes())
        .nest("/jira", jira::routes())
        .nest("/intercom", intercom::routes())
        .nest("/twilio", twilio::routes())
}

/// Record `i` of API `api` (one of [`APIS`]), as its list endpoint serves it.
pub fn record(api: &str, i: u64) -> Option<serde_json::Value> {
    Some(match api {
        "github" => github::record(i),
        "stripe" => stripe::record(i),
        "shopify" => shopify::record(i),
        "hubspot" => hubspot::record(i),
        "salesforce" => salesforce::record(i),
        "slack" => slack::record(i),
        "google" => google::record(i),
        "zendesk" => zendesk::record(i),
        "okta" => okta::record(i),
        "airtable" => airtable::record(i),
        "notion" => notion::record(i),
        "jira" => jira::record(i),
        "intercom" => intercom::record(i),
        "twilio" => twilio::record(i),
        _ => return None,
    })
}

/// One way an API takes [`TOKEN`].
#[derive(Clone, Copy)]
pub(super) enum Sends {
    /// `Authorization: <scheme> <TOKEN>` (`Bearer`, Okta's `SSWS`); the scheme in any case.
    Scheme(&'static str),
    /// `<header>: <TOKEN>` (`X-Shopify-Access-Token`).
    Header(&'static str),
    /// `Authorization: Basic base64(<user>:<password>)`.
    Basic(&'static str, &'static str),
}

/// What an API accepts, and how it refuses anything else.
#[derive(Clone, Copy)]
pub(super) struct Credential {
    pub accepts: &'static [Sends],
    /// The API's own answer; `missing` when no credential came at all (some APIs say so
    /// differently: Slack's `not_authed` against `invalid_auth`).
    pub refused: fn(missing: bool) -> Response,
}

/// Checks the request's credential against what the API accepts.
pub(super) fn check(headers: &HeaderMap, want: Credential) -> Result<(), Response> {
    fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        headers.get(name).and_then(|v| v.to_str().ok())
    }
    let authorization = text(headers, header::AUTHORIZATION.as_str());
    let mut missing = true;
    for sends in want.accepts {
        let ok = match *sends {
            Sends::Scheme(scheme) => authorization.is_some_and(|v| {
                v.split_once(' ').is_some_and(|(s, token)| {
                    s.eq_ignore_ascii_case(scheme) && token.trim() == TOKEN
                })
            }),
            Sends::Header(name) => text(headers, name).is_some_and(|v| v.trim() == TOKEN),
            Sends::Basic(user, password) => authorization
                .and_then(|v| v.split_once(' '))
                .filter(|(s, _)| s.eq_ignore_ascii_case("Basic"))
                .and_then(|(_, b64)| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .ok()
                })
                .is_some_and(|pair| pair == format!("{user}:{password}").as_bytes()),
        };
        if ok {
            return Ok(());
        }
        missing &= match *sends {
            Sends::Header(name) => text(headers, name).is_none(),
            _ => authorization.is_none(),
        };
    }
    Err((want.refused)(missing))
}

/// A JSON answer with `status` and extra headers, outside [`answer`] (errors).
pub(super) fn reply(
    status: axum::http::StatusCode,
    body: &serde_json::Value,
    headers: &[(HeaderName, String)],
) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    append(&mut response, headers);
    response
}

fn append(response: &mut Response, headers: &[(HeaderName, String)]) {
    for (name, value) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(value) {
            // Appended: a header may come on several lines (Okta's `Link`).
            response.headers_mut().append(name.clone(), v);
        }
    }
}

/// A page: slowed by the configured latency, replaced by a fault when the injector picks
/// one, as every sandbox data answer is. No provider counters: these APIs have none (and
/// [`Shared::counters`] knows only the reference providers).
pub(super) async fn answer(
    shared: &Shared,
    body: serde_json::Value,
    headers: Vec<(HeaderName, String)>,
) -> Response {
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let body = body.to_string().into_bytes();
    let n = shared.data_requests.fetch_add(1, Ordering::Relaxed);
    if let Some(fault) = shared.config.faults.pick(n)
        && let Some(response) = super::fault_response(fault, &body).await
    {
        return response;
    }
    let mut response = (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response();
    append(&mut response, &headers);
    response
}

/// `http://127.0.0.1:PORT` (or `https://`): where absolute URLs in answers point.
pub(super) fn origin(shared: &Shared) -> String {
    let addr = shared
        .addr
        .get()
        .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
    format!("{}://{addr}", shared.scheme())
}

/// `a=1&b=x%2Fy`: a query string, its values encoded.
pub(super) fn query(pairs: &[(&str, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Records `[start, end)` of the data set through `make`, `end` capped by the data set.
pub(super) fn page(
    shared: &Shared,
    start: u64,
    size: u64,
    make: fn(u64) -> serde_json::Value,
) -> (Vec<serde_json::Value>, u64) {
    let end = start.saturating_add(size).min(shared.records()).max(start);
    ((start..end).map(make).collect(), end)
}

// Deterministic values for the records.

/// 2026-01-01T00:00:00Z.
const BASE_TIME: i64 = 1_767_225_600;

/// Names that break naive writers: accents, CJK, emoji, a comma, quotes.
pub(super) const NAMES: [&str; 10] = [
    "Zoë Ångström",
    "山田 太郎",
    "Renée O'Brien 🚀",
    "José Núñez",
    "Björk Guðmundsdóttir",
    "李 小龍",
    "Ana Lúcia ✨",
    "Chloé \"Coco\" Dubois",
    "Ola Nordmann",
    "Ñandú, Inc.",
];

/// `NAMES[i]`, cycling.
pub(super) fn name(i: u64) -> &'static str {
    NAMES[(i % NAMES.len() as u64) as usize]
}

/// One of `items`, picked by `i` and `salt`.
pub(super) fn pick<T: Copy>(items: &[T], i: u64, salt: u64) -> T {
    items[(mix(i, salt) % items.len() as u64) as usize]
}

/// Whether record `i`'s field `salt` is null (or left out): about one in twenty.
pub(super) fn blank(i: u64, salt: u64) -> bool {
    mix(i, salt).is_multiple_of(20)
}

/// When record `i` was created: 67 s after the one before, from 2026-01-01.
pub(super) fn created(i: u64) -> DateTime<Utc> {
    let secs = BASE_TIME.saturating_add((i as i64).saturating_mul(67));
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// When record `i` was last updated: hours after it was created, with milliseconds.
pub(super) fn updated(i: u64) -> DateTime<Utc> {
    created(i)
        + chrono::Duration::seconds((i % 5) as i64 * 3600 + 17)
        + chrono::Duration::milliseconds((mix(i, 9) % 1000) as i64)
}

/// SplitMix64 of `i` and `salt`: stable pseudo-random bits.
pub(super) fn mix(i: u64, salt: u64) -> u64 {
    let mut z = i
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` in base 62, `width` digits (the high ones dropped past it).
fn base62(mut n: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits).unwrap_or_default()
}

fn unbase62(text: &str) -> Option<u64> {
    text.bytes().try_fold(0u64, |n, b| {
        let d = BASE62.iter().position(|&c| c == b)? as u64;
        n.checked_mul(62)?.checked_add(d)
    })
}

/// An id such as Stripe's `cus_4QFJOjw2pOmAGJ`: `prefix`, eight random-looking characters,
/// then record `i`'s index in six, so that the server finds the record from the id.
pub(super) fn opaque_id(prefix: &str, i: u64, salt: u64) -> String {
    format!("{prefix}{}{}", base62(mix(i, salt), 8), base62(i, 6))
}

/// The index of the record whose [`opaque_id`] `id` is; `None` for any other text.
pub(super) fn opaque_index(prefix: &str, id: &str, salt: u64) -> Option<u64> {
    let rest = id.strip_prefix(prefix)?;
    let i = unbase62(rest.get(8..).filter(|s| s.len() == 6)?)?;
    (opaque_id(prefix, i, salt) == id).then_some(i)
}

/// `bits` of hex, 4 bits a digit, random-looking but fixed by `i`, then `i` in `tail` hex
/// digits: ids such as Twilio's `SM…` (32 hex) or Intercom's (24 hex).
pub(super) fn hex_id(prefix: &str, i: u64, salt: u64, random: usize, tail: usize) -> String {
    let mut text = String::new();
    let mut k = 0;
    while text.len() < random {
        text.push_str(&format!("{:016x}", mix(i, salt.wrapping_add(k))));
        k += 1;
    }
    text.truncate(random);
    format!("{prefix}{text}{i:0tail$x}")
}

/// The index of the record whose [`hex_id`] `id` is.
pub(super) fn hex_index(
    prefix: &str,
    id: &str,
    salt: u64,
    random: usize,
    tail: usize,
) -> Option<u64> {
    let rest = id.strip_prefix(prefix)?;
    let i = u64::from_str_radix(rest.get(random..).filter(|s| s.len() == tail)?, 16).ok()?;
    (hex_id(prefix, i, salt, random, tail) == id).then_some(i)
}

/// `text` as an opaque cursor (URL-safe base64, so it needs no escaping in a URL).
pub(super) fn opaque(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The text of an [`opaque`] cursor.
pub(super) fn unopaque(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// A position written as `<tag>:<n>`, opaque.
pub(super) fn cursor(tag: &str, position: u64) -> String {
    opaque(&format!("{tag}:{position}"))
}

/// The position in a [`cursor`] of this `tag`.
pub(super) fn position(tag: &str, cursor: &str) -> Option<u64> {
    unopaque(cursor)?
        .strip_prefix(tag)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `record(i)` is the same every time, and differs between records.
    fn stable(api: &str) -> serde_json::Value {
        let a = record(api, 42).expect("a known API");
        assert_eq!(a, record(api, 42).expect("a known API"), "{api}");
        assert_ne!(a, record(api, 43).expect("a known API"), "{api}");
        a
    }

    fn has(v: &serde_json::Value, pointers: &[&str]) {
        for p in pointers {
            assert!(v.pointer(p).is_some(), "{p} missing in {v}");
        }
    }

    #[test]
    fn every_api_is_listed_and_known() {
        assert_eq!(APIS.len(), 14);
        for api in APIS {
            stable(api);
        }
        assert!(record("nope", 0).is_none());
    }

    #[test]
    fn ids_and_cursors_lead_back_to_their_record() {
        for i in [0, 1, 61, 62, 9_999, 123_456_789] {
            assert_eq!(opaque_index("cus_", &opaque_id("cus_", i, 3), 3), Some(i));
            assert_eq!(
                hex_index("SM", &hex_id("SM", i, 5, 20, 12), 5, 20, 12),
                Some(i)
            );
            assert_eq!(position("user", &cursor("user", i)), Some(i));
        }
        assert_eq!(opaque_id("cus_", 7, 3).len(), 18);
        assert_eq!(hex_id("SM", 7, 5, 20, 12).len(), 34);
        assert_eq!(opaque_index("cus_", "cus_nonsense", 3), None);
        assert_eq!(position("user", &cursor("other", 5)), None);
        assert_eq!(position("user", "%%%"), None);
    }

    #[test]
    fn github() {
        let r = stable("github");
        has(
            &r,
            &[
                "/id",
                "/number",
                "/title",
                "/user/login",
                "/created_at",
                "/labels",
            ],
        );
        assert!(r["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(r.as_object().is_some_and(|o| o.contains_key("assignee")));
    }

    #[test]
    fn stripe() {
        let r = stable("stripe");
        assert!(r["id"].as_str().is_some_and(|id| id.starts_with("cus_")));
        assert_eq!(
            stripe::index(r["id"].as_str().unwrap_or_default()),
            Some(42)
        );
        assert!(r["created"].is_i64());
        has(&r, &["/object", "/email", "/metadata"]);
    }

    #[test]
    fn shopify() {
        let r = stable("shopify");
        has(
            &r,
            &[
                "/id",
                "/name",
                "/line_items/0/title",
                "/customer/id",
                "/total_price",
            ],
        );
        assert!(
            r["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with("+01:00"))
        );
    }

    #[test]
    fn hubspot() {
        let r = stable("hubspot");
        has(
            &r,
            &[
                "/id",
                "/properties/email",
                "/properties/hs_object_id",
                "/createdAt",
            ],
        );
        assert!(r["id"].is_string());
    }

    #[test]
    fn salesforce() {
        let r = stable("salesforce");
        has(&r, &["/attributes/type", "/attributes/url", "/Id", "/Name"]);
        assert!(
            r["CreatedDate"]
                .as_str()
                .is_some_and(|t| t.ends_with(".000+0000"))
        );
        assert_eq!(r["Id"].as_str().map(str::len), Some(18));
    }

    #[test]
    fn slack() {
        let r = stable("slack");
        has(&r, &["/id", "/team_id", "/name", "/profile/display_name"]);
        assert!(r["updated"].is_i64());
        assert_eq!(slack::index(r["id"].as_str().unwrap_or_default()), Some(42));
    }

    #[test]
    fn google() {
        let r = stable("google");
        has(
            &r,
            &[
                "/kind",
                "/id",
                "/name",
                "/mimeType",
                "/createdTime",
                "/owners/0",
            ],
        );
        assert!(r["modifiedTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn zendesk() {
        let r = stable("zendesk");
        has(&r, &["/id", "/url", "/subject", "/status", "/updated_at"]);
        assert_eq!(r.pointer("/via/source/from"), Some(&serde_json::json!({})));
    }

    #[test]
    fn okta() {
        let r = stable("okta");
        has(
            &r,
            &["/id", "/status", "/profile/login", "/_links/self/href"],
        );
        assert_eq!(
            r.pointer("/credentials/password"),
            Some(&serde_json::json!({}))
        );
        assert_eq!(okta::index(r["id"].as_str().unwrap_or_default()), Some(42));
    }

    #[test]
    fn airtable() {
        let r = stable("airtable");
        has(&r, &["/id", "/createdTime", "/fields/Name"]);
        // Empty fields are left out, never null.
        for i in 0..200 {
            let r = record("airtable", i).expect("known");
            let fields = r["fields"].as_object().expect("an object");
            let empty = |v: &serde_json::Value| {
                v.is_null()
                    || v.as_str() == Some("")
                    || v.as_bool() == Some(false)
                    || v.as_array().is_some_and(Vec::is_empty)
            };
            assert!(!fields.values().any(empty), "{r}");
        }
    }

    #[test]
    fn notion() {
        let r = stable("notion");
        has(
            &r,
            &[
                "/object",
                "/id",
                "/created_time",
                "/properties/Name/title/0/plain_text",
            ],
        );
        assert_eq!(
            notion::index(r["id"].as_str().unwrap_or_default()),
            Some(42)
        );
        assert!(
            r["created_time"]
                .as_str()
                .is_some_and(|t| t.ends_with(":00.000Z"))
        );
    }

    #[test]
    fn jira() {
        let r = stable("jira");
        has(
            &r,
            &[
                "/id",
                "/key",
                "/self",
                "/fields/summary",
                "/fields/status/name",
            ],
        );
        let created = r.pointer("/fields/created").and_then(|t| t.as_str());
        assert!(created.is_some_and(|t| t.ends_with("+0530")), "{r}");
    }

    #[test]
    fn intercom() {
        let r = stable("intercom");
        has(
            &r,
            &["/type", "/id", "/role", "/location/country", "/tags/data"],
        );
        assert!(r["created_at"].is_i64());
        assert_eq!(
            intercom::index(r["id"].as_str().unwrap_or_default()),
            Some(42)
        );
    }

    #[test]
    fn twilio() {
        let r = stable("twilio");
        has(
            &r,
            &[
                "/sid",
                "/account_sid",
                "/body",
                "/status",
                "/subresource_uris/media",
            ],
        );
        assert!(
            r["date_created"]
                .as_str()
                .is_some_and(|t| t.ends_with(" +0000"))
        );
        assert_eq!(
            twilio::index(r["sid"].as_str().unwrap_or_default()),
            Some(42)
        );
    }
}
