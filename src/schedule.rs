//! Schedules as users write them: 5-field cron (crontab, Kubernetes) or `@daily`-style, plus
//! an IANA time zone.
//!
//! The `cron` crate wants 6 fields (seconds first) and numbers days of the week 1-7 from
//! Sunday, where crontab numbers them 0-7 from Sunday (0 and 7 both Sunday). [`translate`]
//! bridges the two so that `0 3 * * 1-5` means what the user's crontab would mean.

use std::str::FromStr;

use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigErrors};

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
        if let Err(e) = parse(&self.cron) {
            errors.push(ConfigError::field("schedule.cron", e));
        }
        if let Err(e) = parse_timezone(&self.timezone) {
            errors.push(ConfigError::field("schedule.timezone", e));
        }
    }

    /// The schedule and its time zone, ready to iterate.
    pub fn build(&self) -> Result<(cron::Schedule, Tz), String> {
        Ok((parse(&self.cron)?, parse_timezone(&self.timezone)?))
    }
}

impl ScheduleConfig {
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

pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        format!("`{name}` is not an IANA time zone: expected e.g. `UTC`, `Europe/Madrid`, `America/New_York`")
    })
}

/// Parses a user's cron expression.
pub fn parse(expr: &str) -> Result<cron::Schedule, String> {
    let translated = translate(expr)?;
    cron::Schedule::from_str(&translated)
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Translates a 5-field expression to the `cron` crate's 6-field form.
pub fn translate(expr: &str) -> Result<String, String> {
    let expr = expr.trim();
    if let Some(macro_name) = expr.strip_prefix('@') {
        return match macro_name {
            "yearly" | "annually" => Ok("@yearly".into()),
            "monthly" | "weekly" | "daily" | "hourly" => Ok(format!("@{macro_name}")),
            "midnight" => Ok("@daily".into()),
            _ => Err(format!(
                "`{expr}` is not supported: expected @hourly, @daily, @weekly, @monthly or \
                 @yearly, or 5 fields"
            )),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "`{expr}` has {} fields: expected 5 (minute hour day-of-month month day-of-week), \
             e.g. `30 2 * * *`",
            fields.len()
        ));
    }
    let (dom, dow) = (fields[2], fields[4]);
    if dom != "*" && dom != "?" && dow != "*" && dow != "?" {
        // crontab fires when either matches; the cron crate when both do.
        return Err(format!(
            "`{expr}` restricts both day-of-month and day-of-week, which crontab reads as \
             'either' and other schedulers as 'both': split it into two jobs"
        ));
    }
    let dow = translate_day_of_week(dow).map_err(|e| format!("`{expr}`: day-of-week {e}"))?;
    Ok(format!(
        "0 {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], dow
    ))
}

/// Crontab's day-of-week field (0-7, Sunday = 0 or 7, names) as a list of day names.
fn translate_day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: usize = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{item}`: step `{s}` is not a positive number"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day_number(a)?, day_number(b)?)
        } else {
            let a = day_number(range)?;
            // `a/s` runs from a to the end of the week.
            (a, if item.contains('/') { 6 } else { a })
        };
        if lo > hi {
            return Err(format!("`{item}`: range runs backwards"));
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(DAY_NAMES
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(","))
}

fn day_number(s: &str) -> Result<usize, String> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!(
                "`{s}` is out of range: expected 0-7 (0 and 7 are Sunday)"
            ))
        };
    }
    let upper = s.to_ascii_uppercase();
    DAY_NAMES
        .iter()
        .position(|n| upper == *n)
        .ok_or_else(|| format!("`{s}` is not a day: expected 0-7 or SUN-SAT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Weekday};

    #[test]
    fn translations() {
        let cases = [
            ("30 2 * * *", "0 30 2 * * *"),
            ("0 3 * * 1-5", "0 0 3 * * MON,TUE,WED,THU,FRI"),
            ("0 3 * * 0", "0 0 3 * * SUN"),
            ("0 3 * * 7", "0 0 3 * * SUN"),
            ("0 3 * * 5-7", "0 0 3 * * SUN,FRI,SAT"),
            ("0 3 * * */2", "0 0 3 * * SUN,TUE,THU,SAT"),
            ("0 3 * * sat,sun", "0 0 3 * * SUN,SAT"),
            ("*/15 * 1 * *", "0 */15 * 1 * *"),
            ("@daily", "@daily"),
            ("@midnight", "@daily"),
        ];
        for (input, want) in cases {
            assert_eq!(translate(input).unwrap(), want, "{input}");
            parse(input).unwrap();
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "* * * *",
            "0 0 0 * * *",
            "0 3 * * 8",
            "0 3 1 * 1",
            "@reboot",
            "61 * * * *",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekdays_fire_on_weekdays() {
        let s = parse("0 3 * * 1-5").unwrap();
        let tz: Tz = "Europe/Madrid".parse().unwrap();
        let start = tz.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(); // a Friday
        let next: Vec<_> = s.after(&start).take(3).collect();
        assert_eq!(next[0].weekday(), Weekday::Mon);
        assert_eq!(next[1].weekday(), Weekday::Tue);
        assert_eq!(next[2].weekday(), Weekday::Wed);
    }
}
