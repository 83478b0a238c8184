//! Listing and removing what is below a [`Store`].

use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;

use super::disk::sync_dir;
use super::store::Backend;
use super::{StorageError, Store};

impl Store {
    /// Checks that `name` is there as it was written: `bytes` long and, on disk, with this
    /// `sha256` (an object in object storage appeared whole or not at all, so its size
    /// tells). `None` when it is; else what is wrong, in words.
    pub async fn verify(
        &self,
        name: &str,
        bytes: u64,
        sha256: &str,
    ) -> Result<Option<String>, StorageError> {
        let size = match &self.backend {
            Backend::Local(dir) => match std::fs::metadata(dir.join(name)) {
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(StorageError::local(&dir.join(name), e)),
            },
            Backend::Remote(r) => {
                match r
                    .store
                    .head(&super::location::join_key(&r.prefix, name))
                    .await
                {
                    Ok(meta) => Some(meta.size),
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => return Err(self.failed(name, e)),
                }
            }
        };
        let Some(size) = size else {
            return Ok(Some("is missing".into()));
        };
        if size != bytes {
            return Ok(Some(format!("is {size} bytes where {bytes} were written")));
        }
        if let Backend::Local(dir) = &self.backend {
            use sha2::{Digest, Sha256};
            use std::io::Read;
            let path = dir.join(name);
            let mut file = std::fs::File::open(&path).map_err(|e| StorageError::local(&path, e))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0; 1 << 20];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| StorageError::local(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if format!("{:x}", hasher.finalize()) != sha256 {
                return Ok(Some(
                    "has other contents than were written (its sha256 differs)".into(),
                ));
            }
        }
        Ok(None)
    }

    /// The names of the files directly below (not in subdirectories); none when the place
    /// does not exist.
    pub async fn names(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.entries().await?.0)
    }

    /// The names of the directories (prefixes) directly below.
    pub async fn dirs(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.entries().await?.1)
    }

    async fn entries(&self) -> Result<(Vec<String>, Vec<String>), StorageError> {
        match &self.backend {
            Backend::Local(dir) => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(Default::default());
                    }
                    Err(e) => return Err(StorageError::local(dir, e)),
                };
                let (mut files, mut dirs) = (Vec::new(), Vec::new());
                for entry in entries {
                    let entry = entry.map_err(|e| StorageError::local(dir, e))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    match entry.file_type() {
                        Ok(t) if t.is_dir() => dirs.push(name),
                        _ => files.push(name),
                    }
                }
                Ok((files, dirs))
            }
            Backend::Remote(r) => {
                let listed = r
                    .store
                    .list_with_delimiter(Some(&r.prefix))
                    .await
                    .map_err(|e| self.failed("", e))?;
                let files = listed
                    .objects
                    .into_iter()
                    .filter_map(|m| m.location.filename().map(str::to_string))
                    .collect();
                let dirs = listed
                    .common_prefixes
                    .into_iter()
                    .filter_map(|p| p.filename().map(str::to_string))
                    .collect();
                Ok((files, dirs))
            }
        }
    }

    /// Removes everything below, and the place itself.
    pub async fn remove_all(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(dir) => match std::fs::remove_dir_all(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StorageError::local(dir, e)),
            },
            Backend::Remote(r) => {
                let metas: Vec<_> = r
                    .store
                    .list(Some(&r.prefix))
                    .try_collect()
                    .await
                    .map_err(|e| self.failed("", e))?;
                for meta in metas {
                    match r.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.failed(meta.location.as_ref(), e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Removes an empty directory left behind (nothing to do in object storage, where
    /// prefixes exist only through their objects).
    pub async fn remove_if_empty(&self) {
        if let Backend::Local(dir) = &self.backend {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Removes the hidden temporary files (`.<name>.<random>.tmp`) of a writer killed
    /// mid-write, for the names `ours` accepts; returns what it removed. Object storage has
    /// none: an object appears whole or not at all.
    pub async fn remove_temporaries(
        &self,
        ours: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StorageError> {
        let Backend::Local(dir) = &self.backend else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for name in self.names().await? {
            let temporary = name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(|rest| rest.rsplit_once('.'))
                .filter(|(of, _random)| ours(of));
            if temporary.is_some() {
                let path = dir.join(&name);
                std::fs::remove_file(&path).map_err(|e| StorageError::local(&path, e))?;
                removed.push(name);
            }
        }
        if !removed.is_empty() {
            sync_dir(dir)?;
        }
        Ok(removed)
    }
}
