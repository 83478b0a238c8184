//! Authentication: credentials in, request headers out, token kept fresh.
//!
//! [`AuthConfig`] is what a provider file says, one struct per kind; [`AuthConfig::build`]
//! resolves its secrets and returns an [`Authenticator`], shared (behind an `Arc`) by every
//! request of a run. Kinds that log in for a token (password, code exchange, JWT assertion,
//! OAuth2) only know how to obtain one token; [`session::TokenSession`] owns the lifecycle
//! common to all of them: single-flight login, renewal before expiry, one renewal per 401, a
//! re-authentication budget, and the optional cache between runs.

mod cache;
mod code_exchange;
mod exchange;
mod jwt;
mod oauth2;
mod password;
mod session;
mod static_kinds;
mod token;

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::env::Env;
use crate::secret::{Secret, SecretRef};
use crate::vocab::{ConfigError, ConfigErrors, JsonPointer};

pub use code_exchange::{AccountConfig, CodeExchangeConfig};
pub use jwt::JwtAssertionConfig;
pub use oauth2::OAuth2ClientCredentialsConfig;
pub use password::PasswordLoginConfig;
pub use session::TokenSession;
pub use static_kinds::{ApiKeyConfig, BasicConfig, BearerConfig, InteractiveMfaConfig};
pub use token::{CacheMode, Token, TokenConfig};

/// How requests to a provider are authenticated. `type` selects the kind.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
// One per provider, built once: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AuthConfig {
    /// No authentication.
    None(NoAuthConfig),
    /// A static token: `Authorization: <scheme> <token>`.
    Bearer(BearerConfig),
    /// A static API key in a header or a query parameter.
    ApiKey(ApiKeyConfig),
    /// HTTP basic authentication.
    Basic(BasicConfig),
    /// POST JSON credentials to a login path, read the token and its expiry from the answer
    /// (Seal Metrics, Spreetail).
    PasswordLogin(PasswordLoginConfig),
    /// Credentials for a code, the code for a token, an account context (Armor v1).
    CodeExchange(CodeExchangeConfig),
    /// An HS256-signed request token exchanged for a bearer token (Netography).
    JwtAssertion(JwtAssertionConfig),
    /// The OAuth2 client credentials grant (Kalibrate at Azure AD).
    Oauth2ClientCredentials(OAuth2ClientCredentialsConfig),
    /// A login that needs a person (ADFS forms with an MFA push, Armor v2): always rejected,
    /// with directions to a static token.
    InteractiveMfa(InteractiveMfaConfig),
}

crate::tagged_enum!(AuthConfig {
    "none" => None(NoAuthConfig),
    "bearer" => Bearer(BearerConfig),
    "api_key" => ApiKey(ApiKeyConfig),
    "basic" => Basic(BasicConfig),
    "password_login" => PasswordLogin(PasswordLoginConfig),
    "code_exchange" => CodeExchange(CodeExchangeConfig),
    "jwt_assertion" => JwtAssertion(JwtAssertionConfig),
    "oauth2_client_credentials" => Oauth2ClientCredentials(OAuth2ClientCredentialsConfig),
    "interactive_mfa" => InteractiveMfa(InteractiveMfaConfig),
});

/// No authentication.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoAuthConfig {}

impl AuthConfig {
    /// Checks what can be checked without the environment.
    pub fn validate(&self, errors: &mut ConfigErrors) {
        match self {
            AuthConfig::None(_) => {}
            AuthConfig::Bearer(c) => check_scheme(&c.scheme, "auth.scheme", errors),
            AuthConfig::ApiKey(c) => c.validate(errors),
            AuthConfig::Basic(_) => {}
            AuthConfig::PasswordLogin(c) => c.validate(errors),
            AuthConfig::CodeExchange(c) => c.validate(errors),
            AuthConfig::JwtAssertion(c) => c.validate(errors),
            AuthConfig::Oauth2ClientCredentials(c) => c.validate(errors),
            AuthConfig::InteractiveMfa(c) => c.validate(errors),
        }
    }

