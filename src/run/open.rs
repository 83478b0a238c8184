//! Opening a run: the job's lock and state, and the checkpoint to continue — the interrupted
//! run's, its leftovers removed, or a new one.

use super::{Job, Opened, RunOptions, describe_position, new_run_id, shards};
use crate::Error;
use crate::checkpoint::{Checkpoint, JobState};
use crate::paginate::{Position, Shard};
use crate::sink::snapshot::prepare_resume;
use crate::storage::{Location, Store};
use crate::vocab::ConfigError;

impl Job {
    /// Takes the job's lock and state, and the checkpoint to continue: the interrupted
    /// run's (its leftovers removed), or a new one.
    pub(super) async fn open(&self, options: &RunOptions) -> Result<Opened, Error> {
        let state_error = |e| self.state_error(e);
        let sink_error = |e| self.sink_error(e);
        if let Some(id) = &options.run_id {
            // It becomes `{run_id}` in paths.
            crate::vocab::check_name(id, "the run id")
                .map_err(|e| Error::from(ConfigError::field("--run-id", e)))?;
        }
        if options.shard.is_some() && options.run_id.is_none() {
            return Err(ConfigError::field(
                "--run-id",
                "the shards of a sharded run share one run id: pass --run-id or set \
                 APISNAP_RUN_ID (the Kubernetes deployment sets it from the Job's name)",
            )
            .into());
        }
        if options.shard.is_some() && self.on_duplicate == crate::config::OnDuplicate::KeepNewest {
            // Each shard sees its own keys only, and none rewrites the whole snapshot.
            return Err(ConfigError::field(
                "on_duplicate",
                "`keep_newest` keeps each key once across the whole snapshot, which the \
                 shards of a sharded run do not see together: run it whole, or use `fail`",
            )
            .into());
        }
        if options.shard.is_some() && self.incremental.is_some() {
            // Each shard would keep its own high-water mark, and none would be the job's.
            return Err(ConfigError::field(
                "incremental",
                "an incremental job cannot be split into shards: run it whole (its runs \
                 fetch only what is new anyway)",
            )
            .into());
        }
        if options.backfill.is_some() && !self.slicing.as_ref().is_some_and(|s| s.windowed()) {
            return Err(ConfigError::field(
                "windows",
                format!(
                    "{} has no `[windows]`: a backfill loads a range of windows; add them",
                    self.name
                ),
            )
            .into());
        }
        let state_store = self.run_state_store(options)?;
        // Two runs of one job at once would write the same snapshot: cron and systemd
        // overlap when a run is slow, so the second one stops here.
        let lock = state_store.lock().await.map_err(state_error)?;
        let mut state = state_store.load().await.map_err(state_error)?;
        // Taken over for this run: in object storage, a second pod that loads the same state
        // and claims it after this one makes this run's next save fail (and stop).
        state_store.claim(&mut state).await.map_err(state_error)?;
        let prefix = shards::part_prefix(options.shard);
        // A shard of an earlier sharded run that never completed: that run is abandoned.
        let abandoned = options.shard.is_some()
            && state
                .in_progress
                .as_ref()
                .is_some_and(|cp| Some(&cp.run_id) != options.run_id.as_ref());
        // A run that already put its snapshot in place (the exchange of a replacement is
        // made) is finished rather than discarded: its data is the snapshot now.
        let placed = match &state.in_progress {
            Some(cp) => self.exchanged(cp).await?,
            None => false,
        };
        if (options.fresh || abandoned)
            && !placed
            && let Some(old) = state.in_progress.take()
        {
            tracing::info!(job = %self.name, run_id = %old.run_id, "discarding the checkpoint (--fresh, or a shard of an abandoned run)");
            let old_snapshot = self.open_store(&old.snapshot_dir)?;
            prepare_resume(&old_snapshot, &[], &prefix)
                .await
                .map_err(sink_error)?;
            old_snapshot.remove_if_empty().await;
            state_store.save(&state).await.map_err(state_error)?;
        }
        let (checkpoint, resumed) = match state.in_progress.clone() {
            Some(cp) => {
                self.check_resumable(&cp)?;
                if let Some(upload) = state_store
                    .abort_pending_upload()
                    .await
                    .map_err(state_error)?
                {
                    tracing::info!(job = %self.name, upload = %upload.url, "aborted the killed run's unfinished upload");
                }
                let snapshot = self.open_store(&cp.snapshot_dir)?;
                // Killed after exchanging a replaced snapshot: its parts are in place, and
                // what sits where they were written is the old snapshot, left to remove.
                // A shard whose run's snapshot is marked complete (a finalizer that was
                // merging its parts was stopped): its parts may be merged away already.
                let marked_shard = cp.shard.is_some()
                    && cp.position.is_none()
                    && self.marked_for(&snapshot, &cp.run_id).await?;
                if marked_shard || self.exchanged(&cp).await? {
                    return Ok(Opened {
                        state_store,
                        snapshot,
                        _lock: lock,
                        state,
                        checkpoint: cp,
                        resumed: true,
                    });
                }
                let cp = match self.verified(&snapshot, cp, &state).await? {
                    (cp, false) => cp,
                    (cp, true) => {
                        state.in_progress = Some(cp.clone());
                        state_store.save(&state).await.map_err(state_error)?;
                        cp
                    }
                };
                let removed = prepare_resume(&snapshot, &cp.parts, &prefix)
                    .await
                    .map_err(sink_error)?;
                tracing::info!(
                    job = %self.name,
                    run_id = %cp.run_id,
                    position = %describe_position(&cp.position),
                    records = cp.records,
                    parts = cp.parts.len(),
                    removed = removed.len(),
                    "resuming the interrupted run"
                );
                (cp, true)
            }
            None => {
                let cp = self.start(options, &state, &prefix).await?;
                state.in_progress = Some(cp.clone());
                state_store.save(&state).await.map_err(state_error)?;
                (cp, false)
            }
        };
        if let (Some(inc), Some(since)) = (&self.incremental, &checkpoint.since) {
            tracing::info!(job = %self.name, param = %inc.param, value = %since, "incremental: fetching what is new");
            self.fetcher
                .set_run_query(vec![(inc.param.clone(), since.clone())]);
        }
        tracing::info!(
            job = %self.name,
            run_id = %checkpoint.run_id,
            snapshot = %checkpoint.snapshot_dir,
            "run started"
        );
        Ok(Opened {
            state_store,
            snapshot: self.open_store(&checkpoint.snapshot_dir)?,
            _lock: lock,
            state,
            checkpoint,
            resumed,
        })
    }

