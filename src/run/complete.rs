//! Completing a whole run's snapshot after its last part.

use std::sync::Arc;

use arrow_schema::SchemaRef;

use super::Job;
use crate::Error;
use crate::checkpoint::{Checkpoint, JobState, RunRecord, StateStore};
use crate::sink::snapshot::{ColumnInfo, Manifest, finalize, mark_complete, publish, remove_parts};
use crate::storage::Store;

impl Job {
    /// Completes a whole run's snapshot after its last part: compaction (if asked), the
    /// manifest, `_SUCCESS`, `latest.json`, and the run in the job's history.
    pub(super) async fn complete(
        &self,
        state_store: &StateStore,
        snapshot: &Store,
        mut state: JobState,
        schema: Option<SchemaRef>,
        backfill: bool,
    ) -> Result<Checkpoint, Error> {
        let state_error = |e| self.state_error(e);
        let sink_error = |e| self.sink_error(e);
        let mut done = state.in_progress.clone().expect("the run's checkpoint");
        let schema = schema.unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
        // Done already when the one part left is the merged file (a completion resumed).
        let merged_already = matches!(done.parts.as_slice(),
            [one] if one.file == crate::sink::snapshot::compacted_name(&self.output));
        if done.duplicates > 0
            && self.on_duplicate == crate::config::OnDuplicate::KeepNewest
            && !merged_already
        {
            // Each key once, before anything is counted: the merged file is published and
            // named by the checkpoint, then the parts go, as in a compaction.
            let staging = snapshot.staging().map_err(|e| sink_error(e.into()))?;
            let merged = crate::sink::duplicates::keep_newest(
                snapshot,
                &staging,
                &self.output,
                schema.clone(),
                &done.parts,
                &self.key,
            )
            .await
            .map_err(sink_error)?;
            snapshot
                .upload(&merged.info.file, &merged.path)
                .await
                .map_err(|e| sink_error(e.into()))?
                .finish()
                .await
                .map_err(|e| sink_error(e.into()))?;
            tracing::info!(job = %self.name, duplicates = done.duplicates, records = merged.info.records, "each key kept once (on_duplicate = keep_newest)");
            done.records = merged.info.records;
            let old = std::mem::replace(&mut done.parts, vec![merged.info]);
            let last = done.part_ends.pop().map(|mut end| {
                end.records = done.records;
                end
            });
            done.part_ends = last.into_iter().collect();
            state.in_progress = Some(done.clone());
            state_store.save(&state).await.map_err(state_error)?;
            remove_parts(snapshot, &old).await.map_err(sink_error)?;
        }
        self.account(done.stated_records, done.records)?;
        if let Some(progress) = &done.slices {
            // Every slice done, and their records the run's: anything else is a bug that
            // would complete a snapshot with records missing.
            if !progress.finished() || progress.records_done() != done.records {
                return Err(Error::Internal {
                    job: self.name.clone(),
                    message: format!(
                        "the slices do not add up ({} of {} done, {} records of {}): the \
                         checkpoint is kept; run the job with --fresh",
                        progress.slices_done,
                        progress.plan.len(),
                        progress.records_done(),
                        done.records
                    ),
                });
            }
            self.account_slices(progress)?;
        }
        let csv_columns_differ =
            self.output.format == crate::sink::Format::Csv && !done.columns_added.is_empty();
        if self.output.compact && csv_columns_differ {
            // CSV parts with different headers cannot be concatenated.
            tracing::warn!(job = %self.name, "columns were added during the run: the CSV parts are kept, not compacted");
        }
        if self.output.compact && done.parts.len() > 1 && !csv_columns_differ {
            // The merged file is published, then named by the checkpoint, and only then do
            // the parts go: a crash in between resumes into one or the other, never both.
            let staging = snapshot.staging().map_err(|e| sink_error(e.into()))?;
            let merged = crate::sink::snapshot::compact(
                snapshot,
                &staging,
                &self.output,
                schema.clone(),
                &done.parts,
            )
            .await
            .map_err(sink_error)?;
            // Not noted for abort after a kill: the merged file is made again on resume
            // under the same name, which a fresh upload replaces.
            snapshot
                .upload(&merged.info.file, &merged.path)
                .await
                .map_err(|e| sink_error(e.into()))?
                .finish()
                .await
                .map_err(|e| sink_error(e.into()))?;
            let old = std::mem::replace(&mut done.parts, vec![merged.info]);
            // One part now, ending where the last one did.
            let last = done.part_ends.pop();
            done.part_ends = last.into_iter().collect();
            state.in_progress = Some(done.clone());
            state_store.save(&state).await.map_err(state_error)?;
            remove_parts(snapshot, &old).await.map_err(sink_error)?;
        }
        let manifest = self.manifest(&done, &schema, &done.columns_added, done.nulled.clone());
        let placed = match done.replaces.clone() {
            None => {
                finalize(snapshot, &manifest, self.retain(backfill))
                    .await
                    .map_err(sink_error)?;
                snapshot.clone()
            }
            Some(target) => {
                self.replace(snapshot, &target, &done, &manifest, self.retain(backfill))
                    .await?;
                done.snapshot_dir = target;
                self.open_store(&done.snapshot_dir)?
            }
        };
        // Before the run is recorded: killed while merging, the run's completion is
        // resumed, and merges again.
        // A backfill's snapshot stays apart from the table of the job's syncs.
        if !backfill {
            self.merge_table(&placed, &done.parts, &done, Some(&schema))
                .await?;
        }
        if let (Some(slicing), Some(progress), false) = (&self.slicing, &done.slices, backfill) {
            slicing.marks_after(&progress.plan, &mut state.window_marks);
            high_water_after(progress, &mut state.partition_high_water);
        }
        state_store
            .finish(
                &mut state,
                RunRecord {
                    run_id: done.run_id.clone(),
                    finished_at: manifest.finished_at,
                    snapshot_dir: done.snapshot_dir.clone(),
                    records: done.records,
                    high_water: done.high_water.clone(),
                },
            )
            .await
            .map_err(state_error)?;
        Ok(done)
    }

