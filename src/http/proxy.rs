//! `[proxy]`: the HTTP proxy a provider's requests go through — data, login and token
//! requests alike, since they share one client.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::secret::SecretRef;
use crate::vocab::{ConfigError, ConfigErrors};

/// The proxy of one provider. Without this table the environment decides, as for curl:
/// `HTTPS_PROXY` for `https://` URLs, `HTTP_PROXY` for `http://`, `ALL_PROXY` for both,
/// `NO_PROXY` for the hosts reached directly (lower-case names too).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The proxy, `http://proxy.example.com:3128`; `"none"` connects directly whatever the
    /// environment says. Default: the environment's.
    #[serde(default)]
    #[schemars(example = &"http://proxy.example.com:3128")]
    pub url: Option<String>,
    /// Hosts reached without the proxy: names (`internal.example.com`), domains
    /// (`.example.com`), addresses and networks (`10.0.0.0/8`). Default: `NO_PROXY`.
    #[serde(default)]
    pub no_proxy: Option<Vec<String>>,
    /// The proxy's user name, for Basic authentication (`env:` or `file:`).
    #[serde(default)]
    pub username: Option<SecretRef>,
    /// The proxy's password.
    #[serde(default)]
    pub password: Option<SecretRef>,
}

/// How a client reaches the network: the runtime form of [`ProxyConfig`].
#[derive(Clone, Debug)]
pub enum Proxying {
    /// As the environment says (`HTTPS_PROXY`, `NO_PROXY`, …).
    Environment,
    /// Straight to the server.
    Direct,
    /// Through this proxy.
    Via(Box<reqwest::Proxy>),
}

impl ProxyConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        let Some(url) = self.url.as_deref().filter(|u| *u != "none") else {
            if self.username.is_some() || self.password.is_some() {
                errors.push(ConfigError::field(
                    "proxy.username",
                    "proxy credentials need a `proxy.url` (the environment's proxy URL carries \
                     its own, as `http://user:password@host:port`)",
                ));
            }
            return;
        };
        match url::Url::parse(url) {
            Err(e) => errors.push(ConfigError::field(
                "proxy.url",
                format!(
                    "`{url}` is not a URL ({e}): expected e.g. `http://proxy.example.com:3128`"
                ),
            )),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => errors.push(ConfigError::field(
                "proxy.url",
                format!(
                    "`{}`: expected an `http://` or `https://` proxy",
                    u.scheme()
                ),
            )),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                errors.push(ConfigError::field(
                    "proxy.url",
                    "the URL carries credentials, where logs and errors would show them: \
                     declare them as `proxy.username` and `proxy.password` secrets",
                ))
            }
            Ok(_) => {}
        }
        if self.username.is_some() != self.password.is_some() {
            errors.push(ConfigError::field(
                "proxy.password",
                "set both `proxy.username` and `proxy.password`, or neither",
            ));
        }
    }

    /// The runtime form, its secrets read.
    pub fn build(&self, env: &Env) -> Result<Proxying, ConfigError> {
        let url = match self.url.as_deref() {
            None => return Ok(Proxying::Environment),
            Some("none") => return Ok(Proxying::Direct),
            Some(url) => url,
        };
        let mut proxy = reqwest::Proxy::all(url)
            .map_err(|e| ConfigError::field("proxy.url", format!("`{url}`: {e}")))?;
        let no_proxy = match &self.no_proxy {
            Some(hosts) => Some(hosts.join(",")),
            None => env
                .get("NO_PROXY")
                .or(env.get("no_proxy"))
                .map(str::to_string),
        };
        proxy = proxy.no_proxy(no_proxy.as_deref().and_then(reqwest::NoProxy::from_string));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            let read = |field: &str, secret: &SecretRef| {
                secret
                    .resolve(env)
                    .map_err(|e| ConfigError::field(field, e.to_string()))
            };
            let user = read("proxy.username", user)?;
            let password = read("proxy.password", password)?;
            proxy = proxy.basic_auth(user.expose(), password.expose());
        }
        Ok(Proxying::Via(Box::new(proxy)))
    }
}

impl Proxying {
    /// The proxy requests to `base` go through, for messages: the configured one, or the
    /// environment's variable for `base`'s scheme (unless `NO_PROXY` names its host),
    /// without any credentials in it.
    pub fn describe(&self, base: &url::Url, env: &Env) -> Option<String> {
        match self {
            Proxying::Direct => None,
            Proxying::Via(_) => None,
            Proxying::Environment => {
                let var = |name: &str| {
                    env.get(name)
                        .or(env.get(&name.to_lowercase()))
                        .filter(|v| !v.is_empty())
                        .map(|v| (name.to_string(), v.to_string()))
                };
                let scheme_var = if base.scheme() == "https" {
                    "HTTPS_PROXY"
                } else {
                    "HTTP_PROXY"
                };
                let (name, value) = var(scheme_var).or_else(|| var("ALL_PROXY"))?;
                let host = base.host_str().unwrap_or_default();
                let bypassed = var("NO_PROXY").is_some_and(|(_, list)| {
                    list.split(',').map(str::trim).any(|h| {
                        h == "*"
                            || h == host
                            || (!h.is_empty()
                                && host.ends_with(&format!(".{}", h.trim_start_matches('.'))))
                    })
                });
                (!bypassed).then(|| format!("{} from {name}", without_userinfo(&value)))
            }
        }
    }
}

/// A proxy URL for messages: its user name and password left out.
fn without_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(a value that is not a URL)".into(),
    }
}
