//! The sandbox: a real HTTP server on loopback that emulates the reference providers.
//!
//! Tests, benchmarks and `apisnap demo` reach the providers through it, over real HTTP, the
//! way users' jobs reach the real APIs. Each provider lives under its own base path
//! (`/seal`, ...) and keeps its own counters (logins, data requests, 401s), which tests read
//! with [`Sandbox::stats`] or `GET /_sandbox/stats`.

pub mod apis;
mod armor;
mod changes;
pub mod data;
mod faults;
mod hostile;
mod kalibrate;
mod load;
mod log;
mod netography;
mod paging;
mod report;
mod seal;
mod shapes;
mod spreetail;
mod tls;
mod tokens;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use tokio::sync::oneshot;

pub use armor::account_first as armor_account_first;
pub use changes::{Change, state as changes_state};
pub use faults::{Fault, FaultConfig};
pub use hostile::{
    API_KEY as HOSTILE_API_KEY, BASIC_PASSWORD as HOSTILE_BASIC_PASSWORD,
    BASIC_USER as HOSTILE_BASIC_USER, CAP as HOSTILE_CAP, FRACTION_AT as HOSTILE_FRACTION_AT,
    LIE as HOSTILE_LIE, serial as hostile_serial,
};
pub use load::LoadStats;
pub use log::RequestRecord;
pub use report::{Event as ReportEvent, REPORT_ACCOUNTS, events as report_events};
pub use shapes::{
    AIRTABLE_BAD, CHANGE, CHANGES, FUTURE_AT, FUTURE_TIME, RAGGED_CAP, airtable_record,
    ragged_size, zendesk_ticket,
};
pub use tls::SandboxTls;
pub use tokens::Tokens;

/// Credentials the sandbox accepts; the demo and the tests use them.
pub mod credentials {
    pub const SEAL_EMAIL: &str = "analyst@example.com";
    pub const SEAL_PASSWORD: &str = "sandbox-seal-password";
    pub const ARMOR_USERNAME: &str = "armor-analyst";
    pub const ARMOR_PASSWORD: &str = "sandbox-armor-password";
    /// The accounts `GET /me` lists; the first is the default context.
    pub const ARMOR_ACCOUNTS: [u64; 2] = [7, 42];
    pub const NETOGRAPHY_APPNAME: &str = "apisnap-sandbox";
    pub const NETOGRAPHY_APPKEY: &str = "sandbox-netography-appkey";
    pub const NETOGRAPHY_SHORTNAME: &str = "acme";
    pub const NETOGRAPHY_SHARED_SECRET: &str = "sandbox-netography-shared-secret";
    pub const SPREETAIL_CLIENT_ID: &str = "client-sandbox-123";
    pub const SPREETAIL_CLIENT_SECRET: &str = "sandbox-spreetail-secret";
    /// A known client whose account is suspended: 200 with `success: false`.
    pub const SPREETAIL_SUSPENDED_CLIENT_ID: &str = "client-suspended-456";
    pub const KALIBRATE_TENANT: &str = "efa98c7b-2114-46e8-be99-954a4f1a2d9c";
    pub const KALIBRATE_CLIENT_ID: &str = "0525b217-cbb9-4d4a-b8a1-7551c30098cf";
    pub const KALIBRATE_CLIENT_SECRET: &str = "sandbox-kalibrate-secret";
    pub const KALIBRATE_SCOPE: &str = "api://dev.data.thekalibratecloud.com/.default";
}