    /// The checkpoint with every committed part checked in the snapshot: from the first
    /// part that is missing or not as written, the run goes back to the end of the part
    /// before it (with a WARN naming what was wrong), so that those records are fetched
    /// again and the snapshot never completes with records missing. Also returns whether
    /// it went back.
    async fn verified(
        &self,
        snapshot: &Store,
        mut cp: Checkpoint,
        state: &JobState,
    ) -> Result<(Checkpoint, bool), Error> {
        let mut bad = None;
        for (k, part) in cp.parts.iter().enumerate() {
            let why = snapshot
                .verify(&part.file, part.bytes, &part.sha256)
                .await
                .map_err(|e| self.sink_error(e.into()))?;
            if let Some(why) = why {
                bad = Some((k, part.file.clone(), why));
                break;
            }
        }
        let Some((k, file, why)) = bad else {
            return Ok((cp, false));
        };
        // Older checkpoints keep no part ends, or ends for only the parts added since an
        // upgrade: unless they are in step with the parts, start again from the first.
        let in_step = cp.part_ends.len() == cp.parts.len();
        let end = match k {
            0 => None,
            k if in_step => cp.part_ends.get(k - 1).cloned(),
            _ => None,
        };
        // A part holds pages of several slices, and a part's end does not say where each
        // stood: a sliced run goes back to its first part, every slice to its start.
        let end = end.filter(|_| cp.slices.is_none());
        if let Some(progress) = cp.slices.as_mut() {
            *progress = crate::slice::SliceProgress::new(progress.plan.clone())
                .with_fingerprint(progress.fingerprint.clone());
        }
        let k = if end.is_some() { k } else { 0 };
        let first = match &cp.shard {
            Some(range) => match (range.start, self.paginator.first().position) {
                (Some(at), Position::Offset { .. }) => Position::Offset { offset: at },
                (Some(at), Position::Page { .. }) => Position::Page { page: at },
                (_, first) => first,
            },
            None => self.paginator.first().position,
        };
        cp.parts.truncate(k);
        cp.part_ends.truncate(k);
        match end {
            Some(end) => {
                cp.position = end.position;
                cp.records = end.records;
                cp.high_water = end.high_water;
                cp.future_marks = end.future_marks;
                cp.duplicates = end.duplicates;
                cp.nulled = end.nulled;
                cp.dropped = end.dropped;
            }
            None => {
                cp.position = Some(first);
                cp.records = 0;
                cp.high_water = state.history.iter().find_map(|r| r.high_water.clone());
                cp.future_marks = 0;
                cp.duplicates = 0;
                cp.nulled.clear();
                cp.dropped.clear();
            }
        }
        // Columns added from a part that is gone come back when their records do.
        if let Some(schema) = &mut cp.schema {
            let gone: Vec<String> = cp
                .columns_added
                .iter()
                .filter(|(_, from)| *from >= k)
                .map(|(name, _)| name.clone())
                .collect();
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .filter(|f| !gone.contains(f.name()))
                .cloned()
                .collect();
            *schema = arrow_schema::Schema::new(fields);
        }
        cp.columns_added.retain(|(_, from)| *from < k);
        tracing::warn!(
            job = %self.name,
            part = %file,
            problem = %why,
            resume_at = %describe_position(&cp.position),
            records_kept = cp.records,
            "a committed part of the interrupted run is missing or damaged: fetching its records and all after it again"
        );
        Ok((cp, true))
    }

