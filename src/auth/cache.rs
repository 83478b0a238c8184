//! Tokens kept between runs, as the Seal Metrics and Netography guides do: one small JSON file
//! per provider and set of credentials, readable by its owner only. It holds the token, never
//! the credentials.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AuthError;
use super::token::{Token, TokenConfig};
use crate::env::Env;
use crate::secret::Secret;
use crate::vocab::ConfigError;

pub(crate) struct TokenCache {
    provider: String,
    path: PathBuf,
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    fingerprint: String,
    token: String,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

impl TokenCache {
    pub fn new(
        provider: &str,
        config: &TokenConfig,
        env: &Env,
        fingerprint: &str,
    ) -> Result<Self, ConfigError> {
        let dir = match &config.cache_dir {
            Some(d) => PathBuf::from(d),
            None => default_dir(env).ok_or_else(|| {
                ConfigError::field(
                    "auth.token.cache_dir",
                    "neither XDG_CACHE_HOME nor HOME is set: expected a directory",
                )
            })?,
        };
        Ok(TokenCache {
            provider: provider.to_string(),
            path: dir.join(format!("{provider}-{}.json", &fingerprint[..16])),
            fingerprint: fingerprint.to_string(),
        })
    }

    fn error(&self, message: impl Into<String>) -> AuthError {
        AuthError::Cache {
            provider: self.provider.clone(),
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    /// The cached token, if there is one for these credentials. A file that others could read
    /// is refused: it would mean the token has been exposed.
    pub fn load(&self) -> Result<Option<Token>, AuthError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %self.path.display(), "no cached token");
                return Ok(None);
            }
            Err(e) => return Err(self.error(e.to_string())),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(self.error(format!(
                "mode {mode:o} lets other users read the token: refusing it. \
                 Delete the file (a new one is created with mode 600) or `chmod 600` it"
            )));
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.error(e.to_string()))?;
        let Ok(entry) = serde_json::from_str::<Entry>(&text) else {
            return Ok(None); // unreadable: log in again and overwrite it
        };
        if entry.fingerprint != self.fingerprint {
            return Ok(None);
        }
        Ok(Some(Token {
            value: Secret::new(entry.token),
            issued_at: entry.issued_at,
            expires_at: entry.expires_at,
            headers: entry.headers,
        }))
    }

    /// Writes the token to a new owner-only file and renames it over the old one.
    pub fn store(&self, token: &Token) -> Result<(), AuthError> {
        let dir = self.path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(|e| self.error(e.to_string()))?;
        let entry = Entry {
            fingerprint: self.fingerprint.clone(),
            token: token.value.expose().to_string(),
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            headers: token.headers.clone(),
        };
        // tempfile creates files with mode 600.
        let mut file =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| self.error(e.to_string()))?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| self.error(e.to_string()))?;
        file.write_all(
            serde_json::to_string(&entry)
                .expect("serializes")
                .as_bytes(),
        )
        .map_err(|e| self.error(e.to_string()))?;
        file.persist(&self.path)
            .map_err(|e| self.error(e.error.to_string()))?;
        Ok(())
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn default_dir(env: &Env) -> Option<PathBuf> {
    let base = match env.get("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(env.get("HOME")?).join(".cache"),
    };
    Some(base.join("apisnap").join("tokens"))
}
