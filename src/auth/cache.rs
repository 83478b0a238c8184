//! Tokens kept between runs, as the Seal Metrics and Netography guides do: one small JSON file
//! per provider and set of credentials, readable by its owner only. It holds the token, never
//! the credentials.
//!
//! The directory is created owner-only (0700). A file's name and the fingerprint inside it
//! are HMACs of the credentials under a random key kept in the directory (`.key`, 0600), so a
//! listing or a copy of the files cannot confirm a guessed password offline. Files are opened
//! without following symbolic links, and the owner and mode are checked on the file opened,
//! not on a path that could be swapped in between; writes are fsynced before they replace
//! the old file.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AuthError;
use super::token::{Token, TokenConfig};
use crate::env::Env;
use crate::secret::Secret;
use crate::vocab::ConfigError;

pub(crate) struct TokenCache {
    provider: String,
    dir: PathBuf,
    /// What identifies the credentials, unkeyed: never written anywhere.
    secret_fingerprint: String,
    /// The file and the keyed fingerprint, once the key has been read.
    keyed: std::sync::OnceLock<(PathBuf, String)>,
}

/// The local key's file, in the cache directory.
const KEY_FILE: &str = ".key";

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
            dir,
            secret_fingerprint: fingerprint.to_string(),
            keyed: std::sync::OnceLock::new(),
        })
    }

    fn error(&self, path: &Path, message: impl Into<String>) -> AuthError {
        AuthError::Cache {
            provider: self.provider.clone(),
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    /// The token file and the fingerprint it holds: HMACs under the directory's key (made
    /// on first use). Creates the directory, owner-only.
    fn keyed(&self) -> Result<&(PathBuf, String), AuthError> {
        if let Some(k) = self.keyed.get() {
            return Ok(k);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.error(&self.dir, e.to_string()))?;
        let key = self.key()?;
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(self.secret_fingerprint.as_bytes());
        let keyed = format!("{:x}", mac.finalize().into_bytes());
        let path = self
            .dir
            .join(format!("{}-{}.json", self.provider, &keyed[..16]));
        Ok(self.keyed.get_or_init(|| (path, keyed)))
    }

    /// The directory's random key, created (0600, exclusively) if there is none yet.
    fn key(&self) -> Result<Vec<u8>, AuthError> {
        let path = self.dir.join(KEY_FILE);
        let fail = |e: std::io::Error| self.error(&path, e.to_string());
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| self.error(&path, e.to_string()))?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(&fresh).map_err(fail)?;
                file.sync_all().map_err(fail)?;
                sync_dir(&self.dir).map_err(fail)?;
                return Ok(fresh.to_vec());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
        let mut file = self.open_owned(&path)?;
        let mut key = Vec::new();
        file.read_to_end(&mut key).map_err(fail)?;
        if key.len() < 16 {
            return Err(self.error(
                &path,
                "the cache's key is damaged: delete the cache directory to start afresh",
            ));
        }
        Ok(key)
    }

    /// Opens `path` for reading, refusing a symbolic link, and checks on the file opened
    /// that it is this user's and that no one else may read it.
    fn open_owned(&self, path: &Path) -> Result<std::fs::File, AuthError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => self.error(
                    path,
                    "is a symbolic link: refusing it (a token file is never a link). Delete it",
                ),
                _ => self.error(path, e.to_string()),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| self.error(path, e.to_string()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(self.error(
                path,
                format!(
                    "belongs to user {} rather than this one ({me}): refusing it. Delete it",
                    meta.uid()
                ),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(self.error(
                path,
                format!(
                    "mode {mode:o} lets other users read the token: refusing it. \
                     Delete the file (a new one is created with mode 600) or `chmod 600` it"
                ),
            ));
        }
        Ok(file)
    }

    /// The cached token, if there is one for these credentials. A file that others could read
    /// (or another user's, or a link) is refused: the token may have been exposed.
    pub fn load(&self) -> Result<Option<Token>, AuthError> {
        let (path, keyed) = self.keyed()?;
        if let Err(e) = std::fs::symlink_metadata(path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            tracing::debug!(path = %path.display(), "no cached token");
            return Ok(None);
        }
        let mut file = self.open_owned(path)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| self.error(path, e.to_string()))?;
        let Ok(entry) = serde_json::from_str::<Entry>(&text) else {
            return Ok(None); // unreadable: log in again and overwrite it
        };
        if entry.fingerprint != *keyed {
            return Ok(None);
        }
        Ok(Some(Token {
            value: Secret::new(entry.token),
            issued_at: entry.issued_at,
            expires_at: entry.expires_at,
            headers: entry.headers,
        }))
    }

    /// Writes the token to a new owner-only file, fsynced, and renames it over the old one.
    pub fn store(&self, token: &Token) -> Result<(), AuthError> {
        let (path, keyed) = self.keyed()?;
        let fail = |e: std::io::Error| self.error(path, e.to_string());
        let entry = Entry {
            fingerprint: keyed.clone(),
            token: token.value.expose().to_string(),
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            headers: token.headers.clone(),
        };
        // tempfile creates files with mode 600.
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(fail)?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
        file.write_all(
            serde_json::to_string(&entry)
                .expect("serializes")
                .as_bytes(),
        )
        .map_err(fail)?;
        file.as_file().sync_all().map_err(fail)?;
        file.persist(path).map_err(|e| fail(e.error))?;
        sync_dir(&self.dir).map_err(fail)?;
        Ok(())
    }

    pub fn remove(&self) {
        if let Some((path, _)) = self.keyed.get() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn default_dir(env: &Env) -> Option<PathBuf> {
    let base = match env.get("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(env.get("HOME")?).join(".cache"),
    };
    Some(base.join("apisnap").join("tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> TokenCache {
        let config = TokenConfig {
            cache_dir: Some(dir.display().to_string()),
            ..TokenConfig::default()
        };
        TokenCache::new("p", &config, &Env::empty(), "the-credentials-fingerprint").unwrap()
    }

    #[test]
    fn names_are_keyed_per_directory_and_never_the_bare_fingerprint() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ca, cb) = (cache(a.path()), cache(b.path()));
        let (pa, fa) = ca.keyed().unwrap().clone();
        let (pb, fb) = cb.keyed().unwrap().clone();
        // Other keys, other names: a listing cannot be matched against guessed passwords.
        assert_ne!(pa.file_name(), pb.file_name());
        assert_ne!(fa, fb);
        assert!(!fa.contains("the-credentials-fingerprint"));
        // The same directory keeps its key: the name is found again.
        assert_eq!(cache(a.path()).keyed().unwrap().0, pa);
        let token = Token {
            value: Secret::new(String::from("t0ken")),
            issued_at: Utc::now(),
            expires_at: None,
            headers: Vec::new(),
        };
        ca.store(&token).unwrap();
        let loaded = cache(a.path()).load().unwrap().unwrap();
        assert_eq!(loaded.value.expose(), "t0ken");
    }
}
