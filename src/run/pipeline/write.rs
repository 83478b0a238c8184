//! The write stage: batches appended to part files; at a page boundary a full part is
//! closed, published, and only then named by the checkpoint.

use arrow_schema::SchemaRef;
use tokio::sync::mpsc;

use super::{ToWriter, WriteOutcome};
use crate::Error;
use crate::checkpoint::{Checkpoint, JobState, PartEnd, StateStore};
use crate::paginate::Position;
use crate::sink::OutputConfig;
use crate::sink::snapshot::{ClosedPart, SnapshotWriter};
use crate::storage::Store;

/// Records not yet in a durable part: they join the checkpoint when their part closes.
#[derive(Default)]
struct Pending {
    records: u64,
    /// The highest cursor-field value among them (incremental jobs).
    mark: Option<serde_json::Value>,
    /// Cursor-field values among them past the run's start and its tolerance, left out of
    /// the mark.
    future: u64,
    /// Records among them whose key came before in the run.
    duplicates: u64,
    /// Values written as null among them, per column.
    nulled: std::collections::BTreeMap<String, u64>,
    /// Values of fields the columns lack, dropped among them, per field.
    dropped: std::collections::BTreeMap<String, u64>,
    /// The records the API stated, as of the last page received.
    stated: Option<u64>,
    /// Per slice (a sliced run): its records among them, where it stands after them, and
    /// what the API stated for it.
    slices: std::collections::BTreeMap<u64, SliceStep>,
}

/// What a slice's pages since the last commit did.
#[derive(Default)]
struct SliceStep {
    records: u64,
    next: Option<Position>,
    stated: Option<u64>,
    /// The highest cursor value in its records (incremental jobs).
    mark: Option<serde_json::Value>,
}

/// The writer's bookkeeping: the job's state, its checkpoint, and what is not yet in it.
struct Ledger<'a> {
    job: &'a str,
    state_store: &'a StateStore,
    snapshot: &'a Store,
    /// The writer runs on a blocking thread; storage is async.
    runtime: tokio::runtime::Handle,
    state: JobState,
    checkpoint: Checkpoint,
    /// Per directory of parts (`""` but in a hive layout): what its open part holds.
    pending: std::collections::BTreeMap<String, Pending>,
}

/// Anomalous cursor values warned about one by one in a run; the rest are counted only.
const FUTURE_WARNINGS: u64 = 10;

