//! HTTP helpers that both the data requests (`fetch`) and the login requests (`auth`) use:
//! the client, errors in words without their URL, body snippets, `Retry-After`. A leaf, so
//! that `auth` and `fetch` need not import each other's insides.

use std::time::Duration;

use backon::BackoffBuilder;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, ConfigErrors};

mod proxy;
mod tls;

pub use proxy::{ProxyConfig, Proxying};
pub use tls::{Handshakes, Peer, Tls, TlsConfig, TlsVersion};

/// Retries of failed requests: exponential backoff with full jitter, honouring the server's
/// `Retry-After`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt (0 disables retries).
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// The first wait's ceiling, in milliseconds; each later ceiling doubles. The wait is
    /// drawn at random below the ceiling ("full jitter"), so that many clients do not retry
    /// in step.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// The longest single wait, in milliseconds; also caps a server's `Retry-After`.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// Give up retrying one request once this many seconds of waiting have passed.
    #[serde(default = "default_max_elapsed_secs")]
    pub max_elapsed_secs: u64,
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
fn default_max_elapsed_secs() -> u64 {
    300
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_max_retries(),
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
            max_elapsed_secs: default_max_elapsed_secs(),
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
}

/// Full-jitter exponential backoff with a total budget, as a `backon` builder.
#[derive(Clone, Debug)]
pub struct FullJitter {
    pub config: RetryConfig,
}

impl BackoffBuilder for FullJitter {
    type Backoff = FullJitterIter;

    fn build(self) -> FullJitterIter {
        FullJitterIter {
            attempt: 0,
            waited: Duration::ZERO,
            config: self.config,
        }
    }
}

#[derive(Debug)]
pub struct FullJitterIter {
    attempt: u32,
    waited: Duration,
    config: RetryConfig,
}

impl Iterator for FullJitterIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.attempt as usize >= self.config.max_retries {
            return None;
        }
        let ceiling = self
            .config
            .base_delay_ms
            .saturating_mul(1u64 << self.attempt.min(32))
            .min(self.config.max_delay_ms);
        let wait = Duration::from_millis(fastrand::u64(0..=ceiling));
        if self.waited + wait > Duration::from_secs(self.config.max_elapsed_secs) {
            return None;
        }
        self.attempt += 1;
        self.waited += wait;
        Some(wait)
    }
}

/// The largest answer read by default, decompressed: far above any page of records, far
/// below what would exhaust the machine.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 128 * 1024 * 1024;

/// One provider's HTTP: the client, the retry policy, and the largest answer it reads. Data
/// requests and login requests share it.
#[derive(Clone, Debug)]
pub struct Http {
    pub client: reqwest::Client,
    pub retry: RetryConfig,
    /// Answers larger than this (decompressed) are refused before they are all in memory.
    pub max_response_bytes: u64,
    /// The proxy requests go through, for messages (`through the proxy …`); `None` direct.
    pub via: Option<String>,
    /// What servers' TLS handshakes asked for, to explain a connection they closed.
    pub handshakes: std::sync::Arc<tls::Handshakes>,
    /// The server's certificate and TLS version, from the first answer over TLS.
    pub peer: std::sync::Arc<std::sync::OnceLock<TlsPeer>>,
}

/// The TLS peer of a provider, as `apisnap check` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct TlsPeer {
    /// `TLS 1.3`, when the backend says.
    pub version: Option<String>,
    pub certificate: Option<Peer>,
}

/// A request that could not be sent or answered, in words.
pub struct SendFailure {
    pub reason: String,
    /// Worth another attempt: a network fault may pass, a refused certificate will not.
    pub transient: bool,
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than `max_response_bytes`, decompressed.
    TooLarge { limit: u64 },
    /// The connection failed while it was read.
    Transport(String),
}

