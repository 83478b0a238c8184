//! The provider file: one API, declared once and shared by its jobs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigErrors, check_base_url};
use crate::auth::AuthConfig;
use crate::http::RetryConfig;

/// A provider: base URL, authentication and what every request to it carries.
/// File: `jobs/providers/<name>.toml`; override any field with
/// `APISNAP_PROVIDER_<NAME>__<FIELD>` (e.g. `APISNAP_PROVIDER_SEAL_METRICS__BASE_URL`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "apisnap provider")]
pub struct ProviderConfig {
    /// What this provider is, for people reading the file.
    #[serde(default)]
    pub description: Option<String>,
    /// Base URL; endpoint paths are appended to it. `https://`, or `http://` to a loopback
    /// host only.
    #[schemars(example = &"https://app.sealmetrics.com/api")]
    pub base_url: String,
    /// How requests are authenticated.
    pub auth: AuthConfig,
    /// Headers sent with every request to this provider; a job's endpoint headers override
    /// them.
    #[serde(default, deserialize_with = "crate::vocab::scalar_map")]
    #[schemars(schema_with = "crate::vocab::scalar_map_schema")]
    pub headers: BTreeMap<String, String>,
    /// The `User-Agent` header. Some gateways reject library defaults.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Retries of failed requests.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Requests per second (and burst) for all jobs of this provider in one process.
    #[serde(default)]
    pub rate_limit: Option<crate::ratelimit::RateLimitConfig>,
    /// Errors the API states in its answers' bodies (HTTP 200 with `{"ok": false}`), and
    /// which codes mean refused credentials or "later".
    #[serde(default)]
    pub errors: Option<crate::fetch::StatedErrorsConfig>,
    /// Other hosts that may receive credentials when the server's next-page URL or `Link`
    /// header points there: host names (with `base_url`'s scheme and port) or origins
    /// (`https://cdn.example.com:8443`). By default only `base_url`'s origin (scheme, host
    /// and port) does.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The HTTP proxy its requests (logins included) go through; default: the
    /// environment's (`HTTPS_PROXY`, `NO_PROXY`, …).
    #[serde(default)]
    pub proxy: crate::http::ProxyConfig,
    /// TLS: the CAs the server's certificate may chain to, a client certificate for mutual
    /// TLS, the oldest version; logins and token requests use them too.
    #[serde(default)]
    pub tls: crate::http::TlsConfig,
    /// Seconds a whole request (connect, send, read the body) may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Seconds a connection attempt may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The largest answer read, in bytes after decompression (login answers too); a larger
    /// one fails the request instead of filling memory. Default 128 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_max_response_bytes() -> u64 {
    crate::http::DEFAULT_MAX_RESPONSE_BYTES
}

fn default_user_agent() -> String {
    crate::USER_AGENT.into()
}

fn default_timeout() -> u64 {
    60
}

fn default_connect_timeout() -> u64 {
    10
}

impl ProviderConfig {
    /// Checks what can be checked without the environment.
    pub fn validate(&self) -> ConfigErrors {
        let mut errors = ConfigErrors::default();
        if let Err(e) = check_base_url(&self.base_url, "base_url") {
            errors.push(e);
        }
        self.auth.validate(&mut errors);
        for (name, value) in &self.headers {
            super::job::check_header(name, value, "headers", &mut errors);
        }
        errors.require(
            !self.user_agent.trim().is_empty(),
            "user_agent",
            "expected a non-empty User-Agent, e.g. `apisnap/0.1 (data-team@example.com)`",
        );
        errors.require(
            self.timeout_secs > 0,
            "timeout_secs",
            "expected at least 1 second",
        );
        errors.require(
            self.connect_timeout_secs > 0,
            "connect_timeout_secs",
            "expected at least 1 second",
        );
        errors.require(
            self.max_response_bytes >= 1024,
            "max_response_bytes",
            "expected at least 1024 bytes (the default is 134217728, 128 MiB)",
        );
        for entry in &self.allowed_hosts {
            let checked = if entry.contains("://") {
                check_base_url(entry, "allowed_hosts").map(|_| ())
            } else {
                let plain = url::Url::parse(&format!("https://{entry}/"))
                    .ok()
                    .is_some_and(|u| u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(entry)));
                match plain {
                    true => Ok(()),
                    false => Err(crate::vocab::ConfigError::field(
                        "allowed_hosts",
                        format!(
                            "`{entry}` is neither a host name nor an origin: expected e.g. \
                             `cdn.example.com` or `https://cdn.example.com:8443`"
                        ),
                    )),
                }
            };
            if let Err(e) = checked {
                errors.push(e);
            }
        }
        self.retry.validate(&mut errors);
        if let Some(stated) = &self.errors {
            stated.validate(&mut errors);
        }
        self.proxy.validate(&mut errors);
        self.tls.validate(&mut errors);
        if let Some(r) = &self.rate_limit {
            r.validate(&mut errors);
        }
        errors
    }
}
