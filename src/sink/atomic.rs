//! Files that appear under their final name only when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use tempfile::TempPath;

use super::SinkError;

/// A file written under a hidden temporary name beside its final path. Dropping it without
/// [`commit`](Self::commit) removes the temporary file.
pub struct AtomicFile {
    temp: TempPath,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the directory if needed and a temporary file in it.
    pub fn create(path: &Path) -> Result<(AtomicFile, File), SinkError> {
        let dir = parent(path);
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| SinkError::io(dir, e))?;
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
    pub fn commit(self, file: File) -> Result<u64, SinkError> {
        file.sync_all().map_err(|e| SinkError::io(&self.path, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| SinkError::io(&self.path, e))?
            .len();
        drop(file);
        self.temp
            .persist(&self.path)
            .map_err(|e| SinkError::io(&self.path, e.error))?;
        sync_dir(parent(&self.path))?;
        Ok(bytes)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A writer that counts and hashes what goes through it, so a part's size and sha256 are
/// known when it closes without reading it back.
pub struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    /// `bytes`, readable while a format writer owns this one.
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HashingWriter {
    pub fn new(file: File) -> Self {
        HashingWriter {
            inner: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
            counter: Default::default(),
        }
    }

    /// A live count of the bytes written so far.
    pub fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.counter.clone()
    }

    /// The file (flushed), the sha256 in hex, and the size.
    pub fn finish(self) -> std::io::Result<(File, String, u64)> {
        let file = self.inner.into_inner().map_err(|e| e.into_error())?;
        Ok((file, format!("{:x}", self.hasher.finalize()), self.bytes))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.counter
            .store(self.bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SinkError::io(dir, e))
}
