//! A writer that hashes and counts as it writes.

use std::fs::File;
use std::io::{BufWriter, Write};

use sha2::{Digest, Sha256};

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