    /// Completes a snapshot written beside the complete one it replaces, and exchanges the
    /// two ([`exchange`](Self::exchange)). Killed at any point, the next run does it again:
    /// the target's manifest says whether the exchange was made.
    async fn replace(
        &self,
        staged: &Store,
        target: &crate::storage::Location,
        done: &Checkpoint,
        manifest: &Manifest,
        retain: Option<usize>,
    ) -> Result<(), Error> {
        let exchanged = self.exchanged(done).await?;
        if !exchanged {
            mark_complete(staged, manifest)
                .await
                .map_err(|e| self.sink_error(e))?;
        }
        let target_store = self.exchange(staged, target, exchanged).await?;
        publish(&target_store, manifest, retain)
            .await
            .map_err(|e| self.sink_error(e))
    }

    /// Exchanges a complete snapshot written beside the one it replaces with it, in one
    /// step (unless `exchanged` already), so that a reader of the directory (or of
    /// `latest.json`) sees the old snapshot or the new one, never neither; then removes the
    /// old one, now where the new one was written. Returns the target.
    pub(super) async fn exchange(
        &self,
        staged: &Store,
        target: &crate::storage::Location,
        exchanged: bool,
    ) -> Result<Store, Error> {
        let storage_error = |e: crate::storage::StorageError| self.sink_error(e.into());
        let target_store = self.open_store(target)?;
        if !exchanged {
            staged.swap(&target_store).await.map_err(storage_error)?;
        }
        // _SUCCESS first, so that no reader takes the old one for complete while it goes.
        staged.delete("_SUCCESS").await.map_err(storage_error)?;
        staged.remove_all().await.map_err(storage_error)?;
        target_store
            .clear_swap_leftovers()
            .await
            .map_err(storage_error)?;
        tracing::info!(job = %self.name, snapshot = %target, "replaced the complete snapshot of the same name");
        Ok(target_store)
    }

    /// Merges a complete snapshot into the job's current table, if it keeps one.
    pub(super) async fn merge_table(
        &self,
        snapshot: &Store,
        parts: &[crate::checkpoint::PartInfo],
        run: &Checkpoint,
        columns: Option<&arrow_schema::Schema>,
    ) -> Result<(), Error> {
        let (Some(table), Some(job_dir)) = (&self.table, snapshot.parent()) else {
            return Ok(());
        };
        let merged = crate::table::MergedRun {
            id: run.run_id.clone(),
            started_at: run.started_at,
        };
        table
            .merge(&self.name, &job_dir, snapshot, parts, &merged, columns)
            .await
            .map_err(|source| Error::Table {
                job: self.name.clone(),
                source,
            })?;
        Ok(())
    }

    /// Whether a replacing run has made its exchange: the snapshot it replaces now holds
    /// this run's manifest.
    pub(super) async fn exchanged(&self, run: &Checkpoint) -> Result<bool, Error> {
        let Some(target) = &run.replaces else {
            return Ok(false);
        };
        if run.position.is_some() {
            return Ok(false);
        }
        let target = self.open_store(target)?;
        if run.shard.is_some() {
            // A sharded run's manifest starts when its first shard did; the shards share
            // the run id, which a finished sharded run never takes again.
            return self.marked_for(&target, &run.run_id).await;
        }
        crate::sink::snapshot::marked_by(&target, &run.run_id, run.started_at)
            .await
            .map_err(|e| self.sink_error(e))
    }