/// How the sandbox behaves.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Records in the data set.
    pub records: u64,
    /// The most records one page returns, whatever the client asks for.
    pub max_page_size: u64,
    /// How long issued tokens live.
    pub token_ttl: Duration,
    /// What login answers that state a lifetime (`expires_in`: Netography, Spreetail,
    /// Kalibrate) say instead of `token_ttl`, as a server that gets it wrong does (`1e300`,
    /// `-5`, `0`); the tokens still live `token_ttl`.
    pub stated_lifetime: Option<serde_json::Value>,
    /// Revoke the token used for every K-th data request (so the next request with it gets
    /// a 401), to exercise renewal mid-run.
    pub revoke_every: Option<u64>,
    /// Added to every data request.
    pub latency: Duration,
    /// Failures injected into data requests.
    pub faults: FaultConfig,
    /// Failures injected into login and token requests.
    pub login_faults: FaultConfig,
    /// Compress answers (gzip, brotli, zstd, deflate) when the client accepts it.
    pub compress: bool,
    /// From this record on, records carry a field the earlier ones lack (`channel`), as an
    /// API does after adding one.
    pub new_field_from: Option<u64>,
    /// Every K-th record has `"amount": "n/a"`, a value a float column cannot take.
    pub bad_value_every: Option<u64>,
    /// Render the records once at start (for benchmarks): pages are then copied, not
    /// rendered, and the sandbox takes little of the CPU that the benchmark measures.
    pub prerender: bool,
    /// Serve HTTPS with these certificates (and require client certificates if they name a
    /// client CA); plain HTTP without.
    pub tls: Option<SandboxTls>,
    /// The report API's accounts: `1..=n` instead of [`REPORT_ACCOUNTS`] (many partitions).
    pub report_accounts: Option<u64>,
    /// At most this many requests at once: those past it are answered 429 without a
    /// `Retry-After`, as a gateway's concurrency cap does.
    pub capacity: Option<usize>,
    /// Requests served at once: the others wait their turn, so their answers take longer,
    /// as a server with few workers under load.
    pub workers: Option<usize>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            records: 10_000,
            max_page_size: 10_000,
            token_ttl: Duration::from_secs(3600),
            stated_lifetime: None,
            revoke_every: None,
            latency: Duration::ZERO,
            faults: FaultConfig::default(),
            login_faults: FaultConfig::default(),
            compress: false,
            new_field_from: None,
            bad_value_every: None,
            prerender: false,
            tls: None,
            report_accounts: None,
            capacity: None,
            workers: None,
        }
    }
}

impl SandboxConfig {
    /// The lifetime a login answer states: `stated_lifetime`, else `token_ttl` in seconds.
    fn stated(&self, whole_seconds: bool) -> serde_json::Value {
        match &self.stated_lifetime {
            Some(v) => v.clone(),
            None if whole_seconds => self.token_ttl.as_secs().into(),
            None => self.token_ttl.as_secs_f64().into(),
        }
    }
}

/// Per-provider counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub logins: AtomicU64,
    pub failed_logins: AtomicU64,
    pub reissues: AtomicU64,
    pub data_requests: AtomicU64,
    pub unauthorized: AtomicU64,
    /// Authorized data requests, for `revoke_every`.
    served: AtomicU64,
}

/// A snapshot of one provider's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CounterSnapshot {
    pub logins: u64,
    pub failed_logins: u64,
    pub reissues: u64,
    pub data_requests: u64,
    pub unauthorized: u64,
}

impl Counters {
    fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            logins: self.logins.load(Ordering::Relaxed),
            failed_logins: self.failed_logins.load(Ordering::Relaxed),
            reissues: self.reissues.load(Ordering::Relaxed),
            data_requests: self.data_requests.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
        }
    }
}

/// State shared by all handlers.
pub(crate) struct Shared {
    pub config: SandboxConfig,
    pub tokens: Tokens,
    pub counters: BTreeMap<&'static str, Counters>,
    /// Armor's authorization codes, each usable once.
    pub codes: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Netography's request token ids seen so far (a replay is rejected).
    pub jtis: std::sync::Mutex<std::collections::HashSet<String>>,
    pub log: log::RequestLog,
    /// Where the sandbox listens, for absolute URLs in answers.
    pub addr: std::sync::OnceLock<SocketAddr>,
    /// Data requests so far, for the fault injector.
    data_requests: AtomicU64,
    /// Login and token requests so far, for the fault injector.
    login_requests: AtomicU64,
    /// Records in the data set now (it can grow between runs).
    records: AtomicU64,
    /// The generation of the changing data set (`/seal/changes`).
    generation: AtomicU64,
    /// Pages served by `/seal/shapes/changing`, which changes after each of the first.
    changing_pages: AtomicU64,
    /// Requests to `/seal/shapes/slack/…`, whose first ones may state errors.
    stated_requests: AtomicU64,
    /// The records rendered at start, with `prerender` (and no altered records).
    rendered: Option<data::Rendered>,
    /// Requests in flight, capacity and workers.
    load: load::Load,
}

