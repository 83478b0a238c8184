//! The fetch stage: requests in flight, answers taken in page order, the paginator told
//! what each held.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::FetchedPage;
use crate::Error;
use crate::fetch::Target;
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
}

impl List {
    /// The job's own list, from `start`.
    pub(in crate::run) fn whole(start: Position, end: Option<u64>) -> List {
        List {
            target: None,
            slice: None,
            start,
            end,
        }
    }
}

impl Job {
    /// Requests the pages of `list` until the paginator says stop, keeping up to
    /// `concurrency` requests in flight where the next request is known in advance, and
    /// hands them on in page order. Returns the number of pages.
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
        } = list;
        let interrupted = || Error::Interrupted {
            job: self.name.clone(),
        };
        let mut paginator = self.paginator.clone();
        paginator.set_end(end);
        let mut in_flight: VecDeque<(PageRequest, AbortOnDrop)> = VecDeque::new();
        let mut expected = Some(paginator.resume(&start).map_err(|e| Error::Paginate {
            job: self.name.clone(),
            position: start.to_string(),
            message: e.0,
        })?);
        let mut previous: Option<(Position, Bytes, std::ops::Range<usize>)> = None;
        let mut count = 0;
        let spawn = |request: &PageRequest| {
            let fetcher = self.fetcher.clone();
            let request = request.clone();
            let target = target.clone();
            AbortOnDrop(tokio::spawn(async move {
                match &target {
                    Some(target) => fetcher.fetch_at(target, &request).await,
                    None => fetcher.fetch(&request).await,
                }
            }))
        };
        loop {
            if in_flight.is_empty() {
                match expected.take() {
                    Some(r) => {
                        let handle = spawn(&r);
                        in_flight.push_back((r, handle));
                    }
                    None => break,
                }
            }
            while in_flight.len() < self.concurrency {
                let last = &in_flight.back().expect("not empty").0;
                match paginator.speculate(last) {
                    Some(r) => {
                        let handle = spawn(&r);
                        in_flight.push_back((r, handle));
                    }
                    None => break,
                }
            }
            let (current, mut handle) = in_flight.pop_front().expect("not empty");
            let joined = match stop.as_mut() {
                Some(stop) if *stop.borrow() => return Err(interrupted()),
                Some(stop) => tokio::select! {
                    joined = &mut handle.0 => joined,
                    // Pages already handed on are finished and committed by the writer;
                    // requests in flight are dropped.
                    _ = stop.wait_for(|s| *s) => return Err(interrupted()),
                },
                None => (&mut handle.0).await,
            };
            let page = joined.map_err(|e| Error::Internal {
                job: self.name.clone(),
                message: format!("a request task stopped: {e}"),
            })??;
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
            let records = &page.body[page.records.clone()];
            if let Some((at, body, range)) = &previous
                && page.outcome.records > 0
                && body[range.clone()] == *records
            {
                return Err(paginate_error(format!(
                    "the server returned the same records as at {at}: it seems to ignore the \
                     pagination parameters; stopping instead of looping"
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
                // A slice's last page is not the run's: the slices' stage says when that is.
                end_of_run: slice.is_none() && matches!(next, Next::Done),
            };
            if pages.send(fetched).await.is_err() {
                // The decoder stopped; its error is the one to report.
                break;
            }
            match next {
                Next::Done => break,
                // The speculation in flight is the right next request: keep it.
                Next::Continue(n) if in_flight.front().is_some_and(|(r, _)| *r == n) => {}
                Next::Continue(n) => {
                    // A short page (or the end) proved the speculation wrong: drop it.
                    in_flight.clear();
                    expected = Some(n);
                }
            }
        }
        Ok(count)
    }
}

/// A spawned request that is cancelled when dropped: speculative requests past the end, or
/// past a short page, are abandoned without output.
struct AbortOnDrop(tokio::task::JoinHandle<Result<crate::fetch::Page, crate::fetch::FetchError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
