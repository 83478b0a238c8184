//! Secrets: where they come from and how they are kept out of logs.
//!
//! A job or provider file never holds a secret value. It holds a [`SecretRef`] — `env:NAME` or
//! `file:/path` — which is resolved at load time, before any request, into a [`Secret`]. A
//! `Secret` prints as `[redacted]` in `Debug` and `Display`; the only way to read it is
//! [`Secret::expose`], which is called where the value goes on the wire and nowhere else.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::env::Env;

/// A secret value. Redacted in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for putting on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The forms a secret value takes in text a server sends back or a URL holds: as it is,
/// percent-encoded (`+` as `%2B` or, in a form, a space as `+`; hex in either case),
/// JSON-escaped (with `/` as `\/` too, as PHP writes it) and base64 (standard and URL-safe,
/// with and without padding). Each is replaced by `[redacted]`.
fn renderings(value: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut out = vec![value.to_string()];
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    out.push(form.replace('+', "%20"));
    out.push(form.to_lowercase_hex());
    out.push(form);
    let json = serde_json::to_string(value).expect("strings serialize");
    let json = json[1..json.len() - 1].to_string();
    out.push(json.replace('/', "\\/"));
    out.push(json);
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        out.push(engine.encode(value));
    }
    // Longest first, so that a longer form is not half-replaced by a shorter one.
    out.sort_by_key(|r| std::cmp::Reverse(r.len()));
    out.dedup();
    out
}

/// Percent-escapes with lowercase hex digits (`%2b`), as some servers write them.
trait LowercaseHex {
    fn to_lowercase_hex(&self) -> String;
}

impl LowercaseHex for String {
    fn to_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut chars = self.chars();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
            }
        }
        out
    }
}

/// The shortest secret replaced wherever it appears; a shorter one only as a whole word
/// (not inside another), or every message would lose each of its letters.
const SHORTEST_ANYWHERE: usize = 4;

/// `text` with every rendering of each of `secrets` replaced by `[redacted]`: the one
/// redactor of server text, URLs and errors.
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = text.to_string();
    for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
        for form in renderings(secret) {
            text = if form.len() >= SHORTEST_ANYWHERE {
                text.replace(&form, "[redacted]")
            } else {
                replace_word(&text, &form)
            };
        }
    }
    text
}

/// `text` with `word` replaced where it stands alone (no letter or digit on either side).
fn replace_word(text: &str, word: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        out.push_str(if alone { "[redacted]" } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Where a secret comes from: `env:NAME` (an environment variable, or a `.env` file in the
/// working directory) or `file:/path` (for example a Kubernetes secret mount or a systemd
/// credential). Literal values are rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl JsonSchema for SecretRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Where a secret comes from: `env:NAME` or `file:/path`. Literal secrets are rejected.",
            "pattern": "^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$",
            "examples": ["env:SEAL_METRICS_PASSWORD", "file:/run/secrets/seal_password"]
        })
    }
}

impl From<SecretRef> for String {
    fn from(value: SecretRef) -> Self {
        value.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl std::str::FromStr for SecretRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(name) = s.strip_prefix("env:") {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                Ok(SecretRef::Env(name.to_string()))
            } else {
                Err(format!(
                    "`env:{name}` is not a valid variable name (letters, digits and `_`)"
                ))
            }
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                Err("`file:` needs a path, e.g. `file:/run/secrets/password`".into())
            } else {
                Ok(SecretRef::File(PathBuf::from(path)))
            }
        } else {
            // The value itself is never echoed: it may be the secret.
            Err(
                "a literal secret is not allowed in a job or provider file; \
                 write `env:NAME` or `file:/path` and put the value there"
                    .into(),
            )
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret that could not be resolved. Names the source, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "environment variable {0} is not set (export it, add it to .env, or put a file {0} in \
         $APISNAP_SECRETS_DIR or systemd's $CREDENTIALS_DIRECTORY)"
    )]
    MissingEnv(String),
    #[error("environment variable {0} is empty")]
    EmptyEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
}