impl Shared {
    /// `https` when serving TLS, for absolute URLs in answers.
    pub(crate) fn scheme(&self) -> &'static str {
        match self.config.tls {
            Some(_) => "https",
            None => "http",
        }
    }

    /// Records in the data set now.
    pub(crate) fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn counters(&self, provider: &str) -> &Counters {
        &self.counters[provider]
    }

    /// The records array for `[start, start + limit)`, capped by the data set and the page
    /// size cap.
    pub(crate) fn records_array(&self, start: u64, limit: u64, out: &mut Vec<u8>) {
        let end = start
            .saturating_add(limit.min(self.config.max_page_size))
            .min(self.records());
        out.push(b'[');
        if let Some(rendered) = &self.rendered
            && end <= rendered.len()
        {
            out.extend_from_slice(rendered.records(start, end));
            out.push(b']');
            return;
        }
        for i in start..end.max(start) {
            if i > start {
                out.push(b',');
            }
            if self
                .config
                .bad_value_every
                .is_some_and(|k| i.is_multiple_of(k))
            {
                let mut record = serde_json::to_value(data::record(i)).expect("serializes");
                record["amount"] = "n/a".into();
                serde_json::to_writer(&mut *out, &record).expect("serializes");
            } else {
                data::write_record(i, out);
            }
            if self.config.new_field_from.is_some_and(|from| i >= from) {
                out.pop(); // the closing brace
                out.extend_from_slice(b",\"channel\":\"web\"}");
            }
        }
        out.push(b']');
    }
}

/// A running sandbox. Stops when dropped.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The providers the sandbox emulates, by base path.
pub const PROVIDERS: [&str; 5] = ["seal", "armor", "netography", "spreetail", "kalibrate"];

impl Sandbox {
    /// Starts on 127.0.0.1 (`port` 0 picks a free one).
    pub async fn start(config: SandboxConfig, port: u16) -> std::io::Result<Sandbox> {
        let records = config.records;
        let plain = config.new_field_from.is_none() && config.bad_value_every.is_none();
        let rendered = (config.prerender && plain).then(|| data::Rendered::new(records));
        let config_workers = config.workers;
        let shared = Arc::new(Shared {
            config,
            tokens: Tokens::default(),
            counters: PROVIDERS
                .iter()
                .map(|p| (*p, Counters::default()))
                .collect(),
            codes: Default::default(),
            jtis: Default::default(),
            log: Default::default(),
            addr: Default::default(),
            data_requests: AtomicU64::new(0),
            login_requests: AtomicU64::new(0),
            records: AtomicU64::new(records),
            generation: AtomicU64::new(1),
            changing_pages: AtomicU64::new(0),
            stated_requests: AtomicU64::new(0),
            rendered,
            load: load::Load::new(config_workers),
        });
        shared.log.start();
        let compress = shared.config.compress;
        let app = Router::new()
            .nest(
                "/seal",
                seal::routes()
                    .merge(paging::routes())
                    .merge(hostile::routes())
                    .merge(shapes::routes())
                    .merge(changes::routes())
                    .merge(report::routes()),
            )
            .nest("/armor", armor::routes())
            .nest("/netography", netography::routes())
            .nest("/spreetail", spreetail::routes())
            .nest("/kalibrate", kalibrate::routes())
            // Azure AD, on "another host": tests and the demo reach it as `localhost`.
            .nest("/aad", kalibrate::token_routes())
            // Well-known APIs' list endpoints, each under its own prefix (`/github`, …).
            .merge(apis::routes())
            .route("/_sandbox/stats", axum::routing::get(stats_handler))
            .with_state(shared.clone());
        let app = if compress {
            app.layer(tower_http::compression::CompressionLayer::new())
        } else {
            app
        };
        let app = app.layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            load::limit,
        ));
        // Outermost, so that it sees the answer as sent (compressed or not).
        let app = app.layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            log::record,
        ));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let _ = shared.addr.set(addr);
        let (tx, rx) = oneshot::channel::<()>();
        let stopped = async {
            let _ = rx.await;
        };
        let task = match &shared.config.tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await;
            }),
            Some(tls) => {
                let listener = tls::TlsListener::new(listener, tls)?;
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await;
                })
            }
        };
        Ok(Sandbox {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of one emulated provider, e.g. `http://127.0.0.1:41234/seal`
    /// (`https://` when it serves TLS).
    pub fn base_url(&self, provider: &str) -> String {
        format!("{}://{}/{provider}", self.shared.scheme(), self.addr)
    }

    /// A URL on the sandbox under the host name `localhost` rather than `127.0.0.1`: a
    /// different host for the client (Kalibrate's token endpoint lives on Azure AD).
    pub fn localhost_url(&self, path: &str) -> String {
        format!(
            "{}://localhost:{}{path}",
            self.shared.scheme(),
            self.addr.port()
        )
    }

    /// The requests in flight at most, and those refused past the capacity.
    pub fn load(&self) -> LoadStats {
        LoadStats {
            peak_in_flight: self.shared.log.peak_in_flight(),
            refused: self.shared.load.refused(),
        }
    }

    /// The counters of one provider.
    pub fn stats(&self, provider: &str) -> CounterSnapshot {
        self.shared.counters(provider).snapshot()
    }

    /// Grows (or shrinks) the data set: new records appear after the existing ones, as
    /// new events do in a real API.
    pub fn set_records(&self, records: u64) {
        self.shared.records.store(records, Ordering::Relaxed);
    }

    /// Moves the changing data set (`/seal/changes`) to generation `g`.
    pub fn set_generation(&self, g: u64) {
        self.shared.generation.store(g, Ordering::Relaxed);
    }

    /// Restarts `/seal/shapes/changing` (the collection as it was, changing again) and the
    /// count of `/seal/shapes/slack` answers that state errors.
    pub fn reset_changes(&self) {
        self.shared.changing_pages.store(0, Ordering::Relaxed);
        self.shared.stated_requests.store(0, Ordering::Relaxed);
    }

    /// Every request served so far, in the order they finished.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.snapshot()
    }

    /// Every token the sandbox has issued (for leak tests).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.tokens.history()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let stats: BTreeMap<&str, CounterSnapshot> = shared
        .counters
        .iter()
        .map(|(k, v)| (*k, v.snapshot()))
        .collect();
    axum::Json(stats)
}

