//! `password_login`: JSON credentials POSTed to a login path (Seal Metrics, Spreetail).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use super::session::Token;
use super::{AuthError, credentials_body, string_at};
use crate::config::{ConfigError, ConfigErrors, JsonPointer, join_url};
use crate::env::Env;
use crate::secret::{Secret, SecretRef};

/// Log in by POSTing JSON credentials; read the token (and its expiry) from the response.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordLoginConfig {
    /// Login path, joined to the provider's `base_url`.
    #[serde(default = "default_login_path")]
    #[schemars(example = &"/auth/login")]
    pub path: String,
    /// The JSON body's fields and where each value comes from, e.g.
    /// `{ email = "env:SEAL_METRICS_EMAIL", password = "env:SEAL_METRICS_PASSWORD" }`.
    pub credentials: BTreeMap<String, SecretRef>,
    /// Where the token is in the response.
    #[serde(default = "default_token_pointer")]
    pub token_pointer: JsonPointer,
    /// Where an absolute expiry time (ISO-8601, `Z` or an offset) is in the response.
    #[serde(default)]
    pub expires_at_pointer: Option<JsonPointer>,
    /// Where a lifetime in seconds is in the response.
    #[serde(default)]
    pub expires_in_pointer: Option<JsonPointer>,
    /// A boolean in the response that must be `true`; `false` is a failed login even with
    /// HTTP 200 (Spreetail's `/success`).
    #[serde(default)]
    pub success_pointer: Option<JsonPointer>,
    /// Where the server's error message is, shown when the login fails.
    #[serde(default = "default_error_pointer")]
    pub error_pointer: JsonPointer,
    /// The scheme before the token in the `Authorization` header.
    #[serde(default = "super::default_scheme")]
    pub scheme: String,
    /// Renew the token this many seconds before it expires (at most half its lifetime).
    #[serde(default = "default_renew_before")]
    pub renew_before_secs: u64,
}

fn default_login_path() -> String {
    "/auth/login".into()
}

fn default_token_pointer() -> JsonPointer {
    "/access_token".parse().expect("valid pointer")
}

fn default_error_pointer() -> JsonPointer {
    "/error".parse().expect("valid pointer")
}

fn default_renew_before() -> u64 {
    300
}

impl PasswordLoginConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        super::check_scheme(&self.scheme, "auth.scheme", errors);
        if self.credentials.is_empty() {
            errors.push(ConfigError::field(
                "auth.credentials",
                "expected at least one credential, e.g. \
                 `credentials = { email = \"env:EMAIL\", password = \"env:PASSWORD\" }`",
            ));
        }
        if self.expires_at_pointer.is_some() && self.expires_in_pointer.is_some() {
            errors.push(ConfigError::field(
                "auth.expires_in_pointer",
                "set either `expires_at_pointer` or `expires_in_pointer`, not both",
            ));
        }
        if !self.path.starts_with('/') {
            errors.push(ConfigError::field(
                "auth.path",
                format!("`{}` must start with `/`", self.path),
            ));
        }
    }

    pub(super) fn build(
        &self,
        base_url: &Url,
        env: &Env,
        errors: &mut ConfigErrors,
    ) -> Option<PasswordLogin> {
        let mut fields = BTreeMap::new();
        let mut sources = Vec::new();
        for (name, secret) in &self.credentials {
            sources.push(format!("{name} from {secret}"));
            if let Some(value) =
                super::resolve(secret, &format!("auth.credentials.{name}"), env, errors)
            {
                fields.insert(name.clone(), value);
            }
        }
        if fields.len() != self.credentials.len() {
            return None;
        }
        Some(PasswordLogin {
            url: join_url(base_url, &self.path),
            fields,
            sources: sources.join(", "),
            config: self.clone(),
        })
    }
}

/// The runtime side of [`PasswordLoginConfig`].
#[derive(Debug)]
pub(crate) struct PasswordLogin {
    url: Url,
    fields: BTreeMap<String, Secret>,
    sources: String,
    config: PasswordLoginConfig,
}

impl PasswordLogin {
    pub(super) fn sources(&self) -> &str {
        &self.sources
    }

    pub(super) fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.fields.values()
    }

    pub(super) async fn login(
        &self,
        provider: &str,
        client: &reqwest::Client,
    ) -> Result<Token, AuthError> {
        let fail = |message: String| AuthError::Login {
            provider: provider.to_string(),
            url: self.url.to_string(),
            // A server may echo what it was sent; none of it is shown.
            message: self
                .fields
                .values()
                .fold(message, |m, s| m.replace(s.expose(), "[redacted]")),
        };
        let response = client
            .post(self.url.clone())
            .json(&credentials_body(&self.fields))
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {}", crate::fetch::describe(&e))))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| fail(format!("reading the response failed: {e}")))?;
        let body: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let server_message = body
            .as_ref()
            .and_then(|b| string_at(b, &self.config.error_pointer))
            .unwrap_or_else(|| crate::fetch::snippet(text.as_bytes()));
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {server_message}")));
        }
        let Some(body) = body else {
            return Err(fail(format!(
                "HTTP {status} but the body is not JSON: {}",
                crate::fetch::snippet(text.as_bytes())
            )));
        };
        if let Some(ptr) = &self.config.success_pointer
            && ptr.get(&body) != Some(&serde_json::Value::Bool(true))
        {
            return Err(fail(format!(
                "the server answered {ptr} = false: {server_message}"
            )));
        }
        let token = string_at(&body, &self.config.token_pointer).ok_or_else(|| {
            fail(format!(
                "no token at {} in the response",
                self.config.token_pointer
            ))
        })?;
        let issued_at = Utc::now();
        let expires_at = if let Some(ptr) = &self.config.expires_at_pointer {
            let text = string_at(&body, ptr)
                .ok_or_else(|| fail(format!("no expiry time at {ptr} in the response")))?;
            Some(
                DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| fail(format!("expiry `{text}` at {ptr} is not ISO-8601: {e}")))?
                    .with_timezone(&Utc),
            )
        } else if let Some(ptr) = &self.config.expires_in_pointer {
            let secs = ptr
                .get(&body)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| fail(format!("no lifetime in seconds at {ptr} in the response")))?;
            Some(issued_at + chrono::Duration::milliseconds((secs * 1000.0) as i64))
        } else {
            None
        };
        Ok(Token {
            value: Secret::new(token),
            issued_at,
            expires_at,
        })
    }
}
