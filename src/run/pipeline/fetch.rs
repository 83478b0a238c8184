//! The fetch stage: requests in flight, answers taken in page order, the paginator told
//! what each held.
//!
//! Where the next request is known in advance (`offset`, `page`, `range_header`), requests
//! go out as fast as the gate gives permits. A page answered 429 or 5xx waits out its own
//! `Retry-After` or backoff without a permit, and the pages answered behind it are held
//! (see [`Held`]) until it comes, so one wait does not stall the others.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::FetchedPage;
use super::held::{Held, HeldPage};
use crate::Error;
use crate::fetch::{FetchError, Gated, Page, Target};
use crate::paginate::{Next, PageRequest, Position};
use crate::run::Job;

/// One list of pages: the job's, or one slice's.
pub(in crate::run) struct List {
    /// Where its requests go; `None`: the job's endpoint.
    pub(in crate::run) target: Option<Arc<Target>>,
    /// The slice it is, if the run is sliced.
    pub(in crate::run) slice: Option<u64>,
    pub(in crate::run) start: Position,
    /// A shard's end.
    pub(in crate::run) end: Option<u64>,
    /// The count the API first stated for these pages, as a resumed run's checkpoint keeps
    /// it: a change across the interruption is a change too.
    pub(in crate::run) stated: Option<u64>,
}

impl List {
    /// The job's own list, from `start`.
    pub(in crate::run) fn whole(start: Position, end: Option<u64>, stated: Option<u64>) -> List {
        List {
            target: None,
            slice: None,
            start,
            end,
            stated,
        }
    }
}

