//! The token a login kind obtains, and the settings shared by every login kind: where the
//! token is in the response, its scheme, when to renew it, how many re-authentications a run
//! may make, and whether it may be cached between runs.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::vocab::{ConfigError, ConfigErrors, JsonPointer};

/// How a token is read from the token response, used, renewed and kept.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Where the token is in the token response.
    #[serde(default = "default_pointer")]
    pub pointer: JsonPointer,
    /// Where an absolute expiry time (ISO-8601, `Z` or an offset) is in the response.
    #[serde(default)]
    pub expires_at_pointer: Option<JsonPointer>,
    /// Where a lifetime in seconds is in the response.
    #[serde(default)]
    pub expires_in_pointer: Option<JsonPointer>,
    /// The lifetime in seconds when the response does not say (Armor: 900).
    #[serde(default)]
    pub lifetime_secs: Option<u64>,
    /// The scheme before the token: `Authorization: <scheme> <token>`.
    #[serde(default = "default_scheme")]
    #[schemars(example = &"FH-AUTH")]
    pub scheme: String,
    /// Renew this many seconds before expiry (never more than half the token's lifetime
    /// ahead).
    #[serde(default = "default_renew_before")]
    pub renew_before_secs: u64,
    /// Re-authentications after a 401 allowed per window before the run stops (1-100).
    #[serde(default = "default_max_reauth")]
    pub max_reauth: u32,
    /// The window of `max_reauth` and `max_logins`, in seconds.
    #[serde(default = "default_reauth_window")]
    pub reauth_window_secs: u64,
    /// Logins (of any cause: first, renewal before expiry, after a 401) allowed per window
    /// before the run stops (1-1000): tokens that expire at once, or a lifetime the server
    /// states as 0, would otherwise send the credentials again for every request.
    #[serde(default = "default_max_logins")]
    pub max_logins: u32,
    /// Keep the token between runs in an owner-only file (`disk`), or not (`none`).
    #[serde(default)]
    pub cache: CacheMode,
    /// Where cached tokens live; default `$XDG_CACHE_HOME/apisnap/tokens` or
    /// `~/.cache/apisnap/tokens`.
    #[serde(default)]
    pub cache_dir: Option<String>,
    /// The vendor asks that tokens stay in memory: refuse `cache = "disk"`.
    #[serde(default)]
    pub memory_only: bool,
}

/// Whether a token may outlive the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// In memory only.
    #[default]
    None,
    /// In a file readable by the owner only.
    Disk,
}

fn default_pointer() -> JsonPointer {
    "/access_token".parse().expect("valid pointer")
}

pub(crate) fn default_scheme() -> String {
    "Bearer".into()
}

fn default_renew_before() -> u64 {
    300
}

fn default_max_reauth() -> u32 {
    4
}

fn default_max_logins() -> u32 {
    30
}

fn default_reauth_window() -> u64 {
    600
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            pointer: default_pointer(),
            expires_at_pointer: None,
            expires_in_pointer: None,
            lifetime_secs: None,
            scheme: default_scheme(),
            renew_before_secs: default_renew_before(),
            max_reauth: default_max_reauth(),
            reauth_window_secs: default_reauth_window(),
            max_logins: default_max_logins(),
            cache: CacheMode::None,
            cache_dir: None,
            memory_only: false,
        }
    }
}

