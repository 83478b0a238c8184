//! The HTTP side of a job: one page request, authenticated, rate-limited, retried, checked.
//!
//! [`Fetcher::fetch`] returns a page whose body is known to be JSON with an array at the
//! records pointer; anything else is retried like a transient failure, because a body cut
//! short or a proxy's HTML error page usually is one. Errors name the job, the request and the
//! status; URLs in errors and logs never carry credentials (those travel in headers, and
//! query-string keys are added after the logged form is made).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::Retryable;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::auth::{AuthError, Authenticator, Credentials};
use crate::concurrency::{Permit, Signal};
use crate::decode;
pub use crate::http::RetryConfig;
use crate::http::{FullJitter, Http, parse_retry_after, snippet};
use crate::paginate::{PageOutcome, PageRequest, Pointers};
use crate::ratelimit::Limiter;
use crate::vocab::JsonPointer;

mod error;
mod stated;

pub use error::{FetchError, StatedAnswer};
pub use stated::{Class, Stated, StatedErrors, StatedErrorsConfig};

/// A page that arrived intact.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub body: Bytes,
    /// Where the records array is in `body`.
    pub records: Range<usize>,
    /// What the paginator needs: record count, pointer values, headers.
    pub outcome: PageOutcome,
}

/// A request made within a gate: the permit for its first attempt, and a flag raised once it
/// has to wait for another.
pub struct Gated {
    pub permit: Permit,
    pub retrying: Arc<std::sync::atomic::AtomicBool>,
}

/// Where requests go: the endpoint's URL, query, headers and body — the job's own, or one
/// slice's, its placeholders filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub url: Url,
    pub query: Vec<(String, String)>,
    /// Headers that override the provider's, the credentials' included (a slice's
    /// `X-Account-Context` acts for its account).
    pub headers: HeaderMap,
    pub body: Option<serde_json::Value>,
}

/// Everything needed to request pages of one job's endpoint.
pub struct Fetcher {
    job: String,
    http: Http,
    method: Method,
    target: Target,
    /// Headers every request carries (the provider's and the endpoint's).
    headers: HeaderMap,
    auth: Arc<Authenticator>,
    records_pointer: JsonPointer,
    /// What the paginator reads in each answer, by name and as the list the scan reads.
    pointers: Pointers,
    pointer_list: Vec<JsonPointer>,
    /// Errors the API states in its bodies (their pointers end `pointer_list`).
    stated: StatedErrors,
    /// Where credentials may go: the provider's origin and those it allows.
    origins: crate::http::Origins,
    limiter: Option<Arc<Limiter>>,
    /// Query parameters of this run only (an incremental sync's mark).
    run_query: std::sync::RwLock<Vec<(String, String)>>,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// What [`Fetcher::new`] needs.
pub struct FetcherParts {
    pub job: String,
    /// The provider's client, retry policy and answer size limit.
    pub http: Http,
    pub method: Method,
    pub url: Url,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Option<serde_json::Value>,
    pub auth: Arc<Authenticator>,
    pub records_pointer: JsonPointer,
    /// The places in each answer the paginator reads.
    pub pointers: Pointers,
    pub allowed_hosts: Vec<String>,
    pub limiter: Option<Arc<Limiter>>,
    /// Errors the API states in its answers' bodies.
    pub stated: StatedErrors,
}

impl Fetcher {
    pub fn new(parts: FetcherParts) -> Self {
        let origins = crate::http::Origins::new(&parts.url, &parts.allowed_hosts);
        Fetcher {
            job: parts.job,
            http: parts.http,
            method: parts.method,
            target: Target {
                url: parts.url,
                query: parts.query.into_iter().collect(),
                headers: HeaderMap::new(),
                body: parts.body,
            },
            headers: parts.headers,
            auth: parts.auth,
            records_pointer: parts.records_pointer,
            pointer_list: parts
                .pointers
                .list()
                .into_iter()
                .chain(parts.stated.pointers())
                .collect(),
            pointers: parts.pointers,
            stated: parts.stated,
            origins,
            limiter: parts.limiter,
            run_query: Default::default(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The TLS peer of the first answer over TLS.
    pub fn tls_peer(&self) -> Option<crate::http::TlsPeer> {
        self.http.peer.get().cloned()
    }

    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// Sets query parameters for the pages of this run (added to the endpoint's own).
    pub fn set_run_query(&self, query: Vec<(String, String)>) {
        *self.run_query.write().expect("not poisoned") = query;
    }

    /// The endpoint, e.g. `GET https://api.example.com/v1/events` (for manifests).
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.target.url)
    }

    /// A page request as shown in logs and errors: method and URL, without credentials
    /// (a server's URL may quote one: it is redacted too).
    pub fn describe(&self, page: &PageRequest) -> String {
        self.describe_at(&self.target, page)
    }

    /// The job's own target: its endpoint, for slices to fill in.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// [`Fetcher::describe`] for a request to `target`.
    pub fn describe_at(&self, target: &Target, page: &PageRequest) -> String {
        let mut text = format!("{} {}", self.method, self.page_url(target, page));
        if let Some((_, range)) = page.headers.iter().find(|(k, _)| k == "Range") {
            text.push_str(&format!(" (Range: {range})"));
        }
        self.auth.redact(&text)
    }

    /// A request to a URL the server gave (a next page, a `Link`), without the credentials
    /// the server echoed in it: the query parameters credentials travel in, and any whose
    /// value is a credential or the token, whole. So the URL can be logged and kept in the checkpoint,
    /// and the request carries each credential once, where the provider says.
    pub fn scrubbed(&self, mut page: PageRequest) -> PageRequest {
        let Some(url) = page.url.as_mut() else {
            return page;
        };
        let names = self.auth.query_names();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, v)| !names.iter().any(|n| n == k) && !self.auth.holds(v))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.len() != url.query_pairs().count() {
            url.set_query(None);
            if !kept.is_empty() {
                url.query_pairs_mut().extend_pairs(&kept);
            }
            page.position = crate::paginate::Position::Url {
                url: Some(url.to_string()),
            };
        }
        page
    }