impl SecretRef {
    /// Reads the secret. A trailing newline in a file is dropped (`echo secret > file`).
    pub fn resolve(&self, env: &Env) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(name) => match env.get(name) {
                // A mounted Kubernetes Secret, or systemd's LoadCredential=: the variable's
                // value is the file of its name there, read as a `file:` secret.
                None => match secret_dirs(env)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
                {
                    Some(path) => SecretRef::File(path).resolve(env),
                    None => Err(SecretError::MissingEnv(name.clone())),
                },
                Some("") => Err(SecretError::EmptyEnv(name.clone())),
                Some(v) => Ok(Secret::new(v)),
            },
            SecretRef::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
                        path: path.clone(),
                        source,
                    })?;
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    Err(SecretError::EmptyFile(path.clone()))
                } else {
                    Ok(Secret::new(value))
                }
            }
        }
    }
}

/// Directories holding one file per secret variable: `APISNAP_SECRETS_DIR` (a mounted
/// Kubernetes Secret), then systemd's `CREDENTIALS_DIRECTORY` (set for `LoadCredential=`).
fn secret_dirs(env: &Env) -> impl Iterator<Item = PathBuf> + '_ {
    ["APISNAP_SECRETS_DIR", "CREDENTIALS_DIRECTORY"]
        .into_iter()
        .filter_map(|var| env.get(var))
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_secret_falls_back_to_a_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("API_TOKEN"), "from-file\n").unwrap();
        let reference = SecretRef::Env("API_TOKEN".into());
        let credentials = Env::empty().with(
            "CREDENTIALS_DIRECTORY",
            dir.path().to_string_lossy().to_string(),
        );
        assert_eq!(
            reference.resolve(&credentials).unwrap().expose(),
            "from-file"
        );
        let mounted = Env::empty().with(
            "APISNAP_SECRETS_DIR",
            dir.path().to_string_lossy().to_string(),
        );
        assert_eq!(reference.resolve(&mounted).unwrap().expose(), "from-file");
        // The variable wins over the file.
        let both = mounted.with("API_TOKEN", "from-env");
        assert_eq!(reference.resolve(&both).unwrap().expose(), "from-env");
        let missing = SecretRef::Env("OTHER".into()).resolve(&credentials);
        assert!(matches!(missing, Err(SecretError::MissingEnv(_))));
    }

    #[test]
    fn every_rendering_of_a_secret_is_redacted_and_short_ones_only_as_words() {
        let key = "SEKRET+KEY/789=";
        for quoted in [
            "invalid key SEKRET+KEY/789=",
            "invalid key SEKRET%2BKEY%2F789%3D",
            "invalid key SEKRET%2bKEY%2f789%3d",
            r#"{"detail": "key \"SEKRET+KEY\/789=\""}"#,
            "b64 U0VLUkVUK0tFWS83ODk9",
        ] {
            let out = redact(quoted, [key]);
            assert!(out.contains("[redacted]"), "{quoted} -> {out}");
            assert!(
                !out.contains("SEKRET") && !out.contains("U0VLUkVU"),
                "{out}"
            );
        }
        // A one-character credential: only where it stands alone.
        assert_eq!(
            redact("timed out, code u", ["u"]),
            "timed out, code [redacted]"
        );
        assert_eq!(redact("nothing here", [""]), "nothing here");
    }

    #[test]
    fn redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn parses_refs_and_rejects_literals() {
        assert_eq!(
            "env:A_B".parse::<SecretRef>(),
            Ok(SecretRef::Env("A_B".into()))
        );
        assert!(matches!(
            "file:/x".parse::<SecretRef>(),
            Ok(SecretRef::File(_))
        ));
        let err = "hunter2".parse::<SecretRef>().unwrap_err();
        assert!(err.contains("literal secret"));
        assert!(!err.contains("hunter2"));
        assert!("env:1X".parse::<SecretRef>().is_err());
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = SecretRef::File(path).resolve(&Env::empty()).unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }
}
