//! The streaming pipeline of one run.
//!
//! ```text
//!  fetch (async, tokio) --pages--> decode ahead (parallel) --pages--> decode (thread)
//!      --batches--> write (thread)
//! ```
//!
//! Decoding a page is the largest single cost, so pages are decoded ahead on all cores, with
//! the columns the decode stage last settled on; the decode stage itself, in page order,
//! only takes those batches (or, for a page that needs a decision, such as the first page
//! or one with a new field or a bad value, decodes it itself).
//!
//! Both channels are bounded, so a slow writer slows the fetcher instead of filling memory:
//! memory depends on the page size and the channel depths, never on the number of records.
//!
//! The writer closes a part file at a page boundary once it is full; the part is published
//! under its final name, and only then does the checkpoint move past it.

mod decode;
mod fetch;
mod held;
mod slices;
mod write;

pub(super) use fetch::List;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::Error;
use crate::checkpoint::{Checkpoint, JobState, StateStore};
use crate::paginate::Position;
use crate::run::Job;
use crate::storage::Store;

/// Pages buffered between the fetcher and the decoder.
pub(super) const PAGE_CHANNEL: usize = 2;
/// Batches buffered between the decoder and the writer.
const BATCH_CHANNEL: usize = 2;

/// A fetched page on its way to the decoder.
pub(super) struct FetchedPage {
    pub(super) position: Position,
    /// The request after this page; `None` when it is the last.
    next: Option<Position>,
    pub(super) body: Bytes,
    records: std::ops::Range<usize>,
    /// The records the API has stated the pages hold, as of this page.
    stated: Option<u64>,
    /// The page decoded ahead, with the columns it was decoded with.
    decoded: Option<(SchemaRef, Vec<RecordBatch>)>,
    /// Records on the page.
    count: u64,
    /// The slice the page is of, in a sliced run.
    slice: Option<u64>,
    /// The run's last page: after it, every record has been sent.
    end_of_run: bool,
}

enum ToWriter {
    Open(SchemaRef),
    /// Records of one page, of slice `slice` in a sliced run.
    Batch {
        batch: RecordBatch,
        slice: Option<u64>,
    },
    /// Every batch of a page has been sent; `next` is the request after it. `nulled`
    /// counts values of the page written as null (`on_invalid = "null"`); `stated`, the
    /// records the API has stated, goes into the checkpoint with the page.
    PageEnd {
        next: Option<Position>,
        nulled: Vec<(String, u64)>,
        /// Per field the columns lack, the records whose value of it was dropped
        /// (`schema.drift = "ignore"`).
        dropped: Vec<(String, u64)>,
        /// The records the API has stated, as of this page.
        stated: Option<u64>,
        /// The slice the page is of, and its records.
        slice: Option<u64>,
        records: u64,
        /// The run's last page.
        end_of_run: bool,
    },
}

/// What the writer reports when its input ends.
pub(super) struct WriteOutcome {
    pub(super) state: JobState,
    /// The last page arrived and the last part is durable.
    pub(super) complete: bool,
    pub(super) schema: Option<SchemaRef>,
}

/// What a pipeline starts from.
pub(super) struct Inputs<'a> {
    pub(super) state_store: &'a StateStore,
    pub(super) snapshot: &'a Store,
    pub(super) state: JobState,
    pub(super) checkpoint: &'a Checkpoint,
    pub(super) position: Position,
    pub(super) stop: Option<tokio::sync::watch::Receiver<bool>>,
}

pub(super) async fn join<T>(
    job: &str,
    handle: tokio::task::JoinHandle<Result<T, Error>>,
) -> Result<T, Error> {
    handle.await.map_err(|e| Error::Internal {
        job: job.to_string(),
        message: format!("a pipeline stage stopped unexpectedly: {e}"),
    })?
}

