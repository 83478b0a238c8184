//! Cron expressions as users write them: 5 fields (crontab, Kubernetes) or `@daily`-style.
//!
//! One parser reads the user's expression into [`CronFields`], every field expanded to the
//! values it matches; each scheduler gets its own rendering of that: the `cron` crate's
//! 6-field form (seconds first, days of the week by name, since the crate numbers them 1-7
//! from Sunday where crontab uses 0-7), systemd's `OnCalendar=` and Kubernetes' `schedule`.
//! So `0 3 * * 1-5` means Monday to Friday to all three.

use std::str::FromStr;

pub use crate::vocab::parse_timezone;

/// Parses a user's cron expression for the `cron` crate.
pub fn parse(expr: &str) -> Result<cron::Schedule, String> {
    let translated = translate(expr)?;
    cron::Schedule::from_str(&translated)
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))
}

/// Translates a 5-field expression to the `cron` crate's 6-field form.
pub fn translate(expr: &str) -> Result<String, String> {
    let f = CronFields::parse(expr)?;
    let days: Vec<String> = f
        .days_of_week
        .iter()
        .map(|d| DAY_NAMES[*d as usize].to_string())
        .collect();
    Ok(format!(
        "0 {} {} {} {} {}",
        numbers(&f.minutes, 0, 59),
        numbers(&f.hours, 0, 23),
        numbers(&f.days_of_month, 1, 31),
        numbers(&f.months, 1, 12),
        if f.days_of_week.len() == 7 {
            "*".into()
        } else {
            days.join(",")
        }
    ))
}

/// `*` for a full field, else the values as a comma list.
fn numbers(values: &[u8], lo: u8, hi: u8) -> String {
    if values.len() == usize::from(hi - lo + 1) {
        return "*".into();
    }
    values
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// A 5-field expression with every field expanded to the sorted values it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronFields {
    pub minutes: Vec<u8>,
    pub hours: Vec<u8>,
    pub days_of_month: Vec<u8>,
    pub months: Vec<u8>,
    /// 0 = Sunday ... 6 = Saturday (crontab's 7 is folded into 0).
    pub days_of_week: Vec<u8>,
}

impl CronFields {
    /// Reads `minute hour day-of-month month day-of-week`, or a macro.
    pub fn parse(expr: &str) -> Result<CronFields, String> {
        let expr = expr.trim();
        let expanded = match expr.strip_prefix('@') {
            Some("yearly" | "annually") => "0 0 1 1 *",
            Some("monthly") => "0 0 1 * *",
            Some("weekly") => "0 0 * * 0",
            Some("daily" | "midnight") => "0 0 * * *",
            Some("hourly") => "0 * * * *",
            Some(_) => {
                return Err(format!(
                    "`{expr}` is not supported: expected @hourly, @daily, @weekly, @monthly or \
                     @yearly, or 5 fields"
                ));
            }
            None => expr,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "`{expr}` has {} fields: expected 5 (minute hour day-of-month month \
                 day-of-week), e.g. `30 2 * * *`",
                fields.len()
            ));
        }
        let (dom, dow) = (fields[2], fields[4]);
        if !is_any(dom) && !is_any(dow) {
            // crontab fires when either matches; the cron crate and systemd when both do.
            return Err(format!(
                "`{expr}` restricts both day-of-month and day-of-week, which crontab reads as \
                 'either' and other schedulers as 'both': split it into two jobs"
            ));
        }
        let at = |what: &str, e: String| format!("`{expr}`: {what} {e}");
        let mut days_of_week =
            expand(dow, 0, 7, &DAY_NAMES, 0).map_err(|e| at("day-of-week", e))?;
        // crontab's 7 is Sunday, like 0.
        if days_of_week.contains(&7) {
            days_of_week.retain(|d| *d != 7);
            if !days_of_week.contains(&0) {
                days_of_week.insert(0, 0);
            }
        }
        Ok(CronFields {
            minutes: expand(fields[0], 0, 59, &[], 0).map_err(|e| at("minute", e))?,
            hours: expand(fields[1], 0, 23, &[], 0).map_err(|e| at("hour", e))?,
            days_of_month: expand(dom, 1, 31, &[], 0).map_err(|e| at("day-of-month", e))?,
            months: expand(fields[3], 1, 12, &MONTH_NAMES, 1).map_err(|e| at("month", e))?,
            days_of_week,
        })
    }

    pub fn every_day_of_month(&self) -> bool {
        self.days_of_month.len() == 31
    }

    pub fn every_day_of_week(&self) -> bool {
        self.days_of_week.len() == 7
    }
}

