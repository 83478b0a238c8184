//! `code_exchange` (Armor v1): credentials -> code -> token, reissued before expiry, and an
//! account context sent with every request.

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

/// Two-step login: POST credentials for a code, exchange the code for a token.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeExchangeConfig {
    /// Path that takes the credentials and answers with a code.
    #[serde(default = "default_authorize_path")]
    pub authorize_path: String,
    /// Path that takes `{"code": …, "grant_type": …}` and answers with the token.
    #[serde(default = "default_token_path")]
    pub token_path: String,
    /// Path that takes `{"token": <current>}` and answers with a fresh token; without it an
    /// expiring token is replaced by a full login.
    #[serde(default)]
    pub reissue_path: Option<String>,
    /// The credential fields and where each value comes from, e.g.
    /// `{ userName = "env:ARMOR_USERNAME", password = "env:ARMOR_PASSWORD" }`.
    pub credentials: BTreeMap<String, SecretRef>,
    /// Where the code is in the authorize response.
    #[serde(default = "default_code_pointer")]
    pub code_pointer: JsonPointer,
    /// The `grant_type` sent with the code.
    #[serde(default = "default_grant_type")]
    pub grant_type: String,
    /// Where the server's error message is.
    #[serde(default = "default_error_pointer")]
    pub error_pointer: JsonPointer,
    /// The account every request acts for.
    #[serde(default)]
    pub account: Option<AccountConfig>,
    /// The token in the response, and its lifecycle.
    #[serde(default)]
    pub token: TokenConfig,
}

/// The account context: listed by `GET <path>`, sent as a header with every request.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Path that lists the user's accounts.
    #[serde(default = "default_account_path")]
    pub path: String,
    /// Where the list of accounts is in that response.
    #[serde(default = "default_list_pointer")]
    pub list_pointer: JsonPointer,
    /// The id field of each account.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// The header that carries the account id.
    #[serde(default = "default_account_header")]
    pub header: String,
    /// The account to use; it must be one of those listed. Default: the first listed.
    #[serde(default, deserialize_with = "crate::vocab::scalar_opt")]
    #[schemars(with = "Option<String>")]
    pub id: Option<String>,
}

fn default_authorize_path() -> String {
    "/auth/authorize".into()
}
fn default_token_path() -> String {
    "/auth/token".into()
}
fn default_code_pointer() -> JsonPointer {
    pointer("/code")
}
fn default_grant_type() -> String {
    "authorization_code".into()
}
fn default_error_pointer() -> JsonPointer {
    pointer("/message")
}
fn default_account_path() -> String {
    "/me".into()
}
fn default_list_pointer() -> JsonPointer {
    pointer("/accounts")
}
fn default_id_field() -> String {
    "id".into()
}
fn default_account_header() -> String {
    "X-Account-Context".into()
}

impl CodeExchangeConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        super::check_path(&self.authorize_path, "auth.authorize_path", errors);
        super::check_path(&self.token_path, "auth.token_path", errors);
        if let Some(p) = &self.reissue_path {
            super::check_path(p, "auth.reissue_path", errors);
        }
        if self.credentials.is_empty() {
            errors.push(ConfigError::field(
                "auth.credentials",
                "expected at least one credential",
            ));
        }
        if let Some(a) = &self.account {
            super::check_path(&a.path, "auth.account.path", errors);
            if reqwest::header::HeaderName::from_bytes(a.header.as_bytes()).is_err() {
                errors.push(ConfigError::field(
                    "auth.account.header",
                    "not a valid header name",
                ));
            }
        }
        self.token.validate(errors);
    }

    pub(super) fn build(
        &self,
        base: &Url,
        env: &Env,
        errors: &mut ConfigErrors,
    ) -> Option<CodeExchange> {
        let (fields, sources) = resolve_map(&self.credentials, "auth.credentials", env, errors)?;
        Some(CodeExchange {
            authorize_url: join_url(base, &self.authorize_path),
            token_url: join_url(base, &self.token_path),
            reissue_url: self.reissue_path.as_ref().map(|p| join_url(base, p)),
            account_url: self.account.as_ref().map(|a| join_url(base, &a.path)),
            fields,
            sources,
            config: self.clone(),
        })
    }
}

