//! The HTTP side of a job: one page request, authenticated, retried, and checked.
//!
//! [`Fetcher::fetch`] returns a page whose body is known to be JSON with an array at the
//! records pointer; anything else is retried like a transient failure, because a body cut
//! short or a proxy's HTML error page usually is one. Errors name the job, the request and the
//! status; URLs in errors and logs never carry credentials (those travel in headers).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::auth::{AuthError, Authenticator, Credentials};
use crate::config::{ConfigError, ConfigErrors, JsonPointer};
use crate::decode;
use crate::paginate::PageRequest;

/// Retries of failed requests: exponential backoff with jitter.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt (0 disables retries).
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// The first wait, in milliseconds; each later wait doubles it.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// The longest single wait, in milliseconds.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
}

fn default_max_retries() -> usize {
    5
}

fn default_base_delay_ms() -> u64 {
    1000
}

fn default_max_delay_ms() -> u64 {
    30_000
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_max_retries(),
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if self.base_delay_ms > self.max_delay_ms {
            errors.push(ConfigError::field(
                "retry.max_delay_ms",
                format!(
                    "{} is below `base_delay_ms` ({}): expected at least the base delay",
                    self.max_delay_ms, self.base_delay_ms
                ),
            ));
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.base_delay_ms))
            .with_max_delay(Duration::from_millis(self.max_delay_ms))
            .with_max_times(self.max_retries)
            .with_jitter()
    }
}

/// A request that failed. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("job `{job}`: {request} returned {status}: {body}")]
    Status {
        job: String,
        request: String,
        status: StatusCode,
        body: String,
    },
    #[error("job `{job}`: {request} failed: {reason}")]
    Transport {
        job: String,
        request: String,
        reason: String,
    },
    #[error(
        "job `{job}`: {request} returned {status} with a body that is not what was expected: {reason}; the body begins: {body}"
    )]
    BadBody {
        job: String,
        request: String,
        status: StatusCode,
        reason: String,
        body: String,
    },
    #[error("job `{job}`: {source}")]
    Auth {
        job: String,
        #[source]
        source: AuthError,
    },
}

impl FetchError {
    /// Worth another attempt: the server or the network may do better next time.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 425 | 429 | 500 | 502 | 503 | 504)
            }
            FetchError::Transport { .. } | FetchError::BadBody { .. } => true,
            FetchError::Auth { .. } => false,
        }
    }

    fn short(&self) -> String {
        match self {
            FetchError::Status { status, .. } => status.to_string(),
            FetchError::Transport { reason, .. } => reason.clone(),
            FetchError::BadBody { reason, .. } => reason.clone(),
            FetchError::Auth { source, .. } => source.to_string(),
        }
    }
}

/// A page that arrived intact.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub body: Bytes,
    /// Where the records array is in `body`.
    pub records: Range<usize>,
    /// How many records the array holds.
    pub count: u64,
    /// The total read at the paginator's total pointer, if any.
    pub total: Option<u64>,
}