impl Http {
    /// `e` in words, and whether to try again.
    pub fn failed(&self, e: &reqwest::Error) -> SendFailure {
        // A connection that closed before any answer, after a handshake in which the server
        // asked for what it did not get; never a timeout, which is the network's.
        let refused = tls::failure(e, self.handshakes.client_certificate).or_else(|| {
            (!e.is_timeout())
                .then(|| self.handshakes.refusal())
                .flatten()
        });
        match refused {
            Some(reason) => SendFailure {
                reason,
                transient: false,
            },
            None => SendFailure {
                reason: describe(e),
                transient: true,
            },
        }
    }

    /// Notes that an answer arrived, and remembers the TLS peer of the first that has one.
    pub fn note_peer(&self, response: &reqwest::Response) {
        self.handshakes.answered();
        if self.peer.get().is_some() {
            return;
        }
        if let Some(info) = response.extensions().get::<reqwest::tls::TlsInfo>() {
            let version = info.version().map(|v| {
                match v {
                    reqwest::tls::Version::TLS_1_3 => "TLS 1.3",
                    reqwest::tls::Version::TLS_1_2 => "TLS 1.2",
                    _ => "TLS",
                }
                .to_string()
            });
            let _ = self.peer.set(TlsPeer {
                version,
                certificate: info.peer_certificate().and_then(Peer::from_der),
            });
        }
    }

    /// `request` (`GET https://…`), and the proxy it went through if any: a failure may be
    /// the proxy's (a refusal, a 407, a reset), and the message has to say where to look.
    pub fn described(&self, request: &str) -> String {
        match &self.via {
            Some(via) => format!("{request} (through the proxy {via})"),
            None => request.to_string(),
        }
    }

    /// Reads `response`'s body, decompressed, as it arrives; one larger than
    /// `max_response_bytes` is refused as soon as it is (a small gzip page can decompress to
    /// gigabytes).
    pub async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, BodyError> {
        let limit = self.max_response_bytes;
        let hint = response.content_length().unwrap_or(0).min(limit) as usize;
        let mut body = bytes::BytesMut::with_capacity(hint);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BodyError::Transport(describe(&e)))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// Statuses worth another attempt: the server or the network may do better next time.
pub fn is_transient_status(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// A size in words: `128 MiB`.
pub fn size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
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

/// The most of a server's text an error message quotes.
const QUOTED: usize = 200;

/// The first 200 bytes of a body, as text, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let cut = body.len().min(QUOTED);
    let mut out = printable(&String::from_utf8_lossy(&body[..cut]));
    if body.len() > QUOTED {
        out.push('…');
    }
    if out.is_empty() {
        "(empty body)".into()
    } else {
        out
    }
}

/// A server's text made fit for one log line: control characters (newlines, escapes) out,
/// so that a server cannot forge log lines or move the terminal; at most 200 characters.
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(QUOTED)
        .collect();
    if text.chars().count() > QUOTED {
        out.push('…');
    }
    out
}

/// The HTTP client for one provider: keep-alive, compression, timeouts, User-Agent, the
/// proxy it goes through and its TLS settings.
pub fn client(
    user_agent: &str,
    timeout: Duration,
    connect_timeout: Duration,
    proxying: &Proxying,
    tls: Tls,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        // A redirect could carry the Authorization header to another host.
        .redirect(reqwest::redirect::Policy::none());
    // reqwest reads HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY unless told otherwise.
    let builder = match proxying {
        Proxying::Environment => builder,
        Proxying::Direct => builder.no_proxy(),
        Proxying::Via(proxy) => builder.no_proxy().proxy(proxy.as_ref().clone()),
    };
    tls.apply(builder).build()
}

/// The places a provider's credentials may go: its `base_url`'s origin (scheme, host and
/// port) and those of its `allowed_hosts`. A URL the server supplies (a next page, a `Link`)
/// elsewhere gets nothing, and never over plain `http://` when the provider is `https://`.
#[derive(Clone, Debug)]
pub struct Origins {
    provider: url::Origin,
    allowed: Vec<url::Origin>,
}