    /// Whether `snapshot`'s manifest is the run `run_id`'s.
    pub(super) async fn marked_for(&self, snapshot: &Store, run_id: &str) -> Result<bool, Error> {
        let Some((bytes, _)) = snapshot
            .get("_manifest.json")
            .await
            .map_err(|e| self.sink_error(e.into()))?
        else {
            return Ok(false);
        };
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(manifest["run_id"].as_str() == Some(run_id))
    }

    /// Refuses a checkpoint whose position the job's pagination cannot continue: edited
    /// since the killed run, it could send a request without paging parameters, be told
    /// "done", and complete a snapshot with records missing.
    fn check_resumable(&self, cp: &Checkpoint) -> Result<(), Error> {
        let other_settings = cp.position.is_some()
            && cp
                .pagination
                .as_deref()
                .is_some_and(|made_under| made_under != self.paginator.fingerprint());
        let other_kind = cp
            .position
            .as_ref()
            .is_some_and(|p| self.paginator.resume(p).is_err());
        let slicing_now = self.slicing.as_ref().map(|s| s.fingerprint());
        let slicing_then = cp.slices.as_ref().map(|p| p.fingerprint.as_deref());
        let other_slices = match (slicing_now, slicing_then) {
            (None, None) => false,
            (Some(now), Some(then)) => then != Some(now),
            _ => true,
        };
        if other_slices {
            return Err(ConfigError::field(
                "partitions",
                format!(
                    "the partitions, windows or request of {} changed since the interrupted \
                     run (run {}): its slices are not this job's; run it with --fresh to \
                     start over",
                    self.name, cp.run_id
                ),
            )
            .into());
        }
        if other_settings || other_kind {
            return Err(ConfigError::field(
                "pagination",
                format!(
                    "the pagination of {} changed since the interrupted run (run {}, at {}); \
                     run it with --fresh to start over",
                    self.name,
                    cp.run_id,
                    describe_position(&cp.position)
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The checkpoint of a new run: its snapshot directory made ready, its first position
    /// (a shard's from a first request), the incremental value it sends.
    async fn start(
        &self,
        options: &RunOptions,
        state: &JobState,
        prefix: &str,
    ) -> Result<Checkpoint, Error> {
        let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
        let now = chrono::Utc::now();
        let mut snapshot_dir = self
            .output
            .render_dir(&self.name, now, &run_id)
            .map_err(|e| self.sink_error(e))?;
        if let Some(backfill) = &options.backfill {
            snapshot_dir = self.backfill_dir(backfill, now)?;
        }
        let (snapshot_dir, replaces) = self.place(snapshot_dir, &run_id, options.shard).await?;
        let snapshot = self.open_store(&snapshot_dir)?;
        prepare_resume(&snapshot, &[], prefix)
            .await
            .map_err(|e| self.sink_error(e))?;
        let (position, shard, schema) = match options.shard {
            None => (Some(self.paginator.first().position), None, None),
            // A sliced job's shards split its partitions (below); every one of them writes
            // the columns of the first slice's first page.
            Some(shard) if self.slicing.is_some() => {
                let schema = match &self.declared {
                    Some(declared) => Some(declared.as_ref().clone()),
                    None => self.first_page(true).await?.columns(&self.name)?,
                };
                let range = crate::checkpoint::ShardRange {
                    index: shard.index,
                    count: shard.count,
                    start: None,
                    end: None,
                };
                (Some(self.paginator.first().position), Some(range), schema)
            }
            Some(shard) => self.plan_shard(shard).await?,
        };
        let slices = self.plan_slices(options, state, now).await?;
        let since = match &self.incremental {
            // A sliced job's partitions each send their own (in the plan).
            Some(_) if slices.is_some() => None,
            Some(inc) => inc
                .value(&state.history)
                .map_err(|message| Error::Internal {
                    job: self.name.clone(),
                    message,
                })?,
            None => None,
        };
        Ok(Checkpoint {
            run_id,
            started_at: now,
            snapshot_dir,
            replaces,
            position,
            parts: Vec::new(),
            part_ends: Vec::new(),
            records: 0,
            schema,
            schema_fingerprint: None,
            since,
            // Carried over: a run that finds nothing new keeps the old mark.
            high_water: state.history.iter().find_map(|r| r.high_water.clone()),
            future_marks: 0,
            duplicates: 0,
            columns_added: Vec::new(),
            nulled: Default::default(),
            dropped: Default::default(),
            stated_records: None,
            pagination: Some(self.paginator.fingerprint().to_string()),
            shard,
            slices,
        })
    }

    /// Where a backfill writes: `backfill/FROM_TO` in the job's directory, the output
    /// directory up to its first part that changes per run (`{date}`, `{timestamp}`,
    /// `{run_id}`), with the job's name added if that part lacks it.
    fn backfill_dir(
        &self,
        backfill: &super::Backfill,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Location, Error> {
        let fixed: Vec<&str> = self
            .output
            .dir
            .split('/')
            .take_while(|p| {
                !["{date}", "{timestamp}", "{run_id}"]
                    .iter()
                    .any(|v| p.contains(v))
            })
            .collect();
        let mut dir = fixed.join("/");
        if !dir.contains("{job}") {
            dir = format!("{}/{{job}}", dir.trim_end_matches('/'));
        }
        let dir = format!("{}/backfill/{}", dir.trim_end_matches('/'), backfill.name());
        let output = crate::sink::OutputConfig {
            dir,
            ..self.output.clone()
        };
        output
            .render_dir(&self.name, now, "")
            .map_err(|e| self.sink_error(e))
    }

    /// Where a new run writes, and the complete snapshot it replaces, given what its
    /// rendered directory holds. Empty: there. A complete snapshot of this job (a second
    /// run on one date): beside it, so that it stays readable until the new one is
    /// complete; on disk in a hidden sibling exchanged with it at the end, in object
    /// storage (which cannot rename) in a sibling of its own, `NAME.RUN_ID`, that
    /// `latest.json` then names. Another job's snapshot, or files of a snapshot no run of
    /// this job is writing: refused, since clean-up would remove them.
    async fn place(
        &self,
        target: Location,
        run_id: &str,
        shard: Option<Shard>,
    ) -> Result<(Location, Option<Location>), Error> {
        let store = self.open_store(&target)?;
        let storage_error = |e: crate::storage::StorageError| self.sink_error(e.into());
        let names = store.names().await.map_err(storage_error)?;
        let manifest = match names.iter().any(|n| n == "_manifest.json") {
            true => store.get("_manifest.json").await.map_err(storage_error)?,
            false => None,
        };
        let owner = manifest
            .and_then(|(bytes, _)| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|m| m["job"].as_str().map(str::to_string));
        if let Some(owner) = owner.as_ref().filter(|job| **job != self.name) {
            return Err(ConfigError::field(
                "output.dir",
                format!(
                    "{target} holds a snapshot of job `{owner}`, which this run would \
                     overwrite: give each job its own directory, e.g. with `{{job}}`"
                ),
            )
            .into());
        }
        let complete = owner.is_some() && names.iter().any(|n| n == "_SUCCESS");
        if !complete {
            // The parts of the other shards of this run are expected here.
            let unowned: Vec<&String> = names
                .iter()
                .filter(|n| is_snapshot_file(n))
                .filter(|n| shard.is_none() || !is_shard_part(n))
                .collect();
            if !unowned.is_empty() {
                let shown: Vec<&str> = unowned.iter().take(3).map(|n| n.as_str()).collect();
                return Err(ConfigError::field(
                    "output.dir",
                    format!(
                        "{target} already holds {} file(s) of a snapshot that no run of {} \
                         is writing ({}{}): move them away, or point output.dir elsewhere; \
                         apisnap removes only what its own runs wrote",
                        unowned.len(),
                        self.name,
                        shown.join(", "),
                        if unowned.len() > 3 { ", …" } else { "" }
                    ),
                )
                .into());
            }
            return Ok((target, None));
        }
        let (Some(parent), Some(name)) = (target.parent(), target.name()) else {
            return Err(ConfigError::field(
                "output.dir",
                format!("{target} has no parent to write a replacement beside"),
            )
            .into());
        };
        if store.can_swap() {
            let staged = parent.join(&format!(".{name}.{run_id}"));
            return Ok((staged, Some(target)));
        }
        // The first sibling not complete already (a run id given twice, `--run-id`): the
        // shards of one run, which share the id, choose the same.
        for k in 0..100 {
            let sibling = match k {
                0 => parent.join(&format!("{name}.{run_id}")),
                k => parent.join(&format!("{name}.{run_id}-{k}")),
            };
            let taken = self
                .open_store(&sibling)?
                .exists("_SUCCESS")
                .await
                .map_err(storage_error)?;
            if !taken {
                tracing::info!(job = %self.name, snapshot = %sibling, replaces = %target, "a complete snapshot has this name: writing beside it (object storage cannot exchange)");
                return Ok((sibling, None));
            }
        }
        Err(ConfigError::field(
            "output.dir",
            format!("{target} and 100 siblings named after run {run_id} are complete already"),
        )
        .into())
    }
}

/// Whether `name` is one a snapshot's writer makes (and clean-up removes): parts, markers,
/// and hidden temporaries.
fn is_snapshot_file(name: &str) -> bool {
    name.starts_with("part-")
        || name == "_manifest.json"
        || name == "_SUCCESS"
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Whether `name` is a shard's part or its temporary (`part-NNNN-…`).
fn is_shard_part(name: &str) -> bool {
    let name = name.strip_prefix('.').unwrap_or(name);
    name.strip_prefix("part-")
        .and_then(|rest| rest.get(..5))
        .is_some_and(|p| p[..4].bytes().all(|b| b.is_ascii_digit()) && p.ends_with('-'))
}