/// How a provider wraps its records.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// `{"data": [...], "total": n}`
    Data,
    /// `[...]`
    Bare,
    /// `{"data": {"items": [...], "total": n}}`
    Nested,
    /// `{"success": true, "data": [...], "total": n}`
    Envelope,
    /// `{"value": [...], "@odata.count": n}`
    Value,
}

/// Checks the token in `Authorization: <scheme> <token>`; counts the request; sleeps the
/// configured latency. On success returns the token.
pub(crate) async fn authorize(
    shared: &Shared,
    provider: &'static str,
    headers: &axum::http::HeaderMap,
    scheme: &str,
) -> Result<String, axum::response::Response> {
    let counters = shared.counters(provider);
    counters.data_requests.fetch_add(1, Ordering::Relaxed);
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    match tokens::from_header(headers, scheme) {
        Some(t) if shared.tokens.valid(provider, t) => Ok(t.to_string()),
        _ => {
            counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            Err(json_error(
                axum::http::StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "invalid or expired token", "message": "Unauthorized"}),
            ))
        }
    }
}

/// A Seal Metrics data request that carries a valid bearer token: checked, counted and
/// slowed like [`authorize`], as an extractor (first among a handler's arguments); holds the
/// token, for [`serve`].
pub(crate) struct SealToken(pub String);

impl axum::extract::FromRequestParts<Arc<Shared>> for SealToken {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        authorize(shared, "seal", &parts.headers, "Bearer")
            .await
            .map(SealToken)
    }
}

/// Serves records `[skip, skip + limit)` in `shape` (or an injected fault), then applies
/// `revoke_every` to `token`.
pub(crate) async fn records_page(
    shared: &Shared,
    provider: &'static str,
    token: &str,
    shape: Shape,
    skip: u64,
    limit: u64,
) -> axum::response::Response {
    let body = page_body(shared, shape, skip, limit, &[]);
    serve(shared, provider, token, body, Vec::new()).await
}

/// The body of a page: `extra` fields are added to the wrapping object.
pub(crate) fn page_body(
    shared: &Shared,
    shape: Shape,
    skip: u64,
    limit: u64,
    extra: &[(&str, serde_json::Value)],
) -> Vec<u8> {
    page_body_from(shared, shape, 0, skip, limit, extra)
}

