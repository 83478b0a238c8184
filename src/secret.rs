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