    fn page_url(&self, target: &Target, page: &PageRequest) -> Url {
        if let Some(url) = &page.url {
            return url.clone();
        }
        let mut url = target.url.clone();
        if let Some(key) = &page.path_key {
            // The placeholder as the URL holds it (braces percent-encoded), the key as a
            // path segment (`/` and the rest encoded).
            let segment: String = url::form_urlencoded::byte_serialize(key.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            // `.` and `..` would be resolved away as path segments.
            let segment = match segment.as_str() {
                "." | ".." => segment.replace('.', "%2E"),
                _ => segment,
            };
            let path = url.path().replace("%7Bpage.key%7D", &segment);
            url.set_path(&path);
        }
        {
            let mut pairs = url.query_pairs_mut();
            let run_query = self.run_query.read().expect("not poisoned");
            for (k, v) in target
                .query
                .iter()
                .chain(run_query.iter())
                .chain(&page.query)
            {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    fn page_body(&self, target: &Target, page: &PageRequest) -> Option<Bytes> {
        if target.body.is_none() && page.body.is_empty() {
            return None;
        }
        let mut body = target
            .body
            .clone()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        if let Some(map) = body.as_object_mut() {
            for (k, v) in &page.body {
                map.insert(k.clone(), v.clone());
            }
        }
        Some(Bytes::from(
            serde_json::to_vec(&body).expect("JSON values serialize"),
        ))
    }

    /// Fetches one page, retrying transient failures with backoff.
    pub async fn fetch(&self, page: &PageRequest) -> Result<Page, FetchError> {
        self.fetch_at(&self.target, page, None).await
    }

    /// [`Fetcher::fetch`] of a page of `target` (a slice's). With a `permit`, the first
    /// attempt goes in it and every later one waits for one of its gate: a request waiting
    /// out a backoff holds none.
    pub async fn fetch_at(
        &self,
        target: &Target,
        page: &PageRequest,
        gated: Option<Gated>,
    ) -> Result<Page, FetchError> {
        let (permit, retrying) = match gated {
            Some(Gated { permit, retrying }) => (Some(permit), Some(retrying)),
            None => (None, None),
        };
        let url = self.page_url(target, page);
        if let Some(why) = self.origins.refuse(&url) {
            return Err(FetchError::ForeignHost {
                job: self.job.clone(),
                url: url.to_string(),
                why,
            });
        }
        let request = self.describe_at(target, page);
        let body = self.page_body(target, page);
        let attempts = AtomicU64::new(0);
        let gate = permit.as_ref().map(|p| p.gate().clone());
        let first = std::sync::Mutex::new(permit);
        let attempt = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            let first = first.lock().expect("not poisoned").take();
            let (url, request, body, gate) = (&url, &request, body.clone(), gate.as_ref());
            async move {
                let mut permit = match (first, gate) {
                    (Some(permit), _) => Some(permit),
                    (None, Some(gate)) => Some(gate.acquire().await),
                    (None, None) => None,
                };
                let result = self
                    .attempt(url, request, (target, page), body, permit.as_mut())
                    .await;
                if let Some(permit) = permit {
                    permit.finish(match &result {
                        Ok(_) => Signal::Answered,
                        Err(e) => e.signal(),
                    });
                }
                result
            }
        };
        let max_delay = Duration::from_millis(self.http.retry.max_delay_ms);
        attempt
            .retry(FullJitter {
                config: self.http.retry.clone(),
            })
            .when(FetchError::is_transient)
            .adjust(|err, wait| match err {
                // The server knows best when to come back, within our own ceiling.
                FetchError::Status {
                    retry_after: Some(after),
                    ..
                } => wait.map(|_| (*after).min(max_delay)),
                FetchError::Stated { answer, .. } if answer.retry_after.is_some() => {
                    wait.map(|_| answer.retry_after.unwrap_or_default().min(max_delay))
                }
                _ => wait,
            })
            .notify(|err, wait| {
                self.retries.fetch_add(1, Ordering::Relaxed);
                if let Some(retrying) = &retrying {
                    retrying.store(true, Ordering::Relaxed);
                }
                tracing::warn!(
                    job = %self.job,
                    request = %request,
                    error = %err.short(),
                    attempt = attempts.load(Ordering::Relaxed),
                    wait_ms = wait.as_millis() as u64,
                    "retrying"
                );
            })
            .await
    }

    /// One attempt: authenticate, send, and on a 401 (or an answer that states refused
    /// credentials) renew the token and send once more.
    async fn attempt(
        &self,
        url: &Url,
        request: &str,
        (target, page): (&Target, &PageRequest),
        body: Option<Bytes>,
        mut permit: Option<&mut Permit>,
    ) -> Result<Page, FetchError> {
        let mut creds = self.credentials().await?;
        let mut renewed = 0;
        loop {
            let response = self
                .send(
                    url,
                    request,
                    (target, page),
                    body.clone(),
                    &creds,
                    permit.as_deref_mut(),
                )
                .await?;
            let status = response.status();
            let detail = if status == StatusCode::UNAUTHORIZED {
                "with 401".to_string()
            } else {
                match self.read_page(response, url, request).await {
                    Err(FetchError::Stated { answer, .. })
                        if answer.class == Class::Credentials =>
                    {
                        format!("with {status} stating `{}`", answer.code)
                    }
                    answered => {
                        if status.is_success() || status.is_redirection() {
                            self.auth.accepted();
                        }
                        return answered;
                    }
                }
            };
            let rejected = |detail: &str| FetchError::Auth {
                job: self.job.clone(),
                source: AuthError::Rejected {
                    provider: self.auth.provider().to_string(),
                    request: self.http.described(request),
                    detail: detail.trim().to_string(),
                    sources: self.auth.sources(),
                },
            };
            // A fresh token refused by a server that never accepted these credentials means
            // they are wrong; one that had accepted them revoked it (while other requests
            // were in flight with it): renew again, as often as the login budget
            // (`auth.token.max_reauth` per window) allows.
            if renewed > 0 && !self.auth.ever_accepted() {
                return Err(rejected(&format!("{detail} even after a fresh login")));
            }
            let renewable = self
                .auth
                .rejected(creds.generation)
                .await
                .map_err(|source| FetchError::Auth {
                    job: self.job.clone(),
                    source,
                })?;
            if !renewable {
                return Err(rejected(&format!(
                    "{detail} (a static credential cannot be renewed)"
                )));
            }
            if status == StatusCode::UNAUTHORIZED {
                tracing::warn!(job = %self.job, request = %request, "401: renewing the token and retrying");
            } else {
                tracing::warn!(job = %self.job, request = %request, refused = %detail, "the answer stated refused credentials: renewing the token and sending again");
            }
            renewed += 1;
            creds = self.credentials().await?;
        }
    }

    /// Reads an answer into a page: its headers, its body (within `max_response_bytes`), the
    /// records and the paginator's pointers found in one scan, and any error the body states.
    async fn read_page(
        &self,
        response: reqwest::Response,
        url: &Url,
        request: &str,
    ) -> Result<Page, FetchError> {
        let status = response.status();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(&v));
        // RFC 8288: links may come on several header lines, read as one list.
        let links: Vec<&str> = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let link = (!links.is_empty()).then(|| links.join(", "));
        let content_range = header(reqwest::header::CONTENT_RANGE);
        let body = self.http.read_body(response).await.map_err(|e| match e {
            crate::http::BodyError::TooLarge { limit } => FetchError::TooLarge {
                job: self.job.clone(),
                request: self.http.described(request),
                limit,
            },
            crate::http::BodyError::Transport(reason) => FetchError::Transport {
                job: self.job.clone(),
                request: self.http.described(request),
                reason: format!("reading the body failed: {reason}"),
            },
        })?;
        let stated = |stated: Stated| FetchError::Stated {
            job: self.job.clone(),
            request: self.http.described(request),
            answer: Box::new(StatedAnswer {
                status,
                code: stated.code,
                class: stated.class,
                body: self.auth.redact(&snippet(&body)),
                retry_after,
            }),
        };
        if !status.is_success() {
            // A code the provider classes says more than the status; otherwise the status.
            if let Some(s) = self.stated.judge_body(status, &body)
                && s.class != Class::Permanent
            {
                return Err(stated(s));
            }
            return Err(FetchError::Status {
                job: self.job.clone(),
                request: self.http.described(request),
                status,
                body: self.auth.redact(&snippet(&body)),
                retry_after,
            });
        }
        let bad_body = |reason: String| FetchError::BadBody {
            job: self.job.clone(),
            request: self.http.described(request),
            status,
            reason,
            body: self.auth.redact(&snippet(&body)),
        };
        let scanned = decode::scan(
            &body,
            &self.records_pointer,
            &self.pointer_list,
            self.pointers.record_key.as_ref(),
        );
        let decode::Scanned {
            records: located,
            mut values,
            field,
        } = match scanned {
            Ok(scanned) => scanned,
            // An error body has no records: what it states is the failure, if it states one.
            Err(reason) => {
                return Err(match self.stated.judge_body(status, &body) {
                    Some(s) => stated(s),
                    None => bad_body(reason),
                });
            }
        };
        let own = values.split_off(values.len() - self.stated.pointers().len());
        if let Some(s) = self.stated.judge(status, &own) {
            return Err(stated(s));
        }
        let mut values = self.pointers.read(values);
        values.record_key = field;
        Ok(Page {
            status,
            records: located.range,
            outcome: PageOutcome {
                records: located.count,
                values,
                link_next: link.and_then(|l| crate::paginate::link_next(&l, url)),
                content_range,
                url: Some(url.clone()),
            },
            body,
        })
    }

    async fn credentials(&self) -> Result<Credentials, FetchError> {
        self.auth
            .credentials(&self.http)
            .await
            .map_err(|source| FetchError::Auth {
                job: self.job.clone(),
                source,
            })
    }

    async fn send(
        &self,
        url: &Url,
        request: &str,
        (target, page): (&Target, &PageRequest),
        body: Option<Bytes>,
        creds: &Credentials,
        permit: Option<&mut Permit>,
    ) -> Result<reqwest::Response, FetchError> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        if let Some(permit) = permit {
            permit.restart();
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut url = url.clone();
        if !creds.query.is_empty() {
            // Added here, after `request` (the logged form) was made: never shown.
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &creds.query {
                pairs.append_pair(k, v.expose());
            }
        }
        let mut builder = self.http.client.request(self.method.clone(), url).headers(
            if target.headers.is_empty() {
                self.headers.clone()
            } else {
                let mut headers = self.headers.clone();
                for (name, value) in &target.headers {
                    headers.insert(name, value.clone());
                }
                headers
            },
        );
        for (name, value) in &page.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                builder = builder.header(n, v);
            }
        }
        for (name, value) in &creds.headers {
            // A slice's header wins over one the credentials bring (its account context).
            if !target.headers.contains_key(name) {
                builder = builder.header(name, value);
            }
        }
        if let Some(body) = body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        tracing::debug!(job = %self.job, request = %request, "sending");
        let response = builder.send().await.map_err(|e| {
            let failure = self.http.failed(&e);
            let (job, request) = (self.job.clone(), self.http.described(request));
            match failure.transient {
                true => FetchError::Transport {
                    job,
                    request,
                    reason: failure.reason,
                },
                false => FetchError::Tls {
                    job,
                    request,
                    reason: failure.reason,
                },
            }
        })?;
        self.http.note_peer(&response);
        Ok(response)
    }
}
