//! The words every component's configuration is written in: errors that name file and
//! field ([`ConfigError`]), JSON pointers, scalar maps, `type`-tagged enums, URL rules and
//! time zones. A leaf: it imports nothing of apisnap's, so that each component can use it
//! while `config` (the job and provider definitions) names every component's config above
//! them.

mod pointer;
mod scalar;
mod tagged;

use std::fmt;
use std::path::{Path, PathBuf};

pub use pointer::JsonPointer;
pub(crate) use scalar::{scalar_map, scalar_map_schema, scalar_opt};
pub use tagged::{PATH_MARK, split_path};

/// One mistake in a job or provider file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file; `None` until the loader attaches it.
    pub file: Option<PathBuf>,
    /// The field path, e.g. `pagination.page_size`; `None` for the file as a whole.
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConfigError {
            file: Some(file.into()),
            field: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// All the mistakes found in one or more files.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Records a mistake at `field` unless `ok`.
    pub fn require(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.push(ConfigError::field(field, message));
        }
    }

    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Attaches `file` to every error that has none yet.
    pub fn in_file(mut self, file: &Path) -> Self {
        for e in &mut self.0 {
            if e.file.is_none() {
                e.file = Some(file.to_path_buf());
            }
        }
        self
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(value: ConfigError) -> Self {
        ConfigErrors(vec![value])
    }
}

/// Joins an endpoint path to a base URL, keeping the base's own path
/// (`https://h/api` + `/auth/login` = `https://h/api/auth/login`, where `Url::join` would drop
/// `/api`).
pub fn join_url(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

/// Checks a base URL: absolute, `https://`, or `http://` to a loopback host only (credentials
/// would otherwise cross the network in clear text).
pub fn check_base_url(text: &str, field: &str) -> Result<url::Url, ConfigError> {
    // Messages quote the URL: never with a password in it.
    let shown = without_userinfo(text);
    let url = url::Url::parse(text).map_err(|e| {
        ConfigError::field(
            field,
            format!("`{shown}` is not a URL ({e}): expected e.g. `https://api.example.com/v1`"),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::field(
            field,
            format!(
                "`{shown}` carries credentials in the URL (`user:password@`), where logs and \
                 errors would show them: remove them and declare them in `[auth]` as `env:` or \
                 `file:` secrets"
            ),
        ));
    }
    let text = shown.as_str();
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::field(
                field,
                format!(
                    "`{text}` uses plain http:// to a non-loopback host, which would send \
                     credentials in clear text: expected https://"
                ),
            ));
        }
        other => {
            return Err(ConfigError::field(
                field,
                format!(
                    "`{text}` has scheme `{other}`: expected https:// (or http:// to localhost)"
                ),
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::field(
            field,
            format!("`{text}` has a query or fragment: put query parameters in the endpoint"),
        ));
    }
    Ok(url)
}

/// Checks a name that becomes part of a path (a job's, a run id): letters, digits, `_`, `.`
/// and `-` only, and not `.` or `..`, so that it can never climb out of its directory or
/// stand for another.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}` is not a plain name: expected letters, digits, `_`, `.` and `-` \
             (and not `.` or `..`), e.g. `orders_daily`"
        ))
    }
}

/// `text` with any `user:password@` after the scheme cut out.
fn without_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[credentials removed]@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An IANA time zone by name (`Europe/Madrid`), with a message that says what was expected.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse().map_err(|_| {
        format!("`{name}` is not an IANA time zone: expected e.g. `UTC`, `Europe/Madrid`, `America/New_York`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_base_path() {
        let base = url::Url::parse("https://h.example/api/").unwrap();
        assert_eq!(
            join_url(&base, "/auth/login").as_str(),
            "https://h.example/api/auth/login"
        );
    }

    #[test]
    fn names_that_become_paths() {
        assert!(check_name("seal_metrics_events", "job").is_ok());
        assert!(check_name("nightly-2026.12.01", "run id").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(check_name(bad, "job").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base_url_rules() {
        assert!(check_base_url("https://a.example", "f").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080/x", "f").is_ok());
        assert!(check_base_url("http://[::1]:1/", "f").is_ok());
        assert!(check_base_url("http://localhost/", "f").is_ok());
        let e = check_base_url("http://a.example", "f").unwrap_err();
        assert!(e.message.contains("clear text"));
        assert!(check_base_url("not a url", "f").is_err());
        let e = check_base_url("https://me:s3cret@api.example.com/v1", "base_url").unwrap_err();
        assert!(e.message.contains("carries credentials"), "{e}");
        assert!(!e.message.contains("s3cret"), "{e}");
        let e = check_base_url("http://me:s3cret@api.example.com/v1", "base_url").unwrap_err();
        assert!(!e.message.contains("s3cret"), "{e}");
    }
}