fn is_any(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Expands one field: `*`, `?`, `N`, `N-M`, each with an optional `/step`, comma-separated;
/// `names[i]` stands for `first_name + i`.
fn expand(field: &str, lo: u8, hi: u8, names: &[&str], first_name: u8) -> Result<Vec<u8>, String> {
    let number = |s: &str| -> Result<u8, String> {
        let upper = s.to_ascii_uppercase();
        let n = match names.iter().position(|n| *n == upper) {
            Some(i) => i as u8 + first_name,
            None => s.parse::<u8>().map_err(|_| {
                if names.is_empty() {
                    format!("`{s}` is not a number")
                } else {
                    format!(
                        "`{s}` is not a number or a name ({}-{})",
                        names[0],
                        names[names.len() - 1]
                    )
                }
            })?,
        };
        if n < lo || n > hi {
            return Err(format!("`{s}` is out of range: expected {lo}-{hi}"));
        }
        Ok(n)
    };
    let mut on = vec![false; usize::from(hi) + 1];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u8>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{item}`: step `{s}` is not a positive number"))?,
            ),
            None => (item, 1),
        };
        let (a, b) = if is_any(range) {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a)?, number(b)?)
        } else {
            let a = number(range)?;
            // `a/s` runs from a to the end of the range.
            (a, if item.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(format!("`{item}`: the range runs backwards"));
        }
        for v in (a..=b).step_by(usize::from(step)) {
            on[usize::from(v)] = true;
        }
    }
    // A full day-of-week field keeps both 0 and 7; the caller folds 7 into 0.
    Ok((lo..=hi).filter(|v| on[usize::from(*v)]).collect())
}

/// Sorted values as a comma list in which runs of three or more become ranges:
/// `[1,2,3,5]` -> `1..3,5` with `item` = to_string and `range` = `..`.
pub fn list(values: &[u8], item: impl Fn(u8) -> String, range: &str) -> String {
    let mut runs: Vec<(u8, u8)> = Vec::new();
    for &v in values {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == v => *end = v,
            _ => runs.push((v, v)),
        }
    }
    runs.iter()
        .map(|&(a, b)| match b - a {
            0 => item(a),
            1 => format!("{},{}", item(a), item(b)),
            _ => format!("{}{range}{}", item(a), item(b)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The step of sorted values that form a progression of three or more (`0,15,30,45` -> 15).
pub fn step(values: &[u8]) -> Option<u8> {
    let step = *values.get(1)? - values[0];
    (values.len() >= 3 && step > 1 && values.windows(2).all(|w| w[1] - w[0] == step))
        .then_some(step)
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
            ("*/15 * 1 * *", "0 0,15,30,45 * 1 * *"),
            ("0 0 1 jan,jul *", "0 0 0 1 1,7 *"),
            (
                "5-20/5 8-18 * * *",
                "0 5,10,15,20 8,9,10,11,12,13,14,15,16,17,18 * * *",
            ),
            ("@daily", "0 0 0 * * *"),
            ("@midnight", "0 0 0 * * *"),
            ("@weekly", "0 0 0 * * SUN"),
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
            "0 0 0 * *",
            "0 0 * 13 *",
            "10-5 * * * *",
            "*/0 * * * *",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekdays_fire_on_weekdays() {
        let s = parse("0 3 * * 1-5").unwrap();
        let tz: chrono_tz::Tz = "Europe/Madrid".parse().unwrap();
        let start = tz.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(); // a Friday
        let next: Vec<_> = s.after(&start).take(3).collect();
        assert_eq!(next[0].weekday(), Weekday::Mon);
        assert_eq!(next[1].weekday(), Weekday::Tue);
        assert_eq!(next[2].weekday(), Weekday::Wed);
    }
}