#[derive(Debug)]
pub(crate) struct CodeExchange {
    pub authorize_url: Url,
    token_url: Url,
    reissue_url: Option<Url>,
    account_url: Option<Url>,
    fields: BTreeMap<String, Secret>,
    pub sources: String,
    config: CodeExchangeConfig,
}

impl CodeExchange {
    pub fn secrets(&self) -> Vec<&Secret> {
        self.fields.values().collect()
    }

    pub fn can_reissue(&self) -> bool {
        self.reissue_url.is_some()
    }

    pub async fn login(&self, http: &crate::http::Http) -> Result<Token, LoginFailure> {
        let errors = [&self.config.error_pointer];
        let answer = Exchange::send(
            http,
            http.client
                .post(self.authorize_url.clone())
                .json(&credentials_body(&self.fields)),
        )
        .await?;
        let body = answer
            .success_json(&errors)
            .map_err(|e| format!("authorize step: {e}"))?;
        let code = super::string_at(&body, &self.config.code_pointer).ok_or_else(|| {
            format!(
                "authorize step: no code at {} in the response",
                self.config.code_pointer
            )
        })?;
        let answer = Exchange::send(
            http,
            http.client
                .post(self.token_url.clone())
                .json(&serde_json::json!({"code": code, "grant_type": self.config.grant_type})),
        )
        .await?;
        let body = answer
            .success_json(&errors)
            .map_err(|e| format!("token step at {}: {e}", self.token_url))?;
        let mut token = self.config.token.parse(&body)?;
        if let (Some(url), Some(account)) = (&self.account_url, &self.config.account) {
            let id = self.account(http, url, account, &token).await?;
            token.headers.push((account.header.clone(), id));
        }
        Ok(token)
    }

    /// Trades the current token for a fresh one; the account context carries over.
    pub async fn reissue(
        &self,
        http: &crate::http::Http,
        current: &Token,
    ) -> Result<Token, LoginFailure> {
        let url = self.reissue_url.as_ref().ok_or("no reissue path")?;
        let answer = Exchange::send(
            http,
            http.client
                .post(url.clone())
                .json(&serde_json::json!({"token": current.value.expose()})),
        )
        .await?;
        let body = answer.success_json(&[&self.config.error_pointer])?;
        let mut token = self.config.token.parse(&body)?;
        token.headers = current.headers.clone();
        Ok(token)
    }

    async fn account(
        &self,
        http: &crate::http::Http,
        url: &Url,
        account: &AccountConfig,
        token: &Token,
    ) -> Result<String, LoginFailure> {
        let auth = super::authorization(&self.config.token.scheme, &token.value);
        let answer =
            Exchange::send(http, http.client.get(url.clone()).header(auth.0, auth.1)).await?;
        let body = answer
            .success_json(&[&self.config.error_pointer])
            .map_err(|e| format!("listing accounts at {url}: {e}"))?;
        let ids: Vec<String> = account
            .list_pointer
            .get(&body)
            .and_then(|v| v.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|a| match a.get(&account.id_field)? {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        match &account.id {
            Some(want) if ids.contains(want) => Ok(want.clone()),
            Some(want) => Err(format!(
                "account `{want}` (auth.account.id) is not one of this user's accounts: {}",
                if ids.is_empty() {
                    "none are listed".to_string()
                } else {
                    ids.join(", ")
                }
            )
            .into()),
            None => ids.into_iter().next().ok_or_else(|| {
                LoginFailure::from(format!(
                    "{url} lists no accounts at {} with an `{}` field",
                    account.list_pointer, account.id_field
                ))
            }),
        }
    }
}
