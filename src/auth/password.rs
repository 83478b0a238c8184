//! `password_login`: JSON credentials POSTed to a login path (Seal Metrics, Spreetail).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use super::exchange::{Exchange, LoginFailure, pointer};
use super::token::{Token, TokenConfig};
use super::{credentials_body, resolve_map};
use crate::env::Env;
use crate::secret::{Secret, SecretRef};
use crate::vocab::{ConfigError, ConfigErrors, JsonPointer, join_url};

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
    /// A boolean in the response that must be `true`; `false` is a failed login even with
    /// HTTP 200 (Spreetail's `/success`).
    #[serde(default)]
    pub success_pointer: Option<JsonPointer>,
    /// Where the server's error message is, shown when the login fails.
    #[serde(default = "default_error_pointer")]
    pub error_pointer: JsonPointer,
    /// The token in the response, and its lifecycle.
    #[serde(default)]
    pub token: TokenConfig,
}

fn default_login_path() -> String {
    "/auth/login".into()
}

fn default_error_pointer() -> JsonPointer {
    pointer("/error")
}

impl PasswordLoginConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        if self.credentials.is_empty() {
            errors.push(ConfigError::field(
                "auth.credentials",
                "expected at least one credential, e.g. \
                 `credentials = { email = \"env:EMAIL\", password = \"env:PASSWORD\" }`",
            ));
        }
        super::check_path(&self.path, "auth.path", errors);
        self.token.validate(errors);
    }

    pub(super) fn build(
        &self,
        base_url: &Url,
        env: &Env,
        errors: &mut ConfigErrors,
    ) -> Option<PasswordLogin> {
        let (fields, sources) = resolve_map(&self.credentials, "auth.credentials", env, errors)?;
        Some(PasswordLogin {
            url: join_url(base_url, &self.path),
            fields,
            sources,
            config: self.clone(),
        })
    }
}

/// The runtime side of [`PasswordLoginConfig`].
#[derive(Debug)]
pub(crate) struct PasswordLogin {
    pub url: Url,
    fields: BTreeMap<String, Secret>,
    pub sources: String,
    config: PasswordLoginConfig,
}

impl PasswordLogin {
    pub fn secrets(&self) -> Vec<&Secret> {
        self.fields.values().collect()
    }

    pub async fn login(&self, http: &crate::http::Http) -> Result<Token, LoginFailure> {
        let answer = Exchange::send(
            http,
            http.client
                .post(self.url.clone())
                .json(&credentials_body(&self.fields)),
        )
        .await?;
        let errors = [&self.config.error_pointer];
        let message = answer.message(&errors);
        let body = answer.success_json(&errors)?;
        if let Some(ptr) = &self.config.success_pointer
            && ptr.get(&body) != Some(&serde_json::Value::Bool(true))
        {
            return Err(format!("the server answered {ptr} = false: {message}").into());
        }
        Ok(self.config.token.parse(&body)?)
    }
}
