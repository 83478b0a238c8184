//! Credentials that never change during a run: a bearer token, an API key, HTTP basic.

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Credentials, authorization, resolve, sensitive};
use crate::env::Env;
use crate::vocab::{ConfigError, ConfigErrors};

/// A static token, e.g. one issued by hand or by an interactive login.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// The token: `env:NAME` or `file:/path`.
    pub token: crate::secret::SecretRef,
    /// The scheme before the token in the `Authorization` header.
    #[serde(default = "super::token::default_scheme")]
    pub scheme: String,
}

impl BearerConfig {
    pub(super) fn build(&self, env: &Env, errors: &mut ConfigErrors) -> Option<Credentials> {
        let token = resolve(&self.token, "auth.token", env, errors)?;
        Some(Credentials {
            headers: vec![authorization(&self.scheme, &token)],
            ..Credentials::default()
        })
    }
}

/// A static API key, sent in a header or as a query parameter (never shown in logged URLs).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key: `env:NAME` or `file:/path`.
    pub key: crate::secret::SecretRef,
    /// Send it in this header, e.g. `X-API-Key`.
    #[serde(default)]
    pub header: Option<String>,
    /// Or as this query parameter, e.g. `api_key`.
    #[serde(default)]
    pub query_param: Option<String>,
}

impl ApiKeyConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        match (&self.header, &self.query_param) {
            (Some(_), Some(_)) | (None, None) => errors.push(ConfigError::field(
                "auth",
                "expected exactly one of `header` and `query_param`",
            )),
            (Some(h), None) if HeaderName::from_bytes(h.as_bytes()).is_err() => errors.push(
                ConfigError::field("auth.header", format!("`{h}` is not a valid header name")),
            ),
            _ => {}
        }
    }

    pub(super) fn build(&self, env: &Env, errors: &mut ConfigErrors) -> Option<Credentials> {
        let key = resolve(&self.key, "auth.key", env, errors)?;
        let mut creds = Credentials::default();
        if let Some(h) = &self.header {
            let name = HeaderName::from_bytes(h.as_bytes()).ok()?;
            creds.headers.push(sensitive(name, key.expose()));
        } else if let Some(q) = &self.query_param {
            creds.query.push((q.clone(), key));
        }
        Some(creds)
    }
}

/// HTTP basic authentication.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// The user name: `env:NAME` or `file:/path`.
    pub username: crate::secret::SecretRef,
    /// The password: `env:NAME` or `file:/path`.
    pub password: crate::secret::SecretRef,
}

impl BasicConfig {
    pub(super) fn build(&self, env: &Env, errors: &mut ConfigErrors) -> Option<Credentials> {
        let user = resolve(&self.username, "auth.username", env, errors);
        let password = resolve(&self.password, "auth.password", env, errors);
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            user?.expose(),
            password?.expose()
        ));
        Some(Credentials {
            headers: vec![sensitive(AUTHORIZATION, &format!("Basic {encoded}"))],
            ..Credentials::default()
        })
    }
}

/// A login that needs a person at the keyboard (ADFS forms login with an MFA push, as
/// Armor's v2 authentication): apisnap runs unattended and cannot do it. Any fields are
/// accepted so that the error can explain instead of listing unknown fields.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
pub struct InteractiveMfaConfig {
    #[serde(flatten)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl InteractiveMfaConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        errors.push(ConfigError::field(
            "auth.type",
            "`interactive_mfa` needs a person to approve an MFA push, which an unattended \
             job cannot do: obtain a token interactively and configure \
             `type = \"bearer\"` with `token = \"env:ARMOR_TOKEN\"` (and `scheme = \"FH-AUTH\"` \
             for Armor), or use Armor's v1 login (`type = \"code_exchange\"`)",
        ));
    }
}
