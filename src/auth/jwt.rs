//! `jwt_assertion` (Netography): an HS256-signed request token exchanged for a bearer token.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use super::exchange::{Exchange, LoginFailure, pointer};
use super::resolve_map;
use super::token::{Token, TokenConfig};
use crate::env::Env;
use crate::secret::{Secret, SecretRef};
use crate::vocab::{ConfigError, ConfigErrors, JsonPointer, join_url};

/// Sign claims `{iat, jti, ...}` with a shared secret (HS256) and POST the result for a token.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAssertionConfig {
    /// Path that takes `{"<assertion_field>": <signed JWT>}` and answers with the token.
    #[serde(default = "default_token_path")]
    pub token_path: String,
    /// The shared secret the request token is signed with (HS256).
    pub secret: SecretRef,
    /// Claims added to every request token, written as they are (not secret), e.g.
    /// `{ appname = "analytics", shortname = "acme" }`.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Claims whose values are secrets, e.g. `{ appkey = "env:NETOGRAPHY_APPKEY" }`.
    #[serde(default)]
    pub secret_claims: BTreeMap<String, SecretRef>,
    /// The JSON field the signed token is sent in.
    #[serde(default = "default_assertion_field")]
    pub assertion_field: String,
    /// Where the server's error message is.
    #[serde(default = "default_error_pointer")]
    pub error_pointer: JsonPointer,
    /// The form of each request token's unique `jti`.
    #[serde(default)]
    pub jti: JtiForm,
    /// The token in the response, and its lifecycle.
    #[serde(default)]
    pub token: TokenConfig,
}

/// How a request token's `jti` is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JtiForm {
    /// A random integer below 2^53, so that servers that parse JSON numbers as doubles read
    /// it exactly (Netography's guide).
    #[default]
    Integer,
    /// A random UUID as a string (RFC 7519's form).
    Uuid,
}

fn default_token_path() -> String {
    "/auth/token".into()
}
fn default_assertion_field() -> String {
    "jwt".into()
}
fn default_error_pointer() -> JsonPointer {
    pointer("/error")
}

/// Claims apisnap sets itself.
const RESERVED: [&str; 2] = ["iat", "jti"];

impl JwtAssertionConfig {
    pub(super) fn validate(&self, errors: &mut ConfigErrors) {
        super::check_path(&self.token_path, "auth.token_path", errors);
        for name in self.claims.keys().chain(self.secret_claims.keys()) {
            if RESERVED.contains(&name.as_str()) {
                errors.push(ConfigError::field(
                    format!("auth.claims.{name}"),
                    "`iat` and `jti` are set for every request token: remove it",
                ));
            }
            if self.claims.contains_key(name) && self.secret_claims.contains_key(name) {
                errors.push(ConfigError::field(
                    format!("auth.secret_claims.{name}"),
                    "also set in `claims`: keep one",
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
    ) -> Option<JwtAssertion> {
        let secret = super::resolve(&self.secret, "auth.secret", env, errors);
        let secret_claims = resolve_map(&self.secret_claims, "auth.secret_claims", env, errors);
        let (secret_claims, claim_sources) = secret_claims?;
        let secret = secret?;
        Some(JwtAssertion {
            url: join_url(base, &self.token_path),
            key: jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
            sources: format!(
                "shared secret from {}{}",
                self.secret,
                if claim_sources.is_empty() {
                    String::new()
                } else {
                    format!(", {claim_sources}")
                }
            ),
            secret,
            secret_claims,
            config: self.clone(),
        })
    }
}

pub(crate) struct JwtAssertion {
    pub url: Url,
    key: jsonwebtoken::EncodingKey,
    secret: Secret,
    secret_claims: BTreeMap<String, Secret>,
    pub sources: String,
    config: JwtAssertionConfig,
}

impl std::fmt::Debug for JwtAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAssertion")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl JwtAssertion {
    pub fn secrets(&self) -> Vec<&Secret> {
        std::iter::once(&self.secret)
            .chain(self.secret_claims.values())
            .collect()
    }

    /// A freshly signed request token: `iat` now, a `jti` never used before.
    fn assertion(&self) -> Result<String, String> {
        let mut claims = serde_json::Map::new();
        claims.insert("iat".into(), chrono::Utc::now().timestamp().into());
        let jti: serde_json::Value = match self.config.jti {
            // Below 2^53, so that servers that parse JSON numbers as doubles (as the
            // vendor's Python example's `random.randint` suggests) read it exactly.
            JtiForm::Integer => (uuid::Uuid::new_v4().as_u64_pair().0 >> 11).into(),
            JtiForm::Uuid => uuid::Uuid::new_v4().to_string().into(),
        };
        claims.insert("jti".into(), jti);
        for (k, v) in &self.config.claims {
            claims.insert(k.clone(), v.clone().into());
        }
        for (k, v) in &self.secret_claims {
            claims.insert(k.clone(), v.expose().into());
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.key,
        )
        .map_err(|e| format!("cannot sign the request token: {e}"))
    }

    pub async fn login(&self, http: &crate::http::Http) -> Result<Token, LoginFailure> {
        let jwt = self.assertion()?;
        let body = serde_json::json!({ self.config.assertion_field.clone(): jwt });
        let result: Result<Token, LoginFailure> = async {
            let answer =
                Exchange::send(http, http.client.post(self.url.clone()).json(&body)).await?;
            let body = answer.success_json(&[&self.config.error_pointer])?;
            Ok(self.config.token.parse(&body)?)
        }
        .await;
        // The signed token is a credential too: a server that echoes it must not leak it.
        result.map_err(|f| f.map(|m| m.replace(&jwt, "[redacted]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jti_takes_the_configured_form() {
        let mut env = Env::empty();
        env.set("J_SECRET", "s3cret");
        for (form, check) in [
            (
                JtiForm::Integer,
                (|v: &serde_json::Value| v.as_u64().is_some()) as fn(&_) -> bool,
            ),
            (JtiForm::Uuid, |v| {
                v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
            }),
        ] {
            let config = JwtAssertionConfig {
                token_path: default_token_path(),
                secret: "env:J_SECRET".parse().unwrap(),
                claims: BTreeMap::new(),
                secret_claims: BTreeMap::new(),
                assertion_field: default_assertion_field(),
                error_pointer: default_error_pointer(),
                jti: form,
                token: TokenConfig::default(),
            };
            let mut errors = ConfigErrors::default();
            let base = Url::parse("https://api.example.com").unwrap();
            let jwt = config.build(&base, &env, &mut errors).unwrap();
            let token = jwt.assertion().unwrap();
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let claims = jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
                &validation,
            )
            .unwrap()
            .claims;
            assert!(check(&claims["jti"]), "{form:?}: {}", claims["jti"]);
        }
    }
}
