//! Authentication: credentials in, request headers out, token kept fresh.
//!
//! [`AuthConfig`] is what a provider file says; [`AuthConfig::build`] resolves its secrets and
//! returns an [`Authenticator`], shared (behind an `Arc`) by every request of a run. Kinds that
//! log in for a token share one [`session::TokenSession`], which owns the token lifecycle
//! (single-flight login, renewal before expiry, renewal once on a 401); a login kind only
//! knows how to obtain one token.

mod password;
mod session;

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{ConfigError, ConfigErrors, JsonPointer};
use crate::env::Env;
use crate::secret::{Secret, SecretRef};

pub use password::PasswordLoginConfig;
pub use session::TokenSession;

/// How requests to a provider are authenticated. `type` selects the kind.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
// One per provider, built once: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AuthConfig {
    /// No authentication.
    None(NoAuthConfig),
    /// A static token sent as `Authorization: <scheme> <token>`, e.g. one issued by hand.
    Bearer(BearerConfig),
    /// POST JSON credentials to a login path, read the token and its expiry from the response
    /// (Seal Metrics, Spreetail).
    PasswordLogin(PasswordLoginConfig),
}

crate::tagged_enum!(AuthConfig {
    "none" => None(NoAuthConfig),
    "bearer" => Bearer(BearerConfig),
    "password_login" => PasswordLogin(PasswordLoginConfig),
});

/// No authentication.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoAuthConfig {}

/// A static token.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// The token: `env:NAME` or `file:/path`.
    pub token: SecretRef,
    /// The scheme before the token in the `Authorization` header.
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

pub(crate) fn default_scheme() -> String {
    "Bearer".into()
}

impl AuthConfig {
    /// The kind's name as written in `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::None(_) => "none",
            AuthConfig::Bearer(_) => "bearer",
            AuthConfig::PasswordLogin(_) => "password_login",
        }
    }

    /// Checks what can be checked without the environment (pointers, paths, schemes).
    pub fn validate(&self, errors: &mut ConfigErrors) {
        match self {
            AuthConfig::None(_) => {}
            AuthConfig::Bearer(c) => check_scheme(&c.scheme, "auth.scheme", errors),
            AuthConfig::PasswordLogin(c) => c.validate(errors),
        }
    }

    /// Resolves secrets and returns the runtime authenticator. `provider` names the provider
    /// in errors.
    pub fn build(
        &self,
        provider: &str,
        base_url: &Url,
        env: &Env,
    ) -> Result<Authenticator, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let kind = match self {
            AuthConfig::None(_) => AuthKind::None,
            AuthConfig::Bearer(c) => match resolve(&c.token, "auth.token", env, &mut errors) {
                Some(token) => AuthKind::Static(header_pair(&c.scheme, &token)),
                None => AuthKind::None,
            },
            AuthConfig::PasswordLogin(c) => match c.build(base_url, env, &mut errors) {
                Some(login) => AuthKind::Session(TokenSession::new(
                    provider,
                    session::Login::Password(login),
                    c.scheme.clone(),
                    std::time::Duration::from_secs(c.renew_before_secs),
                )),
                None => AuthKind::None,
            },
        };
        errors.into_result(Authenticator {
            provider: provider.to_string(),
            kind,
        })
    }
}

fn check_scheme(scheme: &str, field: &str, errors: &mut ConfigErrors) {
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_graphic()) {
        errors.push(ConfigError::field(
            field,
            format!("`{scheme}` is not a valid scheme: expected one word such as `Bearer`"),
        ));
    }
}

fn resolve(
    secret: &SecretRef,
    field: &str,
    env: &Env,
    errors: &mut ConfigErrors,
) -> Option<Secret> {
    match secret.resolve(env) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(ConfigError::field(field, e.to_string()));
            None
        }
    }
}

/// `Authorization: <scheme> <token>`, marked sensitive so reqwest and hyper never print it.
fn header_pair(scheme: &str, token: &Secret) -> (HeaderName, HeaderValue) {
    let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    value.set_sensitive(true);
    (reqwest::header::AUTHORIZATION, value)
}

/// What a request must carry to be authenticated.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Identifies the token these headers carry, so a 401 invalidates only that token.
    pub generation: u64,
}

/// The runtime side of [`AuthConfig`].
#[derive(Debug)]
pub struct Authenticator {
    provider: String,
    kind: AuthKind,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per provider
enum AuthKind {
    None,
    Static((HeaderName, HeaderValue)),
    Session(TokenSession),
}

/// Authentication failed. Names the provider and the request, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("provider `{provider}`: login at {url} failed: {message}")]
    Login {
        provider: String,
        url: String,
        message: String,
    },
    #[error(
        "provider `{provider}`: authentication failed: {request} was rejected with 401 even \
         after a fresh login; check the credentials ({sources})"
    )]
    Rejected {
        provider: String,
        request: String,
        sources: String,
    },
}

impl Authenticator {
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The credentials for the next request; logs in (once, for all waiting callers) when
    /// there is no fresh token.
    pub async fn credentials(&self, client: &reqwest::Client) -> Result<Credentials, AuthError> {
        match &self.kind {
            AuthKind::None => Ok(Credentials::default()),
            AuthKind::Static(pair) => Ok(Credentials {
                headers: vec![pair.clone()],
                generation: 0,
            }),
            AuthKind::Session(s) => s.credentials(client).await,
        }
    }

    /// A request carrying `generation` got a 401: drop that token (if it is still current) so
    /// the next [`credentials`](Self::credentials) call logs in again. Returns false when the
    /// kind cannot renew (a static token): the caller should not retry.
    pub async fn rejected(&self, generation: u64) -> bool {
        match &self.kind {
            AuthKind::Session(s) => {
                s.invalidate(generation).await;
                true
            }
            _ => false,
        }
    }

    /// Where the credentials came from, for error messages (`env:NAME`, never a value).
    pub fn sources(&self) -> String {
        match &self.kind {
            AuthKind::None => "no credentials configured".into(),
            AuthKind::Static(_) => "the static token".into(),
            AuthKind::Session(s) => s.sources(),
        }
    }

    /// The secret values this authenticator holds, for scrubbing server messages.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.kind {
            AuthKind::Session(s) => s.redact(text),
            _ => text.to_string(),
        }
    }

    /// Logins so far (for the run summary and tests).
    pub fn logins(&self) -> u64 {
        match &self.kind {
            AuthKind::Session(s) => s.logins(),
            _ => 0,
        }
    }
}

/// Reads a string at `pointer` from a JSON body.
pub(crate) fn string_at(body: &serde_json::Value, pointer: &JsonPointer) -> Option<String> {
    match pointer.get(body)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Credentials as a JSON object, ready to send.
pub(crate) fn credentials_body(fields: &BTreeMap<String, Secret>) -> serde_json::Value {
    serde_json::Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().to_string())))
            .collect(),
    )
}