/// Everything needed to request pages of one job's endpoint.
pub struct Fetcher {
    job: String,
    client: reqwest::Client,
    method: Method,
    url: Url,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Bytes>,
    auth: Arc<Authenticator>,
    retry: crate::fetch::RetryConfig,
    records_pointer: JsonPointer,
    total_pointer: Option<JsonPointer>,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// What [`Fetcher::new`] needs.
pub struct FetcherParts {
    pub job: String,
    pub client: reqwest::Client,
    pub method: Method,
    pub url: Url,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Option<serde_json::Value>,
    pub auth: Arc<Authenticator>,
    pub retry: RetryConfig,
    pub records_pointer: JsonPointer,
    pub total_pointer: Option<JsonPointer>,
}

impl Fetcher {
    pub fn new(parts: FetcherParts) -> Self {
        Fetcher {
            job: parts.job,
            client: parts.client,
            method: parts.method,
            url: parts.url,
            query: parts.query.into_iter().collect(),
            headers: parts.headers,
            body: parts
                .body
                .map(|b| Bytes::from(serde_json::to_vec(&b).expect("JSON values serialize"))),
            auth: parts.auth,
            retry: parts.retry,
            records_pointer: parts.records_pointer,
            total_pointer: parts.total_pointer,
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

    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// The URL of a page request, as shown in logs and errors.
    pub fn describe(&self, page: &PageRequest) -> String {
        format!("{} {}", self.method, self.page_url(page))
    }

    fn page_url(&self, page: &PageRequest) -> Url {
        let mut url = self.url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in self.query.iter().chain(&page.query) {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    /// Fetches one page, retrying transient failures with backoff.
    pub async fn fetch(&self, page: &PageRequest) -> Result<Page, FetchError> {
        let url = self.page_url(page);
        let request = format!("{} {}", self.method, url);
        let attempt = || self.attempt(&url, &request);
        attempt
            .retry(self.retry.backoff())
            .when(FetchError::is_transient)
            .notify(|err, wait| {
                self.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    job = %self.job,
                    request = %request,
                    error = %err.short(),
                    wait_ms = wait.as_millis() as u64,
                    "retrying"
                );
            })
            .await
    }

    /// One attempt: authenticate, send, and on a 401 renew the token and send once more.
    async fn attempt(&self, url: &Url, request: &str) -> Result<Page, FetchError> {
        let creds = self.credentials().await?;
        let response = self.send(url, request, &creds).await?;
        let response = if response.status() == StatusCode::UNAUTHORIZED {
            let rejected = |detail: &str| FetchError::Auth {
                job: self.job.clone(),
                source: AuthError::Rejected {
                    provider: self.auth.provider().to_string(),
                    request: request.to_string(),
                    detail: detail.to_string(),
                    sources: self.auth.sources(),
                },
            };
            let renewable = self
                .auth
                .rejected(creds.generation)
                .await
                .map_err(|source| FetchError::Auth {
                    job: self.job.clone(),
                    source,
                })?;
            if !renewable {
                return Err(rejected("(a static credential cannot be renewed)"));
            }
            tracing::warn!(job = %self.job, request = %request, "401: renewing the token and retrying once");
            let creds = self.credentials().await?;
            let retried = self.send(url, request, &creds).await?;
            if retried.status() == StatusCode::UNAUTHORIZED {
                return Err(rejected("even after a fresh login"));
            }
            retried
        } else {
            response
        };
        let status = response.status();
        let body = response.bytes().await.map_err(|e| FetchError::Transport {
            job: self.job.clone(),
            request: request.to_string(),
            reason: format!("reading the body failed: {}", describe(&e)),
        })?;
        if !status.is_success() {
            return Err(FetchError::Status {
                job: self.job.clone(),
                request: request.to_string(),
                status,
                body: self.auth.redact(&snippet(&body)),
            });
        }
        let bad_body = |reason: String| FetchError::BadBody {
            job: self.job.clone(),
            request: request.to_string(),
            status,
            reason,
            body: self.auth.redact(&snippet(&body)),
        };
        let located = decode::locate(&body, &self.records_pointer).map_err(bad_body)?;
        let total = match &self.total_pointer {
            Some(ptr) => decode::u64_at(&body, ptr).map_err(bad_body)?,
            None => None,
        };
        Ok(Page {
            status,
            records: located.range,
            count: located.count,
            total,
            body,
        })
    }

    async fn credentials(&self) -> Result<Credentials, FetchError> {
        self.auth
            .credentials(&self.client)
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
        creds: &Credentials,
    ) -> Result<reqwest::Response, FetchError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut url = url.clone();
        if !creds.query.is_empty() {
            // Added here, after `request` (the logged form) was made: never shown.
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &creds.query {
                pairs.append_pair(k, v.expose());
            }
        }
        let mut builder = self
            .client
            .request(self.method.clone(), url)
            .headers(self.headers.clone());
        for (name, value) in &creds.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &self.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        tracing::debug!(job = %self.job, request = %request, "sending");
        builder.send().await.map_err(|e| FetchError::Transport {
            job: self.job.clone(),
            request: request.to_string(),
            reason: describe(&e),
        })
    }
}

/// A reqwest error in words, without its URL.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body ended early or could not be decoded"
    } else {
        "request error"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

/// The first 200 bytes of a body, as text, for error messages.
pub fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let cut = body.len().min(MAX);
    let text = String::from_utf8_lossy(&body[..cut]);
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .collect();
    if body.len() > MAX {
        out.push('…');
    }
    if out.is_empty() {
        "(empty body)".into()
    } else {
        out
    }
}

/// The HTTP client for one provider: keep-alive, compression, timeouts, User-Agent.
pub fn client(
    user_agent: &str,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        // A redirect could carry the Authorization header to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
