//! When jobs run: schedules as users write them (a 5-field cron expression and an IANA time
//! zone), and `apisnap schedule`, the foreground scheduler for hosts without cron.
//!
//! - [`expr`]: the one parser of cron expressions, rendered for the `cron` crate, systemd and
//!   Kubernetes.
//! - [`plan`]: which jobs are due at a given time; pure, so it is tested with any clock.
//! - [`daemon`]: the loop that sleeps until the next fire time and runs what is due.

pub mod daemon;
pub mod expr;
pub mod plan;

use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigErrors};

pub use daemon::{Clock, Daemon, DaemonReport, Event, ManualClock, RunJob, SystemClock};
pub use expr::{CronFields, parse, parse_timezone, translate};
pub use plan::{Decision, JobSchedule, Plan, Why};

/// What the scheduler needs of a job: its schedule, and from its state whether it has an
/// interrupted run and when it last ran. `None` for a job without a schedule.
pub fn job_schedule(
    def: &crate::config::JobDefinition,
) -> Result<Option<JobSchedule>, crate::Error> {
    let Some(config) = &def.job.schedule else {
        return Ok(None);
    };
    // Validated when the file was loaded.
    let (schedule, timezone) = config.build().map_err(|message| crate::Error::Internal {
        job: def.name.clone(),
        message,
    })?;
    let state_error = |source| crate::Error::State {
        job: def.name.clone(),
        source,
    };
    let store =
        crate::checkpoint::StateStore::open(&def.job.state_dir, &def.name).map_err(state_error)?;
    let state = store.load().map_err(state_error)?;
    let last_run = crate::report::read(&store)
        .map(|r| r.started_at)
        .or_else(|| state.history.first().map(|r| r.finished_at));
    Ok(Some(JobSchedule {
        job: def.name.clone(),
        schedule,
        timezone,
        last_run,
        resumable: state.in_progress.is_some(),
    }))
}

/// When the job runs.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A 5-field cron expression (`minute hour day-of-month month day-of-week`), as crontab
    /// and Kubernetes write it, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schemars(example = &"30 2 * * 1-5")]
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "default_timezone")]
    #[schemars(example = &"Europe/Madrid")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

impl ScheduleConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        match parse(&self.cron) {
            Err(e) => errors.push(ConfigError::field("schedule.cron", e)),
            // `30 2 31 2 *` parses but never comes.
            Ok(s) if s.upcoming(chrono::Utc).next().is_none() => errors.push(ConfigError::field(
                "schedule.cron",
                format!("`{}` never fires: no date matches it", self.cron),
            )),
            Ok(_) => {}
        }
        if let Err(e) = parse_timezone(&self.timezone) {
            errors.push(ConfigError::field("schedule.timezone", e));
        }
    }

    /// The schedule and its time zone, ready to iterate.
    pub fn build(&self) -> Result<(cron::Schedule, Tz), String> {
        Ok((parse(&self.cron)?, parse_timezone(&self.timezone)?))
    }

    /// The next `n` fire times after `after`, in the schedule's time zone.
    pub fn upcoming(
        &self,
        after: chrono::DateTime<chrono::Utc>,
        n: usize,
    ) -> Result<Vec<chrono::DateTime<Tz>>, String> {
        let (schedule, tz) = self.build()?;
        Ok(schedule.after(&after.with_timezone(&tz)).take(n).collect())
    }
}