impl Job {
    /// Requests the pages of `list` until the paginator says stop, as many in flight as the
    /// job's gate allows where the next request is known in advance, and hands them on in
    /// page order. Returns the number of pages.
    pub(in crate::run) async fn fetch_stage(
        &self,
        list: List,
        pages: mpsc::Sender<FetchedPage>,
        mut stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<u64, Error> {
        let List {
            target,
            slice,
            start,
            end,
            stated,
        } = list;
        let interrupted = || Error::Interrupted {
            job: self.name.clone(),
        };
        let gate = self.concurrency.gate();
        let mut paginator = self.paginator.clone();
        paginator.set_end(end);
        paginator.seed_stated(stated);
        let mut change_warned = false;
        // The requests made and not yet handed on, in page order; the first is `front`.
        // A request that failed for good is held too: the list may end before it.
        let mut window: VecDeque<Slot> = VecDeque::new();
        let mut failed_ahead = false;
        let mut front: u64 = 0;
        let mut running = FuturesUnordered::new();
        let mut held = Held::new(&self.counters);
        let mut expected = Some(paginator.resume(&start).map_err(|e| Error::Paginate {
            job: self.name.clone(),
            position: start.to_string(),
            message: e.0,
        })?);
        let mut previous: Option<(Position, Bytes, std::ops::Range<usize>)> = None;
        let mut count = 0;
        let spawn = |request: &PageRequest, permit, retrying, seq: u64| {
            let fetcher = self.fetcher.clone();
            let request = request.clone();
            let target = target.clone();
            let gated = Gated { permit, retrying };
            let task = AbortOnDrop(tokio::spawn(async move {
                let target = target.as_deref().unwrap_or(fetcher.target());
                fetcher.fetch_at(target, &request, Some(gated)).await
            }));
            async move {
                let mut task = task;
                (seq, (&mut task.0).await)
            }
        };
        // Room in the decoder's channel for the next page, once waited for.
        let mut reserved: Option<mpsc::Permit<'_, FetchedPage>> = None;
        loop {
            // Every page at the front that has come goes on, in order, while the decoder has
            // room: when it has none, the loop goes on making requests and taking answers
            // (blocked on the decoder, it would leave the requests' pipe empty behind a burst
            // of pages answered together).
            while let Some(Slot {
                arrived: Some(arrived),
                ..
            }) = window.front()
            {
                if arrived.is_err() {
                    // Its failure is the run's: no need to wait for the decoder's room.
                    let Some(Slot {
                        arrived: Some(Err(e)),
                        ..
                    }) = window.pop_front()
                    else {
                        unreachable!("the front failed")
                    };
                    return Err(e.into());
                }
                let room = match reserved.take() {
                    Some(room) => room,
                    None => match pages.try_reserve() {
                        Ok(room) => room,
                        Err(mpsc::error::TrySendError::Full(())) => break,
                        // The decoder stopped; its error is the one to report.
                        Err(mpsc::error::TrySendError::Closed(())) => return Ok(count),
                    },
                };
                let Slot {
                    request: current,
                    arrived,
                    ..
                } = window.pop_front().expect("not empty");
                front += 1;
                let page = held
                    .take(arrived.expect("arrived")?)
                    .await
                    .map_err(|e| self.held_error(e))?;
                let paginate_error = |message: String| Error::Paginate {
                    job: self.name.clone(),
                    position: current.position.to_string(),
                    message,
                };
                let next = match paginator
                    .next(&current, &page.outcome)
                    .map_err(|e| paginate_error(e.0))?
                {
                    Next::Continue(n) => Next::Continue(self.fetcher.scrubbed(n)),
                    Next::Done => Next::Done,
                };
                if let Some((first, now)) = paginator.stated_change()
                    && !change_warned
                {
                    if self.on_count_mismatch != crate::config::OnCountMismatch::Warn {
                        return Err(Error::CountChanged {
                            job: self.name.clone(),
                            first,
                            now,
                            position: current.position.to_string(),
                        });
                    }
                    tracing::warn!(job = %self.name, position = %current.position, first, now, "the count the API stated changed while the run read the pages (on_count_mismatch = warn)");
                    change_warned = true;
                }
                let records = &page.body[page.records.clone()];
                if let Some((at, body, range)) = &previous
                    && page.outcome.records > 0
                    && body[range.clone()] == *records
                {
                    return Err(paginate_error(format!(
                        "the server returned the same records as at {at}: it seems to ignore \
                         the pagination parameters; stopping instead of looping"
                    )));
                }
                tracing::debug!(job = %self.name, position = %current.position, records = page.outcome.records, "page");
                count += 1;
                {
                    use std::sync::atomic::Ordering::Relaxed;
                    self.counters.pages.fetch_add(1, Relaxed);
                    self.counters
                        .records
                        .fetch_add(page.outcome.records, Relaxed);
                    self.counters
                        .bytes
                        .fetch_add(page.body.len() as u64, Relaxed);
                    // A slice's total is its own, not the run's.
                    if let Some(stated) = paginator.stated_records().filter(|_| slice.is_none()) {
                        self.counters.stated.store(stated, Relaxed);
                    }
                }
                previous = Some((
                    current.position.clone(),
                    page.body.clone(),
                    page.records.clone(),
                ));
                let fetched = FetchedPage {
                    position: current.position,
                    next: match &next {
                        Next::Continue(n) => Some(n.position.clone()),
                        Next::Done => None,
                    },
                    count: page.outcome.records,
                    body: page.body,
                    records: page.records,
                    stated: paginator.stated_records(),
                    decoded: None,
                    slice,
                    // A slice's last page is not the run's: the slices' stage says when.
                    end_of_run: slice.is_none() && matches!(next, Next::Done),
                };
                room.send(fetched);
                match next {
                    Next::Done => return Ok(count),
                    // The speculation made is the right next request: keep it.
                    Next::Continue(n) if window.front().is_some_and(|s| s.request == n) => {}
                    Next::Continue(n) => {
                        // A short page (or the end) proved the speculation wrong: drop it.
                        window.clear();
                        running = FuturesUnordered::new();
                        held.clear();
                        failed_ahead = false;
                        expected = Some(n);
                    }
                }
            }
            // The next request to make: the one the last page named, or a speculation — not
            // before the list's first page has come (its total and page size are not known
            // yet: a slice of one page would waste requests), not past an empty page or a
            // failure held (the list may end there). Behind a page that waits for the server
            // (a `Retry-After`, a backoff) pages are held up to the memory's and the disk's
            // share. Otherwise the requests in flight and the pages held together stay within
            // the gate's limit: a page held is a request whose answer the list cannot use
            // yet, and when the decoder is the bottleneck more would only fill memory (with
            // the limit for each alone, 0 ms held twice the limit in bodies).
            let waits = front_waits(&window);
            let within_limit = waits || held.pages() + running.len() < gate.limit();
            let may_speculate = held.has_room(waits)
                // Requests waiting out a backoff hold no permit: without this, a server that
                // answers everything 429 would get a new request for each refusal.
                && running.len() < gate.limit() + crate::concurrency::MAX
                && !held.end_ahead()
                && !failed_ahead
                && count > 0;
            let front_came = window.front().is_some_and(|s| s.arrived.is_some());
            let next = match window.back() {
                None => expected.clone(),
                Some(_) if !may_speculate => None,
                Some(last) if within_limit => paginator.speculate(&last.request),
                Some(last) => {
                    if !front_came && paginator.speculate(&last.request).is_some() {
                        // The limit is what stops the list, and not the decoder (whose page
                        // would be at the front): pages held behind one still in flight count
                        // as requests in flight, so the controller may raise the limit (at
                        // 20 ms, 0.80 s against 1.00 s for a million records without this).
                        gate.saturated();
                    }
                    None
                }
            };
            if next.is_none() && running.is_empty() && !front_came {
                // Nothing in flight, nothing to ask, nothing to hand on.
                debug_assert!(window.is_empty());
                return Ok(count);
            }
            let stopped = async {
                match stop.as_mut() {
                    // Pages already handed on are finished and committed by the writer;
                    // requests in flight are dropped.
                    Some(stop) => {
                        let _ = stop.wait_for(|s| *s).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stopped => return Err(interrupted()),
                room = pages.reserve(), if front_came => match room {
                    Ok(room) => reserved = Some(room),
                    Err(_) => return Ok(count),
                },
                Some((seq, joined)) = running.next(), if !running.is_empty() => {
                    let joined: Result<Result<Page, FetchError>, tokio::task::JoinError> = joined;
                    let fetched = joined.map_err(|e| Error::Internal {
                        job: self.name.clone(),
                        message: format!("a request task stopped: {e}"),
                    })?;
                    // Behind a page waiting for the server, the memory's share of held pages
                    // may overflow to disk.
                    let to_disk = seq != front && front_waits(&window);
                    let slot = &mut window[(seq - front) as usize].arrived;
                    *slot = Some(match fetched {
                        Ok(page) => Ok(held.hold(page, to_disk).await.map_err(|e| self.held_error(e))?),
                        Err(e) => {
                            failed_ahead = true;
                            Err(e)
                        }
                    });
                }
                permit = gate.acquire(), if next.is_some() => {
                    let request = next.expect("a request to make");
                    let seq = front + window.len() as u64;
                    let retrying = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    running.push(spawn(&request, permit, retrying.clone(), seq));
                    window.push_back(Slot { request, arrived: None, retrying });
                    expected = None;
                }
            }
        }
    }

    fn held_error(&self, e: std::io::Error) -> Error {
        Error::Internal {
            job: self.name.clone(),
            message: format!("pages held in a temporary file could not be read back: {e}"),
        }
    }
}

/// Whether the page the window waits for is waiting for the server (it was answered 429,
/// 5xx, or not at all, and waits to be asked again).
fn front_waits(window: &VecDeque<Slot>) -> bool {
    window.front().is_some_and(|s| {
        s.arrived.is_none() && s.retrying.load(std::sync::atomic::Ordering::Relaxed)
    })
}

/// A request made and not yet handed on.
struct Slot {
    request: PageRequest,
    /// Its page, or its failure (the list may end before it), once it has come.
    arrived: Option<Result<HeldPage, FetchError>>,
    /// Raised when it has to wait for another attempt.
    retrying: Arc<std::sync::atomic::AtomicBool>,
}

/// A spawned request that is cancelled when dropped: speculative requests past the end, or
/// past a short page, are abandoned without output.
struct AbortOnDrop(tokio::task::JoinHandle<Result<Page, FetchError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