impl Origins {
    /// `allowed` entries are host names, which share the provider's scheme and port, or
    /// origins of their own (`https://cdn.example.com:8443`).
    pub fn new(base: &url::Url, allowed: &[String]) -> Origins {
        let provider = base.origin();
        let allowed = allowed
            .iter()
            .filter_map(|entry| {
                if entry.contains("://") {
                    return url::Url::parse(entry).ok().map(|u| u.origin());
                }
                let mut url = base.clone();
                url.set_host(Some(entry)).ok()?;
                Some(url.origin())
            })
            .collect();
        Origins { provider, allowed }
    }

    /// `None` if credentials may go to `url`; else why not, in words for the error.
    pub fn refuse(&self, url: &url::Url) -> Option<String> {
        let origin = url.origin();
        if origin == self.provider || self.allowed.contains(&origin) {
            return None;
        }
        let url::Origin::Tuple(scheme, host, port) = &self.provider else {
            return Some("at an opaque origin".into());
        };
        let host_of = url.host_str().unwrap_or_default();
        let same_host = host_of.eq_ignore_ascii_case(&host.to_string())
            || self.allowed.iter().any(|o| match o {
                url::Origin::Tuple(_, h, _) => h.to_string().eq_ignore_ascii_case(host_of),
                url::Origin::Opaque(_) => false,
            });
        Some(if !same_host {
            format!("on host `{host_of}`, which is not the provider's")
        } else if url.scheme() != scheme {
            format!(
                "over {}://, while the provider is {scheme}://, which is not the provider's \
                 origin",
                url.scheme()
            )
        } else {
            format!(
                "on port {}, which is not the provider's ({port})",
                url.port_or_known_default().unwrap_or_default()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_to_the_providers_origins() {
        let base = url::Url::parse("https://api.example.com/v1").unwrap();
        let origins = Origins::new(
            &base,
            &[
                "cdn.example.com".into(),
                "https://files.example.com:8443".into(),
            ],
        );
        let refuse = |u: &str| origins.refuse(&url::Url::parse(u).unwrap());
        assert_eq!(refuse("https://api.example.com/v1/next?page=2"), None);
        assert_eq!(refuse("https://API.example.com:443/x"), None);
        assert_eq!(refuse("https://cdn.example.com/x"), None);
        assert_eq!(refuse("https://files.example.com:8443/x"), None);
        let other = refuse("https://evil.example.net/x").unwrap();
        assert!(other.contains("on host `evil.example.net`"), "{other}");
        let port = refuse("https://api.example.com:8443/x").unwrap();
        assert!(port.contains("on port 8443"), "{port}");
        let plain = refuse("http://api.example.com/x").unwrap();
        assert!(plain.contains("over http://"), "{plain}");
        assert!(refuse("http://cdn.example.com/x").is_some(), "no downgrade");
    }

    #[test]
    fn server_text_cannot_forge_log_lines() {
        let forged = "bad password\n2026-12-01T00:00:00Z INFO run finished\u{1b}[2J";
        let clean = printable(forged);
        assert!(
            !clean.contains('\n') && !clean.contains('\u{1b}'),
            "{clean:?}"
        );
        assert!(printable(&"x".repeat(500)).chars().count() <= 201);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = parse_retry_after(&date).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn full_jitter_stays_under_the_ceilings_and_the_budget() {
        let config = RetryConfig {
            max_retries: 8,
            base_delay_ms: 100,
            max_delay_ms: 1000,
            max_elapsed_secs: 2,
        };
        let waits: Vec<_> = FullJitter { config }.build().collect();
        assert!(waits.len() <= 8);
        for (i, w) in waits.iter().enumerate() {
            assert!(*w <= Duration::from_millis((100u64 << i).min(1000)));
        }
        assert!(waits.iter().sum::<Duration>() <= Duration::from_secs(2));
    }
}
