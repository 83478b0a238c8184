//! A sliced run's plan, made once when it starts: the slices (partitions listed, windows
//! cut, from the job's marks), a shard's share, the directories of a hive layout checked,
//! and an incremental job's value per partition.

use crate::Error;
use crate::checkpoint::JobState;
use crate::run::{Job, RunOptions};
use crate::vocab::ConfigError;

impl Job {
    /// A slice that cannot be planned or requested, named as a paging failure (exit 4).
    pub(super) fn slices_error(&self, message: String) -> Error {
        Error::Paginate {
            job: self.name.clone(),
            position: "the slices".into(),
            message,
        }
    }

    /// The progress a new sliced run starts from; `None` for a job without slices.
    pub(super) async fn plan_slices(
        &self,
        options: &RunOptions,
        state: &JobState,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::slice::SliceProgress>, Error> {
        let Some(slicing) = &self.slicing else {
            return Ok(None);
        };
        let range = options.backfill.map(|b| (b.from, b.to));
        // A shard's state is its own: the marks are the job's.
        let main;
        let marks_of = match options.shard {
            Some(_) => {
                main = self
                    .state_store(None)?
                    .load()
                    .await
                    .map_err(|e| self.state_error(e))?;
                &main
            }
            None => state,
        };
        let mut plan = slicing
            .plan(now, &marks_of.window_marks, range)
            .await
            .map_err(|message| self.slices_error(message))?;
        if let Some(shard) = options.shard {
            crate::slice::Slicing::take_shard(&mut plan, shard.index, shard.count)
                .map_err(|message| ConfigError::field("partitions", message))?;
        }
        // Two partitions in one directory (`7` and `"7"`) would read as one.
        if self.output.layout == crate::sink::Layout::Hive && plan.partitioned {
            let windows = plan.windows.as_ref().map_or(1, |w| w.len());
            let mut dirs = std::collections::BTreeMap::new();
            for p in 0..plan.partitions.len() as u64 {
                let dir = crate::slice::Slicing::hive_dir(&plan, p * windows);
                let dir = dir.split("/date=").next().unwrap_or_default().to_string();
                if let Some(other) = dirs.insert(dir.clone(), p) {
                    return Err(ConfigError::field(
                        "output.layout",
                        format!(
                            "partitions {} and {} would share the directory `{dir}`: \
                             their values differ only in type or in characters a \
                             directory name cannot tell apart; use `layout = \"flat\"`",
                            other + 1,
                            p + 1
                        ),
                    )
                    .into());
                }
            }
        }
        // An incremental partitioned job: each partition from its own mark.
        if let (Some(inc), true) = (&self.incremental, plan.partitioned) {
            plan.since_param = Some(inc.param.clone());
            plan.since = plan
                .partitions
                .iter()
                .map(|p| {
                    let key = crate::slice::partition_key(Some(p));
                    inc.value_from(marks_of.partition_high_water.get(&key).cloned())
                })
                .collect::<Result<_, _>>()
                .map_err(|message| Error::Internal {
                    job: self.name.clone(),
                    message,
                })?;
        }
        tracing::info!(job = %self.name, slices = plan.to_fetch(), partitions = plan.partitions.len(), "slices planned");
        Ok(Some(
            crate::slice::SliceProgress::new(plan)
                .with_fingerprint(Some(slicing.fingerprint().to_string())),
        ))
    }
}