impl TokenConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        super::check_scheme(&self.scheme, "auth.token.scheme", errors);
        let expiries = [
            self.expires_at_pointer.is_some(),
            self.expires_in_pointer.is_some(),
            self.lifetime_secs.is_some(),
        ];
        if expiries.iter().filter(|x| **x).count() > 1 {
            errors.push(ConfigError::field(
                "auth.token",
                "set one of `expires_at_pointer`, `expires_in_pointer` and `lifetime_secs`",
            ));
        }
        if !(1..=100).contains(&self.max_reauth) {
            errors.push(ConfigError::field(
                "auth.token.max_reauth",
                format!("{} is out of range: expected 1-100", self.max_reauth),
            ));
        }
        if !(1..=1000).contains(&self.max_logins) {
            errors.push(ConfigError::field(
                "auth.token.max_logins",
                format!("{} is out of range: expected 1-1000", self.max_logins),
            ));
        }
        if self.reauth_window_secs == 0 {
            errors.push(ConfigError::field(
                "auth.token.reauth_window_secs",
                "expected at least 1 second",
            ));
        }
        if self.memory_only && self.cache == CacheMode::Disk {
            errors.push(ConfigError::field(
                "auth.token.cache",
                "this provider keeps tokens in memory only (`memory_only = true`): \
                 expected `cache = \"none\"`",
            ));
        }
    }

    /// Reads the token and its expiry from a token response.
    pub(crate) fn parse(&self, body: &serde_json::Value) -> Result<Token, String> {
        let value = super::string_at(body, &self.pointer)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("no token at {} in the response", self.pointer))?;
        let issued_at = Utc::now();
        // The lifetime the answer (or the config) states, in seconds.
        let stated = if let Some(ptr) = &self.expires_at_pointer {
            let text = super::string_at(body, ptr)
                .ok_or_else(|| format!("no expiry time at {ptr} in the response"))?;
            let at = DateTime::parse_from_rfc3339(&text)
                .map_err(|e| format!("expiry `{text}` at {ptr} is not ISO-8601: {e}"))?
                .with_timezone(&Utc);
            Some((
                (at - issued_at).num_milliseconds() as f64 / 1000.0,
                ptr.to_string(),
            ))
        } else if let Some(ptr) = &self.expires_in_pointer {
            let secs = ptr
                .get(body)
                .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
                .ok_or_else(|| format!("no lifetime in seconds at {ptr} in the response"))?;
            Some((secs, ptr.to_string()))
        } else {
            self.lifetime_secs
                .map(|s| (s as f64, "lifetime_secs".to_string()))
        };
        let expires_at = stated.map(|(secs, from)| {
            let secs = sane_lifetime(secs, &from);
            issued_at + chrono::Duration::seconds(secs)
        });
        Ok(Token {
            value: Secret::new(value),
            issued_at,
            expires_at,
            headers: Vec::new(),
        })
    }
}

/// The shortest token lifetime taken as stated: a shorter one (0, negative, not a number)
/// would make every request log in again.
const MIN_LIFETIME_SECS: i64 = 1;
/// The longest: a longer one (`1e300`, infinity) is a server's mistake, and would overflow
/// the clock.
const MAX_LIFETIME_SECS: i64 = 366 * 24 * 3600;

/// A stated lifetime, clamped to a sane range (with a WARN when it was not in it).
fn sane_lifetime(secs: f64, from: &str) -> i64 {
    let clamped = if secs.is_nan() {
        MIN_LIFETIME_SECS
    } else {
        secs.clamp(MIN_LIFETIME_SECS as f64, MAX_LIFETIME_SECS as f64) as i64
    };
    if secs.is_nan() || (clamped as f64 - secs).abs() >= 1.0 {
        tracing::warn!(
            stated = %secs,
            from,
            used_secs = clamped,
            "the token's lifetime is out of range ({MIN_LIFETIME_SECS} s to {MAX_LIFETIME_SECS} s): using the nearest bound"
        );
    }
    clamped
}

/// A token obtained by a login.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    pub issued_at: DateTime<Utc>,
    /// `None`: valid until the server rejects it.
    pub expires_at: Option<DateTime<Utc>>,
    /// Further headers every request carries with this token (Armor's account context).
    /// Not secret.
    pub headers: Vec<(String, String)>,
}

impl Token {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_lifetimes_are_clamped_not_obeyed() {
        assert_eq!(sane_lifetime(3600.0, "t"), 3600);
        assert_eq!(sane_lifetime(1e300, "t"), MAX_LIFETIME_SECS);
        assert_eq!(sane_lifetime(f64::INFINITY, "t"), MAX_LIFETIME_SECS);
        assert_eq!(sane_lifetime(-5.0, "t"), MIN_LIFETIME_SECS);
        assert_eq!(sane_lifetime(0.0, "t"), MIN_LIFETIME_SECS);
        assert_eq!(sane_lifetime(f64::NAN, "t"), MIN_LIFETIME_SECS);
    }
}