    /// Resolves secrets and returns the runtime authenticator. `provider` names the provider
    /// in errors and in the token cache.
    pub fn build(
        &self,
        provider: &str,
        base_url: &Url,
        env: &Env,
    ) -> Result<Authenticator, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        self.validate(&mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let session =
            |login: Option<session::Login>, token: &TokenConfig, errors: &mut ConfigErrors| {
                let login = login?;
                match TokenSession::new(provider, base_url, login, token.clone(), env) {
                    Ok(s) => Some(AuthKind::Session(Box::new(s))),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            };
        let kind = match self {
            AuthConfig::None(_) => Some(AuthKind::Static(Credentials::default())),
            AuthConfig::Bearer(c) => c.build(env, &mut errors).map(AuthKind::Static),
            AuthConfig::ApiKey(c) => c.build(env, &mut errors).map(AuthKind::Static),
            AuthConfig::Basic(c) => c.build(env, &mut errors).map(AuthKind::Static),
            AuthConfig::PasswordLogin(c) => {
                let login = c
                    .build(base_url, env, &mut errors)
                    .map(session::Login::Password);
                session(login, &c.token, &mut errors)
            }
            AuthConfig::CodeExchange(c) => {
                let login = c
                    .build(base_url, env, &mut errors)
                    .map(session::Login::CodeExchange);
                session(login, &c.token, &mut errors)
            }
            AuthConfig::JwtAssertion(c) => {
                let login = c.build(base_url, env, &mut errors).map(session::Login::Jwt);
                session(login, &c.token, &mut errors)
            }
            AuthConfig::Oauth2ClientCredentials(c) => {
                let login = c.build(env, &mut errors).map(session::Login::OAuth2);
                session(login, &c.token, &mut errors)
            }
            AuthConfig::InteractiveMfa(_) => None,
        };
        match kind {
            Some(kind) if errors.is_empty() => Ok(Authenticator {
                accepted: Default::default(),
                provider: provider.to_string(),
                kind,
            }),
            _ => Err(errors),
        }
    }
}

pub(crate) fn check_scheme(scheme: &str, field: &str, errors: &mut ConfigErrors) {
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_graphic()) {
        errors.push(ConfigError::field(
            field,
            format!("`{scheme}` is not a valid scheme: expected one word such as `Bearer`"),
        ));
    }
}

pub(crate) fn check_path(path: &str, field: &str, errors: &mut ConfigErrors) {
    if !path.starts_with('/') {
        errors.push(ConfigError::field(
            field,
            format!("`{path}` must start with `/`"),
        ));
    }
}

pub(crate) fn resolve(
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

/// Resolves a table of secrets; also returns where they came from, for error messages.
pub(crate) fn resolve_map(
    map: &BTreeMap<String, SecretRef>,
    field: &str,
    env: &Env,
    errors: &mut ConfigErrors,
) -> Option<(BTreeMap<String, Secret>, String)> {
    let mut out = BTreeMap::new();
    let mut sources = Vec::new();
    for (name, secret) in map {
        sources.push(format!("{name} from {secret}"));
        if let Some(v) = resolve(secret, &format!("{field}.{name}"), env, errors) {
            out.insert(name.clone(), v);
        }
    }
    (out.len() == map.len()).then(|| (out, sources.join(", ")))
}

/// `<name>: <value>` marked sensitive, so that reqwest and hyper never print it.
pub(crate) fn sensitive(name: HeaderName, value: &str) -> (HeaderName, HeaderValue) {
    let mut value =
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    value.set_sensitive(true);
    (name, value)
}

/// `Authorization: <scheme> <token>`.
pub(crate) fn authorization(scheme: &str, token: &Secret) -> (HeaderName, HeaderValue) {
    sensitive(
        reqwest::header::AUTHORIZATION,
        &format!("{scheme} {}", token.expose()),
    )
}

/// What a request must carry to be authenticated.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Query parameters (an API key); never shown in logged URLs.
    pub query: Vec<(String, Secret)>,
    /// Identifies the token these headers carry, so a 401 invalidates only that token.
    pub generation: u64,
}

