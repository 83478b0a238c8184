//! A sharded run (`apisnap run --shard INDEX/COUNT`): each shard's range of pages, the names
//! that keep shards apart in one snapshot and one state directory, and the finalization
//! that completes the snapshot once every shard is.

use serde::Serialize;

use super::{Job, RunOptions};
use crate::Error;
use crate::checkpoint::PartInfo;
use crate::checkpoint::{Checkpoint, RunRecord, ShardRange, StateError, StateStore};
use crate::paginate::{Position, Shard};
use crate::sink::SinkError;
use crate::sink::snapshot::{Manifest, mark_complete, publish};
use crate::storage::Location;
use crate::storage::Store;
use crate::vocab::ConfigError;

/// The name of the state a run keeps: the job's, or its shard's.
pub(super) fn state_name(job: &str, shard: Option<Shard>) -> String {
    match shard {
        Some(s) => crate::checkpoint::shard_state_name(job, s.index, s.count),
        None => job.to_string(),
    }
}

/// The prefix of a run's part names: shards name theirs apart, in one snapshot directory.
pub(super) fn part_prefix(shard: Option<Shard>) -> String {
    part_prefix_of(shard.map(|s| s.index))
}

/// [`part_prefix`] by the shard's index.
pub(super) fn part_prefix_of(index: Option<u64>) -> String {
    match index {
        Some(index) => format!("part-{index:04}-"),
        None => "part-".into(),
    }
}

/// What `apisnap finalize` did.
#[derive(Clone, Debug, Serialize)]
pub struct FinalizeSummary {
    pub job: String,
    pub run_id: String,
    pub snapshot_dir: Location,
    pub records: u64,
    pub parts: usize,
    /// The run had been finalized already (by its last shard).
    pub already: bool,
}

impl Job {
    /// A new shard's range and columns, from a first request: the total it states (or the
    /// configured upper bound) splits the pages, and its records give the columns, so that
    /// every shard of the run writes the same ones. An empty range starts at `None`.
    pub(super) async fn plan_shard(
        &self,
        shard: Shard,
    ) -> Result<
        (
            Option<Position>,
            Option<ShardRange>,
            Option<arrow_schema::Schema>,
        ),
        Error,
    > {
        let first = self.first_page(false).await?;
        // Which strategy, and whether the total is known, are matters of the job file.
        let (start, end) = first
            .paginator
            .plan_shard(shard)
            .map_err(|e| Error::from(ConfigError::field("pagination", e.0)))?;
        let schema = match &self.declared {
            Some(declared) => Some(declared.as_ref().clone()),
            None => first.columns(&self.name)?,
        };
        let at = match &start {
            Position::Offset { offset: at } | Position::Page { page: at } => Some(*at),
            _ => None,
        };
        let empty = matches!((at, end), (Some(at), Some(end)) if at >= end);
        tracing::info!(job = %self.name, shard = %shard, start = %start, end = ?end, total = ?first.paginator.total(), "shard range");
        let range = ShardRange {
            index: shard.index,
            count: shard.count,
            start: at,
            end,
        };
        Ok(((!empty).then_some(start), Some(range), schema))
    }

