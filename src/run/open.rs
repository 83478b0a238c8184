//! Opening a run: the job's lock and state, and the checkpoint to continue — the interrupted
//! run's, its leftovers removed, or a new one.

use super::{Job, Opened, RunOptions, describe_position, new_run_id, shards};
use crate::Error;
use crate::checkpoint::{Checkpoint, JobState};
use crate::sink::snapshot::{prepare_resume, unmark};
use crate::vocab::ConfigError;

impl Job {
    /// Takes the job's lock and state, and the checkpoint to continue: the interrupted
    /// run's (its leftovers removed), or a new one.
    pub(super) async fn open(&self, options: &RunOptions) -> Result<Opened, Error> {
        let state_error = |e| self.state_error(e);
        let sink_error = |e| self.sink_error(e);
        if options.shard.is_some() && options.run_id.is_none() {
            return Err(ConfigError::field(
                "--run-id",
                "the shards of a sharded run share one run id: pass --run-id or set \
                 APISNAP_RUN_ID (the Kubernetes deployment sets it from the Job's name)",
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
        let state_store = self.state_store(options.shard)?;
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
        if (options.fresh || abandoned)
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
        let snapshot_dir = self
            .output
            .render_dir(&self.name, now, &run_id)
            .map_err(|e| self.sink_error(e))?;
        let snapshot = self.open_store(&snapshot_dir)?;
        // A snapshot of the same name (a second run on one date) is replaced: its
        // _SUCCESS goes first, so no reader takes it for complete meanwhile.
        unmark(&snapshot).await.map_err(|e| self.sink_error(e))?;
        prepare_resume(&snapshot, &[], prefix)
            .await
            .map_err(|e| self.sink_error(e))?;
        let (position, shard, schema) = match options.shard {
            None => (Some(self.paginator.first().position), None, None),
            Some(shard) => self.plan_shard(shard).await?,
        };
        let since = match &self.incremental {
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
            position,
            parts: Vec::new(),
            records: 0,
            schema,
            schema_fingerprint: None,
            since,
            // Carried over: a run that finds nothing new keeps the old mark.
            high_water: state.history.iter().find_map(|r| r.high_water.clone()),
            columns_added: Vec::new(),
            nulled: Default::default(),
            stated_records: None,
            pagination: Some(self.paginator.fingerprint().to_string()),
            shard,
        })
    }
}