    /// Compares the records written with the count the API stated: a difference fails the
    /// run (exit 4), or with `on_count_mismatch = "warn"` is logged.
    pub(super) fn account(&self, stated: Option<u64>, written: u64) -> Result<(), Error> {
        let Some(stated) = stated.filter(|s| *s != written) else {
            return Ok(());
        };
        if self.on_count_mismatch == crate::config::OnCountMismatch::Warn {
            tracing::warn!(job = %self.name, stated, written, "the records written differ from the count the API stated (on_count_mismatch = warn)");
            return Ok(());
        }
        Err(Error::Count {
            job: self.name.clone(),
            stated,
            written,
        })
    }

    /// The manifest of a snapshot that completes now, from the checkpoint of the run (the
    /// first shard's, for a sharded run, with the run's totals in `records` and `parts`).
    pub(super) fn manifest(
        &self,
        run: &Checkpoint,
        schema: &arrow_schema::Schema,
        added: &[(String, usize)],
        nulled: std::collections::BTreeMap<String, u64>,
    ) -> Manifest {
        Manifest {
            job: self.name.clone(),
            run_id: run.run_id.clone(),
            started_at: run.started_at,
            finished_at: chrono::Utc::now(),
            endpoint: self.fetcher.endpoint(),
            format: self.output.format.extension().to_string(),
            records: run.records,
            stated_records: run.stated_records,
            parts: run.parts.clone(),
            schema: ColumnInfo::of(schema, added),
            invalid_values_nulled: nulled,
            dropped_fields: run.dropped.clone(),
            future_marks: run.future_marks,
            duplicates: run.duplicates,
            slices: run.slices.as_ref().map(slice_counts).unwrap_or_default(),
        }
    }

    /// How many complete snapshots to keep: the job's `retain`, but for backfills, which
    /// are each a range of their own and never pruned.
    fn retain(&self, backfill: bool) -> Option<usize> {
        self.output.retain.filter(|_| !backfill)
    }

    /// Every slice got what the API stated for it, unless the job accepts a difference.
    pub(super) fn account_slices(
        &self,
        progress: &crate::slice::SliceProgress,
    ) -> Result<(), Error> {
        if progress.mismatches.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = progress
            .mismatches
            .iter()
            .take(5)
            .map(|m| {
                format!(
                    "{} (stated {}, written {})",
                    crate::slice::Slicing::describe(&progress.plan, m.slice),
                    m.stated,
                    m.records
                )
            })
            .collect();
        let list = format!(
            "{}{}",
            shown.join("; "),
            if progress.mismatches.len() > 5 {
                "; …"
            } else {
                ""
            }
        );
        if self.on_count_mismatch == crate::config::OnCountMismatch::Warn {
            tracing::warn!(job = %self.name, slices = %list, "slices whose records differ from the count the API stated (on_count_mismatch = warn)");
            return Ok(());
        }
        Err(Error::SliceCount {
            job: self.name.clone(),
            count: progress.mismatched as usize,
            slices: list,
        })
    }
}

/// Each partition's high-water mark after a complete run: the higher of its old one and
/// the highest cursor value of its records this run.
pub(super) fn high_water_after(
    progress: &crate::slice::SliceProgress,
    marks: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    for (p, mark) in &progress.high_water {
        let Some(values) = progress.plan.partitions.get(*p as usize) else {
            continue;
        };
        let key = crate::slice::partition_key(Some(values));
        let old = marks.remove(&key);
        if let Some(higher) = crate::incremental::higher(old, Some(mark.clone())) {
            marks.insert(key, higher);
        }
    }
}

/// The manifest's account of a sliced run: per partition, each range of windows done.
pub(super) fn slice_counts(
    progress: &crate::slice::SliceProgress,
) -> Vec<crate::sink::snapshot::SliceCount> {
    let plan = &progress.plan;
    progress
        .done
        .iter()
        .flat_map(|(p, ranges)| {
            ranges.iter().filter(|r| !r.before_mark).map(move |r| {
                let partition = plan
                    .partitions
                    .get(*p as usize)
                    .cloned()
                    .unwrap_or_default();
                let (from, to) = match &plan.windows {
                    Some(w) => (Some(w.get(r.first).start), Some(w.get(r.end - 1).end)),
                    None => (None, None),
                };
                crate::sink::snapshot::SliceCount {
                    partition,
                    from,
                    to,
                    records: r.records,
                }
            })
        })
        .collect()
}