impl Ledger<'_> {
    /// A count over what the open parts hold.
    fn uncommitted(&self, count: impl Fn(&Pending) -> u64) -> u64 {
        self.pending.values().map(count).sum()
    }

    /// What `dir`'s open part holds so far.
    fn pending(&mut self, dir: &str) -> &mut Pending {
        if !self.pending.contains_key(dir) {
            self.pending.insert(dir.to_string(), Pending::default());
        }
        self.pending.get_mut(dir).expect("inserted above")
    }

    /// Publishes the parts just closed, then moves the checkpoint past them with what the
    /// directories `dirs` held (theirs: the pages in those parts, and empty pages), and
    /// saves it.
    fn commit(
        &mut self,
        closed: Vec<ClosedPart>,
        dirs: &[String],
        position: Option<Position>,
    ) -> Result<(), Error> {
        let mut p = Pending::default();
        for dir in dirs {
            let Some(d) = self.pending.remove(dir) else {
                continue;
            };
            p.records += d.records;
            p.mark = crate::incremental::higher(p.mark.take(), d.mark);
            p.future += d.future;
            p.duplicates += d.duplicates;
            for (field, n) in d.nulled {
                *p.nulled.entry(field).or_insert(0) += n;
            }
            for (field, n) in d.dropped {
                *p.dropped.entry(field).or_insert(0) += n;
            }
            p.stated = d.stated.or(p.stated);
            p.slices.extend(d.slices);
        }
        let checkpoint = &mut self.checkpoint;
        checkpoint
            .parts
            .extend(closed.iter().map(|c| c.info.clone()));
        checkpoint.records += p.records;
        checkpoint.high_water = crate::incremental::higher(checkpoint.high_water.take(), p.mark);
        checkpoint.future_marks += p.future;
        checkpoint.duplicates += p.duplicates;
        for (field, n) in p.nulled {
            *checkpoint.nulled.entry(field).or_insert(0) += n;
        }
        for (field, n) in p.dropped {
            *checkpoint.dropped.entry(field).or_insert(0) += n;
        }
        checkpoint.position = position;
        if let Some(progress) = checkpoint.slices.as_mut() {
            for (slice, step) in p.slices {
                progress.reached(slice, step.mark, crate::incremental::higher);
                progress.advance(slice, step.records, step.next, step.stated);
            }
        } else {
            checkpoint.stated_records = p.stated.or(checkpoint.stated_records);
        }
        for _ in &closed {
            checkpoint.part_ends.push(PartEnd {
                position: checkpoint.position.clone(),
                records: checkpoint.records,
                high_water: checkpoint.high_water.clone(),
                future_marks: checkpoint.future_marks,
                duplicates: checkpoint.duplicates,
                nulled: checkpoint.nulled.clone(),
                dropped: checkpoint.dropped.clone(),
            });
        }
        self.state.in_progress = Some(checkpoint.clone());
        let (job, state_store, snapshot, state) =
            (self.job, self.state_store, self.snapshot, &self.state);
        self.runtime.block_on(async {
            for part in closed {
                publish(job, state_store, snapshot, part).await?;
            }
            state_store
                .save(state)
                .await
                .map_err(|source| state_error(job, source))
        })?;
        tracing::debug!(
            job = self.job,
            records = self.checkpoint.records,
            parts = self.checkpoint.parts.len(),
            "checkpoint"
        );
        Ok(())
    }
}