/// A page of the records from `first` on (a filtered query): `skip` counts from `first`, and
/// the total is of the filtered records.
pub(crate) fn page_body_from(
    shared: &Shared,
    shape: Shape,
    first: u64,
    skip: u64,
    limit: u64,
    extra: &[(&str, serde_json::Value)],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + limit.min(shared.config.max_page_size) as usize * 320);
    let total = shared.records().saturating_sub(first);
    let skip = first + skip;
    let head: &[u8] = match shape {
        Shape::Data => b"{\"data\":",
        Shape::Bare => b"",
        Shape::Nested => b"{\"data\":{\"items\":",
        Shape::Envelope => b"{\"success\":true,\"data\":",
        Shape::Value => b"{\"value\":",
    };
    body.extend_from_slice(head);
    shared.records_array(skip, limit, &mut body);
    let mut more = String::new();
    for (k, v) in extra {
        more.push_str(&format!(
            ",{}:{v}",
            serde_json::Value::String(k.to_string())
        ));
    }
    let tail = match shape {
        Shape::Data | Shape::Envelope => format!(",\"total\":{total}{more}}}"),
        Shape::Bare => String::new(),
        Shape::Nested => format!(",\"total\":{total}}}{more}}}"),
        Shape::Value => format!(",\"@odata.count\":{total}{more}}}"),
    };
    body.extend_from_slice(tail.as_bytes());
    body
}

/// Sends a data answer, or the fault the injector picks for it; applies `revoke_every`.
pub(crate) async fn serve(
    shared: &Shared,
    provider: &'static str,
    token: &str,
    body: Vec<u8>,
    headers: Vec<(axum::http::HeaderName, String)>,
) -> axum::response::Response {
    use axum::http::header;
    let n = shared.data_requests.fetch_add(1, Ordering::Relaxed);
    if let Some(fault) = shared.config.faults.pick(n)
        && let Some(response) = fault_response(fault, &body).await
    {
        return response;
    }
    let served = shared
        .counters(provider)
        .served
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    if shared
        .config
        .revoke_every
        .is_some_and(|k| served.is_multiple_of(k))
    {
        shared.tokens.revoke(token);
    }
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    for (name, value) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            // Appended: a header may come on several lines (`Link`).
            response.headers_mut().append(name, v);
        }
    }
    response
}

/// The answer a fault makes of `body`; `None` for a fault that only delays it.
async fn fault_response(fault: Fault, body: &[u8]) -> Option<axum::response::Response> {
    use axum::http::{StatusCode, header};
    Some(match fault {
        Fault::Status500 | Fault::Status502 | Fault::Status503 => {
            let status = match fault {
                Fault::Status500 => StatusCode::INTERNAL_SERVER_ERROR,
                Fault::Status502 => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, "<html><body>upstream trouble</body></html>").into_response()
        }
        Fault::RetryAfterSeconds(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            "slow down",
        )
            .into_response(),
        Fault::RetryAfterDate(secs) => {
            // An HTTP date has whole seconds: round up so the wait is at least `secs`.
            let at = chrono::Utc::now() + chrono::Duration::seconds(secs as i64 + 1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(
                    header::RETRY_AFTER,
                    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                )],
                "slow down",
            )
                .into_response()
        }
        Fault::CloseMidBody => {
            let half = body.len() / 2;
            let first = bytes::Bytes::copy_from_slice(&body[..half]);
            let stream = futures_util::stream::iter(vec![
                Ok::<_, std::io::Error>(first),
                Err(std::io::Error::other("connection dropped")),
            ]);
            (
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        Fault::Slow(wait) => {
            tokio::time::sleep(wait).await;
            return None;
        }
        Fault::MalformedJson => {
            let cut = body[..body.len() / 2].to_vec();
            ([(header::CONTENT_TYPE, "application/json")], cut).into_response()
        }
    })
}

/// A fault for a login or token request (`SandboxConfig::login_faults`), if the injector
/// picks one: what real token endpoints do under load. Handlers call it first.
pub(crate) async fn login_fault(shared: &Shared) -> Option<axum::response::Response> {
    let n = shared.login_requests.fetch_add(1, Ordering::Relaxed);
    let fault = shared.config.login_faults.pick(n)?;
    fault_response(fault, br#"{"access_token":"half"}"#).await
}

/// `skip`/`limit` query parameters.
#[derive(serde::Deserialize)]
pub(crate) struct SkipLimit {
    pub skip: Option<u64>,
    pub limit: Option<u64>,
}

impl SkipLimit {
    pub fn get(&self) -> (u64, u64) {
        (self.skip.unwrap_or(0), self.limit.unwrap_or(100))
    }
}

/// A JSON error response.
pub(crate) fn json_error(
    status: axum::http::StatusCode,
    body: serde_json::Value,
) -> axum::response::Response {
    (status, axum::Json(body)).into_response()
}