impl Job {
    /// Fetches from the checkpoint's position on, decodes, and writes parts, checkpointing
    /// after each. Returns what the writer ended with and the number of pages.
    pub(super) async fn pipeline(&self, inputs: Inputs<'_>) -> Result<(WriteOutcome, u64), Error> {
        let Inputs {
            state_store,
            snapshot,
            state,
            checkpoint,
            position,
            stop,
        } = inputs;
        let (page_tx, page_rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let plan = checkpoint.slices.as_ref().map(|p| Arc::new(p.plan.clone()));
        let hive = self.output.layout == crate::sink::Layout::Hive;
        // In a hive layout the partitions' values are in the directories' names instead.
        let partition_columns = match (&self.slicing, &plan) {
            (Some(slicing), Some(plan)) if !hive => slicing.columns(plan),
            _ => Vec::new(),
        };
        let partition_names: Vec<String> =
            partition_columns.iter().map(|f| f.name().clone()).collect();
        let (ahead_tx, ahead_rx) = mpsc::channel::<FetchedPage>(PAGE_CHANNEL);
        let (batch_tx, batch_rx) = mpsc::channel::<ToWriter>(BATCH_CHANNEL);
        // A resumed run keeps its frozen columns; otherwise the declared ones, if any.
        // (without the partitions' columns, which are the stage's to add).
        let schema = checkpoint
            .schema
            .clone()
            .map(|s| Arc::new(without(&s, &partition_columns)))
            .or_else(|| self.declared.clone());
        let settled = decode::Settled::default();
        let strict = self.drift != crate::config::Drift::Ignore;
        tokio::spawn(decode::decode_ahead(
            self.page_size,
            strict,
            settled.clone(),
            page_rx,
            ahead_tx,
        ));
        let decoder = {
            let job = self.name.clone();
            let page_size = self.page_size;
            let policy = (self.drift, self.on_invalid);
            let partitions = decode::Partitions {
                plan: plan.clone(),
                columns: partition_columns,
            };
            tokio::task::spawn_blocking(move || {
                decode::decode_stage(
                    &job, page_size, policy, schema, partitions, settled, ahead_rx, batch_tx,
                )
            })
        };
        let writer = {
            let job = self.name.clone();
            let output = self.output.clone();
            let state_store = state_store.clone();
            let snapshot = snapshot.clone();
            let cursor = self.incremental.as_ref().map(|i| i.cursor_field.clone());
            let (key, on_duplicate) = (self.key.clone(), self.on_duplicate);
            // A cursor value past now (and the server's clock's margin) is not progress.
            let not_after = self.incremental.as_ref().map(|i| {
                chrono::Utc::now() + chrono::Duration::seconds(i.future_tolerance_secs as i64)
            });
            tokio::task::spawn_blocking(move || {
                let inputs = write::WriteInputs {
                    job: &job,
                    output: &output,
                    state_store: &state_store,
                    snapshot: &snapshot,
                    cursor_field: cursor.as_deref(),
                    not_after,
                    key: &key,
                    on_duplicate,
                    state,
                    partition_columns: partition_names,
                    hive: plan.filter(|_| hive),
                };
                write::write_stage(inputs, batch_rx)
            })
        };
        let end = checkpoint.shard.as_ref().and_then(|s| s.end);
        let fetched = match &checkpoint.slices {
            Some(progress) => self.slices_stage(progress, page_tx, stop).await,
            None => {
                let list = fetch::List::whole(position, end, checkpoint.stated_records);
                self.fetch_stage(list, page_tx, stop).await
            }
        };
        let decoded = join(&self.name, decoder).await;
        let written = join(&self.name, writer).await;
        // The first failure in pipeline order is the cause; later ones are its echoes. The
        // parts committed so far stay, and so does the checkpoint that names them.
        let pages = fetched?;
        decoded?;
        Ok((written?, pages))
    }
}

/// `schema` without the fields named like `columns`.
fn without(
    schema: &arrow_schema::Schema,
    columns: &[arrow_schema::FieldRef],
) -> arrow_schema::Schema {
    arrow_schema::Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !columns.iter().any(|c| c.name() == f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    )
}