/// The runtime side of [`AuthConfig`].
#[derive(Debug)]
pub struct Authenticator {
    provider: String,
    kind: AuthKind,
    /// The server has accepted the credentials (answered a request other than 401).
    accepted: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
enum AuthKind {
    Static(Credentials),
    Session(Box<TokenSession>),
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
    /// The login or token endpoint did not answer about the credentials: unreachable,
    /// timing out or failing (5xx, 429) after every retry. Not the credentials' fault: the
    /// run fails as for any unreachable API (exit 4), and a scheduler may retry it.
    #[error(
        "provider `{provider}`: the login endpoint {url} could not be reached after the \
         retries: {message}. The credentials were not judged; the next run tries again"
    )]
    LoginUnreachable {
        provider: String,
        url: String,
        message: String,
    },
    #[error(
        "provider `{provider}`: authentication failed: {request} was rejected {detail}; \
         check the credentials ({sources})"
    )]
    Rejected {
        provider: String,
        request: String,
        detail: String,
        sources: String,
    },
    #[error(
        "provider `{provider}`: re-authenticated {count} times within {window_secs} s after \
         401s (the budget is {max}); stopping so as not to lock the account. Raise \
         `auth.token.max_reauth` (1-100) if the API revokes tokens this often"
    )]
    Budget {
        provider: String,
        count: usize,
        max: u32,
        window_secs: u64,
    },
    #[error(
        "provider `{provider}`: logged in {count} times within {window_secs} s (the budget \
         is {max}): its tokens expire almost at once (a lifetime the login answer states as \
         0, or one too short for the run); stopping rather than sending the credentials for \
         every request. Raise `auth.token.max_logins` (1-1000) if the API's tokens are this \
         short-lived"
    )]
    Logins {
        provider: String,
        count: usize,
        max: u32,
        window_secs: u64,
    },
    #[error("provider `{provider}`: token cache {path}: {message}")]
    Cache {
        provider: String,
        path: String,
        message: String,
    },
}

impl Authenticator {
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The credentials for the next request; logs in (once, for all waiting callers) when
    /// there is no fresh token.
    pub async fn credentials(&self, http: &crate::http::Http) -> Result<Credentials, AuthError> {
        match &self.kind {
            AuthKind::Static(c) => Ok(c.clone()),
            AuthKind::Session(s) => s.credentials(http).await,
        }
    }

    /// A request was answered other than 401.
    pub fn accepted(&self) {
        self.accepted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the server has accepted the credentials in this process: a 401 after a
    /// fresh login then means its token was revoked (as the server goes, while other
    /// requests were in flight with it), not that the credentials or their scheme are wrong.
    pub fn ever_accepted(&self) -> bool {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A request carrying `generation` got a 401: drop that token (if it is still current) so
    /// the next [`credentials`](Self::credentials) call logs in again. `Ok(false)` when the
    /// kind cannot renew (a static credential): retrying would not help.
    pub async fn rejected(&self, generation: u64) -> Result<bool, AuthError> {
        match &self.kind {
            AuthKind::Session(s) => s.invalidate(generation).await.map(|()| true),
            AuthKind::Static(_) => Ok(false),
        }
    }

    /// Where the credentials came from, for error messages (`env:NAME`, never a value).
    pub fn sources(&self) -> String {
        match &self.kind {
            AuthKind::Static(_) => "the static credential".into(),
            AuthKind::Session(s) => s.sources(),
        }
    }

    /// The query parameters credentials are sent in (an API key's `query_param`).
    pub fn query_names(&self) -> Vec<String> {
        match &self.kind {
            AuthKind::Static(c) => c.query.iter().map(|(name, _)| name.clone()).collect(),
            AuthKind::Session(_) => Vec::new(),
        }
    }

    /// Whether `value` is one of the credentials or the token this authenticator holds, as
    /// a whole (not a part of it: a short password must not match a page number).
    pub(crate) fn holds(&self, value: &str) -> bool {
        match &self.kind {
            AuthKind::Session(s) => s.holds(value),
            AuthKind::Static(c) => {
                c.headers
                    .iter()
                    .filter_map(|(_, v)| v.to_str().ok())
                    .any(|v| v == value || v.rsplit(' ').next() == Some(value))
                    || c.query.iter().any(|(_, s)| s.expose() == value)
            }
        }
    }

    /// `text` with every credential and token this authenticator holds replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.kind {
            AuthKind::Session(s) => s.redact(text),
            AuthKind::Static(c) => crate::secret::redact(
                text,
                c.headers
                    .iter()
                    .filter_map(|(_, v)| v.to_str().ok())
                    .flat_map(|v| [v, v.rsplit(' ').next().unwrap_or(v)])
                    .chain(c.query.iter().map(|(_, s)| s.expose())),
            ),
        }
    }

    /// Logins so far (for the run summary and tests).
    pub fn logins(&self) -> u64 {
        match &self.kind {
            AuthKind::Session(s) => s.logins(),
            AuthKind::Static(_) => 0,
        }
    }

    /// Tokens renewed because the API answered 401.
    pub fn reauthentications(&self) -> u64 {
        match &self.kind {
            AuthKind::Session(s) => s.reauthentications(),
            AuthKind::Static(_) => 0,
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
