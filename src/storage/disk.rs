//! What only a local disk needs: files that appear under their name only when complete,
//! durable renames, and the job's lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::StorageError;

/// Held while a run of the job is going; released when dropped, also when the process is
/// killed, so a crash never leaves a stale lock.
pub struct Lock {
    pub(super) _file: Option<File>,
}

/// A file written under a hidden temporary name beside its final path
/// (`.<name>.<random>.tmp`). Dropping it without [`commit`](Self::commit) removes the
/// temporary file.
pub struct AtomicFile {
    temp: tempfile::TempPath,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the directory if needed and a temporary file in it.
    pub fn create(path: &Path) -> Result<(AtomicFile, File), StorageError> {
        let dir = parent(path);
        std::fs::create_dir_all(dir).map_err(|e| StorageError::local(dir, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| StorageError::local(dir, e))?;
        let (file, temp) = file.into_parts();
        Ok((
            AtomicFile {
                temp,
                path: path.to_path_buf(),
            },
            file,
        ))
    }

    /// fsyncs `file`, renames it to the final name and fsyncs the directory, so that after a
    /// crash the file is either absent or complete. Returns its size.
    pub fn commit(self, file: File) -> Result<u64, StorageError> {
        let local = |e| StorageError::local(&self.path, e);
        file.sync_all().map_err(local)?;
        let bytes = file.metadata().map_err(local)?.len();
        drop(file);
        self.temp
            .persist(&self.path)
            .map_err(|e| StorageError::local(&self.path, e.error))?;
        sync_dir(parent(&self.path))?;
        Ok(bytes)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub(super) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or removal in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::local(dir, e))
}
