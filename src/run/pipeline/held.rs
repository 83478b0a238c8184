//! The reorder buffer: pages answered ahead of the one their list waits for (a page
//! waiting out a `Retry-After`), held until it comes so that they go on in page order.
//!
//! Held pages stay in memory up to [`IN_MEMORY`]; beyond it their bodies go to an unlinked
//! temporary file, up to [`ON_DISK`], so one long wait costs disk, not memory. Nothing
//! held is committed: a killed run fetches those pages again. The file is written through
//! `tokio::fs`, off the runtime's workers.

use std::io::SeekFrom;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::fetch::Page;
use crate::run::job::Counters;

/// Bodies held in memory, at most.
const IN_MEMORY: usize = 16 << 20;
/// Bodies held in the temporary file, at most; past it no more requests go out until the
/// waiting page has come.
const ON_DISK: u64 = 2 << 30;
/// Pages held, at most (however small).
const PAGES: usize = 100_000;

/// A page held, in memory or with its body in the file.
pub(super) enum HeldPage {
    Memory(Page),
    Disk { page: Page, at: u64, len: usize },
}

/// The pages one list holds.
pub(super) struct Held<'a> {
    counters: &'a Counters,
    pages: usize,
    memory: usize,
    file: Option<File>,
    /// Where the file's next body goes; back to 0 when it holds none.
    disk_end: u64,
    on_disk: usize,
    /// Held pages with no records: past one of them no request is made, as the list likely
    /// ends there.
    empty: usize,
    /// The temporary file could not be made or written: hold in memory only.
    no_disk: bool,
}

impl<'a> Held<'a> {
    pub(super) fn new(counters: &'a Counters) -> Held<'a> {
        Held {
            counters,
            pages: 0,
            memory: 0,
            file: None,
            disk_end: 0,
            on_disk: 0,
            empty: 0,
            no_disk: false,
        }
    }

    /// Whether another request may go out; `to_disk`: its page may be held on disk (the
    /// one waited for is waiting for the server, and may for a while).
    pub(super) fn has_room(&self, to_disk: bool) -> bool {
        self.pages < PAGES
            && (self.memory < IN_MEMORY || (to_disk && !self.no_disk && self.disk_end < ON_DISK))
    }

    /// Pages held now.
    pub(super) fn pages(&self) -> usize {
        self.pages
    }

    /// An empty page is held: the list may well end there.
    pub(super) fn end_ahead(&self) -> bool {
        self.empty > 0
    }

    /// Holds `page`; `to_disk`: beyond the memory's share it goes to disk (it is behind a
    /// page waiting for the server; otherwise it is one of the requests in flight, few).
    pub(super) async fn hold(
        &mut self,
        mut page: Page,
        to_disk: bool,
    ) -> std::io::Result<HeldPage> {
        self.pages += 1;
        if page.outcome.records == 0 {
            self.empty += 1;
        }
        self.counters
            .held_peak
            .fetch_max(self.pages as u64, Relaxed);
        let len = page.body.len();
        if !to_disk || self.memory + len <= IN_MEMORY || self.no_disk {
            self.memory += len;
            return Ok(HeldPage::Memory(page));
        }
        match self.spill(&page.body).await {
            Ok(at) => {
                page.body = Bytes::new();
                self.on_disk += 1;
                self.counters.spilled.fetch_add(len as u64, Relaxed);
                Ok(HeldPage::Disk { page, at, len })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot hold pages in a temporary file: holding them in memory, fewer at once");
                self.no_disk = true;
                self.memory += len;
                Ok(HeldPage::Memory(page))
            }
        }
    }

    async fn spill(&mut self, body: &[u8]) -> std::io::Result<u64> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let made = tokio::task::spawn_blocking(tempfile::tempfile)
                    .await
                    .map_err(std::io::Error::other)??;
                self.file.insert(File::from_std(made))
            }
        };
        let at = self.disk_end;
        file.seek(SeekFrom::Start(at)).await?;
        file.write_all(body).await?;
        file.flush().await?;
        self.disk_end += body.len() as u64;
        Ok(at)
    }

    /// The page, its body read back if it was on disk.
    pub(super) async fn take(&mut self, held: HeldPage) -> std::io::Result<Page> {
        self.pages -= 1;
        let page = match held {
            HeldPage::Memory(page) => {
                self.memory -= page.body.len();
                page
            }
            HeldPage::Disk { mut page, at, len } => {
                let file = self.file.as_mut().expect("a page on disk has its file");
                let mut body = vec![0; len];
                file.seek(SeekFrom::Start(at)).await?;
                file.read_exact(&mut body).await?;
                page.body = Bytes::from(body);
                self.on_disk -= 1;
                if self.on_disk == 0 {
                    self.disk_end = 0;
                }
                page
            }
        };
        if page.outcome.records == 0 {
            self.empty -= 1;
        }
        Ok(page)
    }

    /// Forgets every page held (a speculation proved wrong).
    pub(super) fn clear(&mut self) {
        self.pages = 0;
        self.memory = 0;
        self.on_disk = 0;
        self.disk_end = 0;
        self.empty = 0;
    }
}