    /// After a shard's run: the last shard to complete finalizes the snapshot.
    pub(super) async fn finalize_after_shard(
        &self,
        shard: Shard,
        run_id: &str,
        options: &RunOptions,
    ) -> Result<(), Error> {
        let finalized = self
            .finalize_shards(shard.count, Some(run_id), options.metrics_dir.as_deref())
            .await;
        match finalized {
            Ok(_) => Ok(()),
            Err(Error::Incomplete { waiting, .. }) => {
                tracing::info!(job = %self.name, waiting = %waiting, "the snapshot is finalized when the other shards are complete");
                Ok(())
            }
            // Another shard, finishing at the same moment, is finalizing it.
            Err(Error::State {
                source: StateError::Locked { .. },
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Completes a sharded run's snapshot once every shard is: one manifest naming every
    /// shard's parts in shard order, `_SUCCESS`, `latest.json`, and the run in the job's
    /// history. Refuses (with [`Error::Incomplete`]) while any shard is not complete; a run
    /// already finalized (by another shard) is not an error.
    pub async fn finalize_shards(
        &self,
        count: u64,
        run_id: Option<&str>,
        metrics_dir: Option<&std::path::Path>,
    ) -> Result<FinalizeSummary, Error> {
        let state_error = |e| self.state_error(e);
        if count == 0 {
            return Err(ConfigError::field("--shards", "expected 1 or more shards").into());
        }
        let main = self.state_store(None)?;
        // One finalizer at a time on one disk; in object storage the conditional save of
        // the job's state below lets only one record the run.
        let _lock = main.lock().await.map_err(state_error)?;
        let mut main_state = main.load().await.map_err(state_error)?;
        let stores: Vec<StateStore> = (0..count)
            .map(|index| main.sibling(&state_name(&self.name, Some(Shard { index, count }))))
            .collect();
        let mut states = Vec::new();
        for store in &stores {
            states.push(store.load().await.map_err(state_error)?);
        }
        let run_id = match run_id {
            Some(id) => id.to_string(),
            None => states
                .iter()
                .find_map(|s| s.in_progress.as_ref().map(|c| c.run_id.clone()))
                .or_else(|| main_state.history.first().map(|r| r.run_id.clone()))
                .ok_or_else(|| Error::Incomplete {
                    job: self.name.clone(),
                    waiting: "no shard has started".into(),
                })?,
        };
        let already = |snapshot_dir: Location, records, parts| FinalizeSummary {
            job: self.name.clone(),
            run_id: run_id.clone(),
            snapshot_dir,
            records,
            parts,
            already: true,
        };
        if let Some(done) = main_state.history.iter().find(|r| r.run_id == run_id) {
            return Ok(already(done.snapshot_dir.clone(), done.records, 0));
        }
        let waiting: Vec<String> = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.in_progress {
                Some(cp) if cp.run_id == run_id && cp.position.is_none() => None,
                Some(cp) if cp.run_id == run_id => {
                    Some(format!("shard {i}/{count}: {} records so far", cp.records))
                }
                _ => Some(format!("shard {i}/{count}: not started")),
            })
            .collect();
        if !waiting.is_empty() {
            return Err(Error::Incomplete {
                job: self.name.clone(),
                waiting: waiting.join("; "),
            });
        }
        let shards: Vec<Checkpoint> = states
            .iter()
            .map(|s| s.in_progress.clone().expect("checked above"))
            .collect();
        let mut manifest = self.shards_manifest(&shards)?;
        if let Some(other) = shards
            .iter()
            .find(|c| c.snapshot_dir != shards[0].snapshot_dir)
        {
            return Err(Error::Internal {
                job: self.name.clone(),
                message: format!(
                    "the shards of run {run_id} wrote to {} and to {}: run them again with --fresh",
                    shards[0].snapshot_dir, other.snapshot_dir
                ),
            });
        }
        let staged = self.open_store(&shards[0].snapshot_dir)?;
        // Killed after exchanging the snapshot it replaces: this run's is in place.
        let exchanged = self.exchanged(&shards[0]).await?;
        if exchanged {
            let target = self.open_store(shards[0].replaces.as_ref().expect("exchanged"))?;
            if let Some(parts) = written_parts(&target)
                .await
                .map_err(|e| self.sink_error(e))?
            {
                manifest.parts = parts;
            }
        } else if self.output.compact && manifest.parts.len() > 1 {
            self.compact_shards(&staged, &mut manifest, &shards).await?;
        } else {
            mark_complete(&staged, &manifest)
                .await
                .map_err(|e| self.sink_error(e))?;
        }
        let (snapshot, snapshot_dir) = match &shards[0].replaces {
            Some(target) => (
                self.exchange(&staged, target, exchanged).await?,
                target.clone(),
            ),
            None => (staged, shards[0].snapshot_dir.clone()),
        };
        publish(&snapshot, &manifest, self.output.retain)
            .await
            .map_err(|e| self.sink_error(e))?;
        let first = Checkpoint {
            started_at: manifest.started_at,
            ..shards[0].clone()
        };
        self.merge_table(
            &snapshot,
            &manifest.parts,
            &first,
            Some(&shards_schema(&shards)),
        )
        .await?;
        let record = RunRecord {
            run_id: run_id.clone(),
            finished_at: manifest.finished_at,
            snapshot_dir: snapshot_dir.clone(),
            records: manifest.records,
            high_water: None,
        };
        // The marks of every shard's partitions.
        if let Some(slicing) = &self.slicing {
            for progress in shards.iter().filter_map(|c| c.slices.as_ref()) {
                slicing.marks_after(&progress.plan, &mut main_state.window_marks);
                super::complete::high_water_after(progress, &mut main_state.partition_high_water);
            }
        }
        let recorded = match main.claim(&mut main_state).await {
            Ok(()) => main.finish(&mut main_state, record.clone()).await,
            Err(e) => Err(e),
        };
        match recorded {
            Ok(()) => {}
            // Another shard finishing at the same moment recorded the run first.
            Err(StateError::Conflict { .. }) => {
                return Ok(already(
                    snapshot_dir,
                    manifest.records,
                    manifest.parts.len(),
                ));
            }
            Err(e) => return Err(state_error(e)),
        }
        for (store, mut state) in stores.iter().zip(states) {
            store
                .finish(&mut state, record.clone())
                .await
                .map_err(state_error)?;
        }
        self.report_finalized(&main, &stores, count, &snapshot_dir, &manifest, metrics_dir)
            .await;
        tracing::info!(job = %self.name, run_id = %run_id, records = manifest.records, parts = manifest.parts.len(), "sharded run finalized");
        Ok(FinalizeSummary {
            job: self.name.clone(),
            run_id,
            snapshot_dir,
            records: manifest.records,
            parts: manifest.parts.len(),
            already: false,
        })
    }

    /// Marks a sharded run's snapshot complete with its parts merged into one
    /// (`output.compact`): the merged file is published, the snapshot marked complete naming
    /// only it, and only then do the shards' parts go. A finalizer killed on the way starts again; one killed after
    /// marking the snapshot complete (its manifest names this run) only removes the parts
    /// left.
    async fn compact_shards(
        &self,
        snapshot: &crate::storage::Store,
        manifest: &mut Manifest,
        shards: &[Checkpoint],
    ) -> Result<(), Error> {
        let sink_error = |e| self.sink_error(e);
        let storage_error = |e: crate::storage::StorageError| self.sink_error(e.into());
        let parts = std::mem::take(&mut manifest.parts);
        let marked =
            crate::sink::snapshot::marked_by(snapshot, &manifest.run_id, manifest.started_at)
                .await
                .map_err(sink_error)?;
        let merged = match marked {
            true => written_parts(snapshot)
                .await
                .map_err(sink_error)?
                .and_then(|parts| parts.into_iter().next()),
            false => None,
        };
        if let Some(merged) = merged {
            // Complete already, naming the merged file: its parts are what is left to go.
            manifest.parts = vec![merged];
        } else {
            let schema = shards_schema(shards);
            let staging = snapshot.staging().map_err(storage_error)?;
            let merged = crate::sink::snapshot::compact(
                snapshot,
                &staging,
                &self.output,
                std::sync::Arc::new(schema),
                &parts,
            )
            .await
            .map_err(sink_error)?;
            snapshot
                .upload(&merged.info.file, &merged.path)
                .await
                .map_err(storage_error)?
                .finish()
                .await
                .map_err(storage_error)?;
            manifest.parts = vec![merged.info];
            crate::sink::snapshot::mark_complete(snapshot, manifest)
                .await
                .map_err(sink_error)?;
        }
        crate::sink::snapshot::remove_parts(snapshot, &parts)
            .await
            .map_err(sink_error)
    }

    /// The manifest of a sharded run whose shards are all complete: every shard's parts in
    /// shard order, after checking that their ranges meet and their columns agree.
    fn shards_manifest(&self, shards: &[Checkpoint]) -> Result<Manifest, Error> {
        let count = shards.len();
        // Each shard split the pages by the total its own first answer stated: had it
        // changed while they started, the ranges would leave a gap or overlap.
        for (i, pair) in shards.windows(2).enumerate() {
            let (end, next) = (&pair[0].shard, &pair[1].shard);
            if let (Some(end), Some(next)) = (
                end.as_ref().and_then(|r| r.end),
                next.as_ref().and_then(|r| r.start),
            ) && end != next
            {
                return Err(Error::Internal {
                    job: self.name.clone(),
                    message: format!(
                        "shard {i}/{count} ends at {end} but shard {}/{count} starts at {next}: \
                         the API's total changed while the shards started, so records would be \
                         missing or doubled; run the shards again with --fresh, or set \
                         `pagination.total_upper_bound` so that every shard splits alike",
                        i + 1
                    ),
                });
            }
        }
        let fingerprints: std::collections::BTreeSet<_> = shards
            .iter()
            .filter(|c| c.records > 0)
            .filter_map(|c| c.schema_fingerprint.clone())
            .collect();
        if fingerprints.len() > 1 {
            return Err(Error::Internal {
                job: self.name.clone(),
                message: "the shards wrote different columns (a field that appeared in one \
                          shard only, with `schema.drift = \"evolve\"`): declare the columns \
                          in a column file (`schema.file`) and run the shards again"
                    .into(),
            });
        }
        let schema = shards_schema(shards);
        let nulled = per_field(shards, |c| &c.nulled);
        let records = shards.iter().map(|c| c.records).sum();
        // The last shard reads to the real end: the count it was told is the run's (an
        // earlier shard still running may see the data grow past what the last one read).
        let stated = shards.last().and_then(|c| c.stated_records);
        self.account(stated, records)?;
        // A sliced run's shards each account for their own slices.
        for (progress, shard) in shards
            .iter()
            .filter_map(|c| c.slices.as_ref().map(|p| (p, c)))
        {
            if !progress.finished() || progress.records_done() != shard.records {
                return Err(Error::Internal {
                    job: self.name.clone(),
                    message: "a shard's slices are not all done: run it again".into(),
                });
            }
            self.account_slices(progress)?;
        }
        let whole = Checkpoint {
            dropped: per_field(shards, |c| &c.dropped),
            future_marks: shards.iter().map(|c| c.future_marks).sum(),
            duplicates: shards.iter().map(|c| c.duplicates).sum(),
            started_at: shards.iter().map(|c| c.started_at).min().expect("shards"),
            records,
            stated_records: stated,
            parts: shards.iter().flat_map(|c| c.parts.clone()).collect(),
            ..shards[0].clone()
        };
        let mut manifest = self.manifest(&whole, &schema, &[], nulled);
        manifest.slices = shards
            .iter()
            .filter_map(|c| c.slices.as_ref())
            .flat_map(super::complete::slice_counts)
            .collect();
        Ok(manifest)
    }
}

/// The columns of a sharded run: those of the first shard that wrote records (all agree,
/// checked by their fingerprints), else the first shard's.
fn shards_schema(shards: &[Checkpoint]) -> arrow_schema::Schema {
    shards
        .iter()
        .find(|c| c.records > 0)
        .or(shards.first())
        .and_then(|c| c.schema.clone())
        .unwrap_or_else(arrow_schema::Schema::empty)
}

/// A per-field count of every shard, added up.
fn per_field(
    shards: &[Checkpoint],
    counts: impl Fn(&Checkpoint) -> &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    let mut total = std::collections::BTreeMap::new();
    for (field, n) in shards.iter().flat_map(|c| counts(c).iter()) {
        *total.entry(field.clone()).or_insert(0) += n;
    }
    total
}

/// The parts named by a snapshot's `_manifest.json`, if it has one that reads.
async fn written_parts(snapshot: &Store) -> Result<Option<Vec<PartInfo>>, SinkError> {
    let Some((bytes, _)) = snapshot.get("_manifest.json").await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| serde_json::from_value(m["parts"].clone()).ok()))
}
