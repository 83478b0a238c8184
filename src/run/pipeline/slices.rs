//! The slices' stage of a sliced run: the slices not yet done, a few at a time, each a list
//! of pages fetched as the job's would be, from where its checkpoint left it. Their pages go
//! on as they come (each slice's in order), and an empty page marked as the run's last ends
//! the run once every slice has.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::FetchedPage;
use super::fetch::List;
use crate::Error;
use crate::run::Job;
use crate::slice::{SliceProgress, Slicing};

impl Job {
    /// Fetches the slices `progress` has not finished, up to `slices.concurrency` at once.
    /// A slice that fails stops the run (the others' pages already handed on are
    /// committed). Returns the number of pages.
    pub(in crate::run) async fn slices_stage(
        &self,
        progress: &SliceProgress,
        pages: mpsc::Sender<FetchedPage>,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<u64, Error> {
        let slicing = self.slicing.as_ref().expect("a sliced job has its slicing");
        let plan = &progress.plan;
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.counters.slices.store(plan.len(), Relaxed);
            self.counters
                .slices_done
                .store(progress.slices_done, Relaxed);
        }
        let mut remaining = progress.remaining();
        let mut active = FuturesUnordered::new();
        let mut count = 0;
        loop {
            // Once the decoder or the writer has stopped, its error is the run's: no more
            // slices are started.
            while active.len() < slicing.concurrency && !pages.is_closed() {
                let Some((index, position)) = remaining.next() else {
                    break;
                };
                let target = slicing
                    .target(plan, index)
                    .map_err(|message| self.slices_error(message))?;
                let list = List {
                    target: Some(Arc::new(target)),
                    slice: Some(index),
                    start: position.unwrap_or_else(|| self.paginator.first().position),
                    end: None,
                    stated: progress.stated_of(index),
                };
                tracing::debug!(job = %self.name, slice = %Slicing::describe(plan, index), "slice");
                active.push(self.fetch_stage(list, pages.clone(), stop.clone()));
            }
            match active.next().await {
                None => break,
                Some(Ok(n)) => {
                    count += n;
                    self.counters
                        .slices_done
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                // The slices in flight are dropped with their requests.
                Some(Err(e)) => return Err(e),
            }
        }
        let end = FetchedPage {
            position: self.paginator.first().position,
            next: None,
            count: 0,
            body: Bytes::from_static(b"[]"),
            records: 0..2,
            stated: None,
            decoded: None,
            slice: None,
            end_of_run: true,
        };
        let _ = pages.send(end).await;
        Ok(count)
    }
}
