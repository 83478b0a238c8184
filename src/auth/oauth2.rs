//! `oauth2_client_credentials` (Kalibrate at Azure AD): the OAuth2 client credentials grant.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use super::exchange::{Exchange, LoginFailure, pointer};
use super::token::{Token, TokenConfig};
use crate::env::Env;
use crate::secret::{Secret, SecretRef};
use crate::vocab::{ConfigErrors, check_base_url};

/// POST a form `client_id`, `client_secret`, `grant_type=client_credentials`, `scope` to a
/// token URL (which may be on another host, such as an Azure AD tenant).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentialsConfig {
    /// The token endpoint, absolute.
    #[schemars(example = &"https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token")]
    pub token_url: String,
    /// The client id.
    pub client_id: SecretRef,
    /// The client secret.
    pub client_secret: SecretRef,
    /// The scope asked for, e.g. `api://…/.default`.
    #[serde(default)]
    pub scope: Option<String>,
    /// The token in the response, and its lifecycle. OAuth2 answers carry `expires_in`.
    #[serde(default = "default_token")]
    pub token: TokenConfig,
}

fn default_token() -> TokenConfig {
    TokenConfig {
        expires_in_pointer: Some(pointer("/expires_in")),
        ..TokenConfig::default()
    }
}

impl OAuth2ClientCredentialsConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        if let Err(e) = check_base_url(&self.token_url, "auth.token_url") {
            errors.push(e);
        }
        self.token.validate(errors);
    }

    pub(super) fn build(&self, env: &Env, errors: &mut ConfigErrors) -> Option<OAuth2> {
        let url = check_base_url(&self.token_url, "auth.token_url")
            .map_err(|e| errors.push(e))
            .ok();
        let id = super::resolve(&self.client_id, "auth.client_id", env, errors);
        let secret = super::resolve(&self.client_secret, "auth.client_secret", env, errors);
        Some(OAuth2 {
            url: url?,
            client_id: id?,
            client_secret: secret?,
            sources: format!(
                "client id from {}, client secret from {}",
                self.client_id, self.client_secret
            ),
            config: self.clone(),
        })
    }
}

#[derive(Debug)]
pub(crate) struct OAuth2 {
    pub url: Url,
    client_id: Secret,
    client_secret: Secret,
    pub sources: String,
    config: OAuth2ClientCredentialsConfig,
}

impl OAuth2 {
    pub fn secrets(&self) -> Vec<&Secret> {
        vec![&self.client_secret, &self.client_id]
    }

    pub async fn login(&self, http: &crate::http::Http) -> Result<Token, LoginFailure> {
        let mut form = vec![
            ("client_id", self.client_id.expose()),
            ("client_secret", self.client_secret.expose()),
            ("grant_type", "client_credentials"),
        ];
        if let Some(scope) = &self.config.scope {
            form.push(("scope", scope));
        }
        let answer = Exchange::send(http, http.client.post(self.url.clone()).form(&form)).await?;
        // RFC 6749 §5.2: `error` and `error_description`.
        let body = answer.success_json(&[&pointer("/error"), &pointer("/error_description")])?;
        Ok(self.config.token.parse(&body)?)
    }
}
