//! When jobs run: schedules as users write them (a 5-field cron expression and an IANA time
//! zone). The loop of `apisnap schedule`, which runs them, is the `scheduler` module.
//!
//! - [`expr`]: the one parser of cron expressions, rendered for the `cron` crate, systemd and
//!   Kubernetes.
//! - [`plan`]: which jobs are due at a given time; pure, so it is tested with any clock.

pub mod expr;
pub mod plan;

use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, ConfigErrors};

pub use expr::{CronFields, parse, parse_timezone, translate};
pub use plan::{Decision, JobSchedule, Plan, Why};

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