/// The keys of the records a resumed run's committed parts hold, so that a record fetched
/// again after the interruption is still seen as one that came before.
fn seen_keys(
    key: &[String],
    store: &Store,
    ledger: &Ledger<'_>,
) -> Result<crate::sink::duplicates::KeySet, crate::sink::SinkError> {
    let mut keys = crate::sink::duplicates::KeySet::new(key.to_vec());
    let parts = &ledger.checkpoint.parts;
    if parts.is_empty() {
        return Ok(keys);
    }
    let staging = store.staging()?;
    ledger.runtime.block_on(async {
        for part in parts {
            let path = store.local_copy(&part.file, &staging).await?;
            keys.load_part(&path)?;
            if store.location().local_path().is_none() {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(keys)
    })
}

fn state_error(job: &str, source: crate::checkpoint::StateError) -> Error {
    Error::State {
        job: job.to_string(),
        source,
    }
}

/// Puts a closed part under its name. The run must still own the job's state (in object
/// storage another pod may have taken over), and an upload that a kill would leave open is
/// noted beside the state for the run that resumes.
async fn publish(
    job: &str,
    state_store: &StateStore,
    snapshot: &Store,
    part: ClosedPart,
) -> Result<(), Error> {
    let sink_error = |e: crate::storage::StorageError| Error::Sink {
        job: job.to_string(),
        source: e.into(),
    };
    let state_error = |source| state_error(job, source);
    state_store.check_claim().await.map_err(state_error)?;
    let upload = snapshot
        .upload(&part.info.file, &part.path)
        .await
        .map_err(sink_error)?;
    let noted = upload.pending();
    if let Some(pending) = &noted
        && let Err(e) = state_store.note_upload(pending).await
    {
        // Unnoted, a kill would leave it open with no one to abort it.
        upload.abort().await;
        return Err(state_error(e));
    }
    upload.finish().await.map_err(sink_error)?;
    if noted.is_some() {
        state_store.clear_upload_note().await.map_err(state_error)?;
    }
    Ok(())
}

/// What the write stage needs.
pub(super) struct WriteInputs<'a> {
    pub(super) job: &'a str,
    pub(super) output: &'a OutputConfig,
    pub(super) state_store: &'a StateStore,
    pub(super) snapshot: &'a Store,
    pub(super) cursor_field: Option<&'a str>,
    /// The latest time a cursor value may be (the run's start and the job's tolerance).
    pub(super) not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// The fields that identify a record (empty: none), and what a key seen twice does.
    pub(super) key: &'a [String],
    pub(super) on_duplicate: crate::config::OnDuplicate,
    pub(super) state: JobState,
    /// The partitions' columns, which the records' own come before.
    pub(super) partition_columns: Vec<String>,
    /// In a hive layout, the plan that says each slice's directory.
    pub(super) hive: Option<std::sync::Arc<crate::slice::SlicePlan>>,
}

/// Appends batches to part files; at a page end, closes a full part (or the last one),
/// then moves the checkpoint past it. If the input ends early at a page boundary (an error
/// upstream, a stop request), the parts being written hold whole pages only and are kept
/// too; otherwise they are dropped with their temporary files.
///
/// In a hive layout each directory (partition and window) has a writer and parts of its
/// own; a slice's pages all go to its directory, so a part closing there commits exactly
/// the slices whose pages it holds.
pub(super) fn write_stage(
    inputs: WriteInputs<'_>,
    mut batches: mpsc::Receiver<ToWriter>,
) -> Result<WriteOutcome, Error> {
    let WriteInputs {
        job,
        output,
        state_store,
        snapshot: store,
        cursor_field,
        not_after,
        key,
        on_duplicate,
        state,
        partition_columns,
        hive,
    } = inputs;
    let sink_error = |source| Error::Sink {
        job: job.to_string(),
        source,
    };
    let checkpoint = state.in_progress.clone().expect("a run in progress");
    let dir_of = |slice: Option<u64>| match (&hive, slice) {
        (Some(plan), Some(i)) => crate::slice::Slicing::hive_dir(plan, i),
        _ => String::new(),
    };
    let mut writers: std::collections::BTreeMap<String, SnapshotWriter> = Default::default();
    let mut schema: Option<SchemaRef> = None;
    // The request after the last page received: where a part closed now would resume.
    let mut resume_at = checkpoint.position.clone();
    let mut ledger = Ledger {
        job,
        state_store,
        snapshot: store,
        runtime: tokio::runtime::Handle::current(),
        state,
        checkpoint,
        pending: Default::default(),
    };
    let mut keys = (!key.is_empty())
        .then(|| seen_keys(key, store, &ledger))
        .transpose()
        .map_err(sink_error)?;
    // A directory's writer, made on its first batch with the run's columns.
    let writer_for = |dir: &str,
                      writers: &mut std::collections::BTreeMap<String, SnapshotWriter>,
                      ledger: &Ledger<'_>,
                      schema: &SchemaRef|
     -> Result<(), Error> {
        if writers.contains_key(dir) {
            return Ok(());
        }
        let shard = ledger.checkpoint.shard.as_ref().map(|s| s.index);
        // Where other machines may write too, a part's name carries the run's claim.
        let tag = store
            .shared()
            .then_some(ledger.state.claimed_by.as_deref())
            .flatten();
        let staging = store.staging().map_err(|e| sink_error(e.into()))?;
        let prefix = crate::run::shards::part_prefix_of(shard);
        let prefix = match dir.is_empty() {
            true => prefix,
            false => format!("{dir}/{prefix}"),
        };
        writers.insert(
            dir.to_string(),
            SnapshotWriter::new(
                staging,
                output,
                schema.clone(),
                ledger.checkpoint.parts.len(),
            )
            .named(&prefix)
            .tagged(tag),
        );
        Ok(())
    };
    // Closes every open part, for a commit of every directory.
    let close_all = |writers: &mut std::collections::BTreeMap<String, SnapshotWriter>|
     -> Result<Vec<ClosedPart>, Error> {
        let mut closed = Vec::new();
        for writer in writers.values_mut() {
            if writer.has_open_part()
                && let Some(part) = writer.close_part().map_err(sink_error)?
            {
                closed.push(part);
            }
        }
        Ok(closed)
    };
    // Whether everything received so far ends with a whole page.
    let mut at_boundary = true;
    while let Some(message) = batches.blocking_recv() {
        match message {
            ToWriter::Open(s) => {
                // A new schema mid-run (evolution): the parts being written close at this
                // page boundary, under the old schema, and the checkpoint moves past them.
                if !writers.is_empty() {
                    let closed = close_all(&mut writers)?;
                    let dirs: Vec<String> = ledger.pending.keys().cloned().collect();
                    if !closed.is_empty() {
                        ledger.commit(closed, &dirs, resume_at.clone())?;
                    }
                    writers.clear();
                }
                if let Some(old) = &schema {
                    let first_part = ledger.checkpoint.parts.len();
                    // Columns before any record's (an empty first page: nothing, or only the
                    // partitions') were not columns a part lacked.
                    let had_records = old
                        .fields()
                        .iter()
                        .any(|f| !partition_columns.iter().any(|c| c == f.name()));
                    for f in s.fields() {
                        if old.field_with_name(f.name()).is_err() && had_records {
                            ledger
                                .checkpoint
                                .columns_added
                                .push((f.name().clone(), first_part));
                        }
                    }
                }
                ledger.checkpoint.schema_fingerprint = Some(fingerprint(&s));
                ledger.checkpoint.schema = Some(s.as_ref().clone());
                schema = Some(s);
            }
            ToWriter::Batch { batch, slice } => {
                at_boundary = false;
                let page_dir = dir_of(slice);
                let schema = schema.as_ref().expect("Open comes first");
                writer_for(&page_dir, &mut writers, &ledger, schema)?;
                let pending = ledger.pending(&page_dir);
                pending.records += batch.num_rows() as u64;
                if let Some(keys) = keys.as_mut() {
                    let again = keys.add(&batch).map_err(|e| match e {
                        crate::sink::duplicates::KeyError::Missing { .. } => Error::from(
                            crate::config::ConfigError::field("endpoint.key", e.to_string()),
                        ),
                        crate::sink::duplicates::KeyError::Unreadable { .. } => Error::Internal {
                            job: job.to_string(),
                            message: e.to_string(),
                        },
                    })?;
                    if let Some(first) = again.first() {
                        if on_duplicate == crate::config::OnDuplicate::Fail {
                            return Err(Error::Duplicate {
                                job: job.to_string(),
                                key: first.key.clone(),
                            });
                        }
                        let seen =
                            ledger.checkpoint.duplicates + ledger.uncommitted(|p| p.duplicates);
                        if seen == 0 {
                            tracing::warn!(job, key = %first.key, "a record came twice in this run: each key's copy fetched last is kept (on_duplicate = keep_newest)");
                        }
                        ledger.pending(&page_dir).duplicates += again.len() as u64;
                    }
                }
                if let Some(field) = cursor_field {
                    let crate::incremental::BatchMark { max, future } =
                        crate::incremental::column_mark(&batch, field, not_after);
                    let before = ledger.checkpoint.records + ledger.uncommitted(|p| p.records);
                    let rows = batch.num_rows() as u64;
                    for (row, value) in &future {
                        let seen =
                            ledger.checkpoint.future_marks + ledger.uncommitted(|p| p.future);
                        if seen < FUTURE_WARNINGS {
                            let record = before - rows + *row as u64 + 1;
                            tracing::warn!(job, field, value = %value, record, "a record's cursor value is past the run's start and its tolerance (`incremental.future_tolerance_secs`): left out of the high-water mark");
                        }
                        ledger.pending(&page_dir).future += 1;
                    }
                    let pending = ledger.pending(&page_dir);
                    if let Some(slice) = slice {
                        let step = pending.slices.entry(slice).or_default();
                        step.mark = crate::incremental::higher(step.mark.take(), max.clone());
                    }
                    pending.mark = crate::incremental::higher(pending.mark.take(), max);
                }
                writers
                    .get_mut(&page_dir)
                    .expect("made above")
                    .write(&batch)
                    .map_err(sink_error)?;
            }
            ToWriter::PageEnd {
                next,
                nulled,
                dropped,
                stated,
                slice,
                records,
                end_of_run,
            } => {
                at_boundary = true;
                let dir = dir_of(slice);
                let pending = ledger.pending(&dir);
                for (field, n) in dropped {
                    *pending.dropped.entry(field).or_insert(0) += n;
                }
                for (field, n) in nulled {
                    *pending.nulled.entry(field).or_insert(0) += n;
                }
                // Where the run stands after this page: a slice's position is its own; the
                // run's stays at the start until the last page.
                let step_done = next.is_none();
                let next = match slice {
                    Some(slice) => {
                        let step = pending.slices.entry(slice).or_default();
                        step.records += records;
                        step.next = next;
                        step.stated = stated.or(step.stated);
                        resume_at.clone()
                    }
                    None if end_of_run => None,
                    None => {
                        if stated.is_some() {
                            pending.stated = stated;
                        }
                        next
                    }
                };
                resume_at = next.clone();
                if end_of_run {
                    // A snapshot with no record at all still gets one (empty) part, so that
                    // readers find its columns.
                    // (Not a hive layout's shard: a part beside the `name=value` directories
                    // would confuse readers; another shard has the columns.)
                    let hive_shard = hive.is_some() && ledger.checkpoint.shard.is_some();
                    if ledger.checkpoint.parts.is_empty() && writers.is_empty() && !hive_shard {
                        let schema = schema.as_ref().expect("Open comes first");
                        writer_for("", &mut writers, &ledger, schema)?;
                    }
                    let mut closed = Vec::new();
                    for writer in writers.values_mut() {
                        if let Some(part) = writer.close_part().map_err(sink_error)? {
                            closed.push(part);
                        }
                    }
                    let dirs: Vec<String> = ledger.pending.keys().cloned().collect();
                    ledger.commit(closed, &dirs, None)?;
                    return Ok(WriteOutcome {
                        state: ledger.state,
                        complete: true,
                        schema,
                    });
                }
                // In a hive layout a slice's last page closes its directory's part: a
                // directory may see no page again, and an open part per directory would hold
                // a file and a row group each, for the whole run.
                let slice_ended = hive.is_some() && slice.is_some() && step_done;
                let closed = match writers.get_mut(&dir) {
                    Some(writer) if slice_ended => writer.close_part().map_err(sink_error)?,
                    Some(writer) => writer.end_of_page().map_err(sink_error)?,
                    None => None,
                };
                if slice_ended {
                    writers.remove(&dir);
                }
                if let Some(part) = closed {
                    ledger.commit(vec![part], &[dir], next.clone())?;
                }
            }
        }
    }
    if at_boundary && writers.values().any(|w| w.has_open_part()) {
        let closed = close_all(&mut writers)?;
        let dirs: Vec<String> = ledger.pending.keys().cloned().collect();
        ledger.commit(closed, &dirs, resume_at)?;
        tracing::info!(
            job,
            records = ledger.checkpoint.records,
            "the interrupted run's whole pages are committed"
        );
    }
    Ok(WriteOutcome {
        state: ledger.state,
        complete: false,
        schema,
    })
}

fn fingerprint(schema: &arrow_schema::Schema) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_vec(schema).expect("schemas serialize");
    format!("{:x}", Sha256::digest(&text))
}
