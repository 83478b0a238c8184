//! Time for windows: the times a job file writes (`2026-11-01`, `-7d`, `now`), spans
//! (`1d`, `6h`), the windows between two times, and times as an API wants them.
//!
//! Windows are half-open, `[start, end)`: a record stamped exactly on a boundary belongs to
//! the window it starts, never to both. An API whose end is inclusive gets `end − one
//! granularity unit`, so the two requests still do not overlap.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::config::{Granularity, TimeFormat, WindowsConfig};

/// A time as a job file writes it: `now`, relative to now (`-7d`, `-36h`, `-15m`, `-30s`),
/// an ISO-8601 time with an offset, or a date (midnight UTC).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(span) = text.strip_prefix('-') {
        return parse_span(span).map(|d| now - d);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    Err(format!(
        "`{text}`: expected `now`, a time relative to now (`-7d`, `-6h`), an ISO-8601 time \
         (`2026-11-01T00:00:00Z`) or a date (`2026-11-01`)"
    ))
}

/// A span: a whole number and a unit, `d`, `h`, `m`, `s` or `ms` (`1d`, `6h`, `90s`).
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.chars().take_while(|c| c.is_ascii_digit()).count();
    let (number, unit) = text.split_at(digits);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit, e.g. `1d`, `6h`, `15m`"))?;
    let span = match unit {
        "d" => Duration::try_days(n),
        "h" => Duration::try_hours(n),
        "m" => Duration::try_minutes(n),
        "s" => Duration::try_seconds(n),
        "ms" => Duration::try_milliseconds(n),
        _ => None,
    };
    span.ok_or_else(|| {
        format!("`{text}`: expected a number and a unit (`d`, `h`, `m`, `s`, `ms`), e.g. `1d`")
    })
}

/// One window, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The windows of a run, frozen when it starts: a resumed run cuts the same ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPlan {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step_ms: i64,
}

impl WindowPlan {
    /// The plan of `config` at `now`: `start` less the lookback, truncated to the
    /// granularity, up to `end`, in steps. `start` and `end`, when given, replace the
    /// config's (a run by marks, a backfill).
    pub fn new(
        config: &WindowsConfig,
        now: DateTime<Utc>,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<WindowPlan, String> {
        let mut start = match start {
            Some(s) => s,
            None => parse_time(&config.start, now)?,
        };
        if let Some(l) = &config.lookback {
            start -= parse_span(l)?;
        }
        let end = match end {
            Some(e) => e,
            None => parse_time(&config.end, now)?,
        };
        let step = parse_span(&config.step)?;
        Ok(WindowPlan {
            start: truncate(start, config.granularity),
            end: truncate(end, config.granularity),
            step_ms: step.num_milliseconds().max(1),
        })
    }

    /// Windows in all; none when `end` is not after `start`.
    pub fn len(&self) -> u64 {
        let span = (self.end - self.start).num_milliseconds();
        if span <= 0 {
            return 0;
        }
        (span as u64).div_ceil(self.step_ms as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th window; the last ends at `end`, shorter than a step if need be.
    pub fn get(&self, i: u64) -> Window {
        let start = self.start + Duration::milliseconds(self.step_ms * i as i64);
        let end = (start + Duration::milliseconds(self.step_ms)).min(self.end);
        Window { start, end }
    }
}

pub fn truncate(t: DateTime<Utc>, granularity: Granularity) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    let unit = match granularity {
        Granularity::Millisecond => 1,
        Granularity::Second => 1_000,
        Granularity::Day => 86_400_000,
    };
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(unit)).unwrap_or(t)
}

/// A window's bounds as the API wants them: the start, and the end (less one unit when the
/// API's end is inclusive).
pub fn bounds(window: &Window, config: &WindowsConfig) -> (String, String) {
    let end = if config.end_inclusive {
        window.end
            - match config.granularity {
                Granularity::Millisecond => Duration::milliseconds(1),
                Granularity::Second => Duration::seconds(1),
                Granularity::Day => Duration::days(1),
            }
    } else {
        window.end
    };
    (
        format(window.start, config.format, config.granularity),
        format(end, config.format, config.granularity),
    )
}

fn format(t: DateTime<Utc>, format: TimeFormat, granularity: Granularity) -> String {
    match format {
        TimeFormat::Iso8601 => match granularity {
            Granularity::Millisecond => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            _ => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
        TimeFormat::Date => t.format("%Y-%m-%d").to_string(),
        TimeFormat::EpochSeconds => t.timestamp().to_string(),
        TimeFormat::EpochMillis => t.timestamp_millis().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(start: &str, end: &str, step: &str) -> WindowsConfig {
        WindowsConfig {
            start: start.into(),
            initial: None,
            end: end.into(),
            step: step.into(),
            lookback: None,
            granularity: Granularity::Second,
            start_param: None,
            end_param: None,
            format: TimeFormat::Iso8601,
            end_inclusive: false,
        }
    }

    #[test]
    fn windows_are_half_open_and_cover_the_span_once() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 10, 30, 0).unwrap();
        let plan = WindowPlan::new(&config("2026-11-29", "now", "1d"), now, None, None).unwrap();
        assert_eq!(plan.len(), 3);
        let w: Vec<Window> = (0..plan.len()).map(|i| plan.get(i)).collect();
        assert_eq!(w[0].end, w[1].start);
        assert_eq!(w[1].end, w[2].start);
        assert_eq!(w[2].end, now, "the last window ends at `end`, shorter");
        assert_eq!(
            w[0].start,
            Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn relative_times_lookback_and_inclusive_ends() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 10, 30, 15).unwrap();
        let mut c = config("-2d", "-1h", "6h");
        c.lookback = Some("6h".into());
        let plan = WindowPlan::new(&c, now, None, None).unwrap();
        assert_eq!(
            plan.start,
            Utc.with_ymd_and_hms(2026, 11, 29, 4, 30, 15).unwrap()
        );
        assert_eq!(
            plan.end,
            Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 15).unwrap()
        );
        c.end_inclusive = true;
        c.granularity = Granularity::Day;
        c.format = TimeFormat::Date;
        let day = Window {
            start: Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        };
        assert_eq!(
            bounds(&day, &c),
            ("2026-11-30".to_string(), "2026-11-30".to_string())
        );
        c.format = TimeFormat::EpochMillis;
        c.granularity = Granularity::Millisecond;
        assert_eq!(
            bounds(&day, &c).1,
            (day.end.timestamp_millis() - 1).to_string()
        );
    }

    #[test]
    fn spans_and_times_that_are_not() {
        assert!(parse_span("1w").is_err());
        assert!(parse_span("d").is_err());
        assert_eq!(parse_span("90s").unwrap(), Duration::seconds(90));
        assert!(parse_time("yesterday", Utc::now()).is_err());
    }
}
