//! Incremental syncs: each run fetches only what is new since the last successful one.
//!
//! A job names a cursor field of its records (`updated_at`, `id`) and the query parameter the
//! API filters on. The highest value of the field in a run — its high-water mark — is kept in
//! the job's state; the next run sends it (less an optional lookback margin, for records that
//! arrive late) and so gets only newer records. The mark moves only when a run completes.

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::checkpoint::RunRecord;
use crate::vocab::{ConfigError, ConfigErrors};

/// Fetch only records newer than the last successful run's.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// The record field whose highest value marks how far a run got: an ISO-8601 time in UTC
    /// (`updated_at`) or a number (`id`).
    pub cursor_field: String,
    /// The query parameter the mark is sent in, e.g. `updated_since`.
    pub param: String,
    /// Re-fetch a margin before the mark, for records that arrive late: seconds for times,
    /// units for numbers.
    #[serde(default)]
    pub lookback: u64,
    /// The value sent on the very first run; without it the first run fetches everything.
    #[serde(default)]
    pub initial: Option<String>,
    /// How far past the run's start a time may be and still count (the server's clock may
    /// run ahead), in seconds. A later one (`2099-01-01`, a test record, a clock bug) is an
    /// anomaly: warned about, counted, and left out of the mark, so that the next run still
    /// asks from a real time.
    #[serde(default = "default_future_tolerance")]
    pub future_tolerance_secs: u64,
}

fn default_future_tolerance() -> u64 {
    3600
}

/// The most a server's clock may be trusted to run ahead: a year.
const MAX_FUTURE_TOLERANCE: u64 = 366 * 86_400;

impl IncrementalConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if self.cursor_field.is_empty() {
            errors.push(ConfigError::field(
                "incremental.cursor_field",
                "expected a field name, e.g. `updated_at`",
            ));
        }
        if self.param.is_empty() {
            errors.push(ConfigError::field(
                "incremental.param",
                "expected a query parameter name, e.g. `updated_since`",
            ));
        }
        if self.future_tolerance_secs > MAX_FUTURE_TOLERANCE {
            errors.push(ConfigError::field(
                "incremental.future_tolerance_secs",
                format!(
                    "{} is out of range: expected 0 to {MAX_FUTURE_TOLERANCE} (a year)",
                    self.future_tolerance_secs
                ),
            ));
        }
    }

    /// A text mark less the lookback: seconds for a time, whole days (rounded up) for a
    /// date, units for a decimal.
    fn looked_back(&self, mark: &str) -> Result<String, String> {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(mark) {
            let back =
                t.with_timezone(&chrono::Utc) - chrono::Duration::seconds(self.lookback as i64);
            return Ok(back.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(mark, "%Y-%m-%d") {
            let days = self.lookback.div_ceil(86_400) as i64;
            return Ok((d - chrono::Duration::days(days))
                .format("%Y-%m-%d")
                .to_string());
        }
        if decimal(mark).is_some() {
            let (int, frac) = mark.split_once('.').unwrap_or((mark, ""));
            let scale = frac.len() as u32;
            let digits: i128 = format!("{int}{frac}").parse().map_err(|e| format!("{e}"))?;
            let back = digits - self.lookback as i128 * 10i128.pow(scale);
            return Ok(decimal_text(back, scale as i8));
        }
        Err(format!(
            "the mark `{mark}` of `{}` is neither an ISO-8601 time, a date nor a number, so a \
             lookback cannot be applied",
            self.cursor_field
        ))
    }

    /// The value to send for a new run, from the newest run that left a mark.
    pub fn value(&self, history: &[RunRecord]) -> Result<Option<String>, String> {
        self.value_from(history.iter().find_map(|r| r.high_water.clone()))
    }

    /// The value to send after a mark (`None`: the first run, `initial`), less the lookback.
    pub fn value_from(&self, mark: Option<serde_json::Value>) -> Result<Option<String>, String> {
        let Some(mark) = mark else {
            return Ok(self.initial.clone());
        };
        Ok(Some(match mark {
            serde_json::Value::Number(n) if self.lookback == 0 => n.to_string(),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => (i - self.lookback as i64).to_string(),
                (None, Some(f)) => (f - self.lookback as f64).to_string(),
                _ => n.to_string(),
            },
            serde_json::Value::String(s) if self.lookback == 0 => s,
            serde_json::Value::String(s) => self.looked_back(&s)?,
            other => other.to_string(),
        }))
    }
}

/// A batch's mark: the highest value of the cursor field among the records that are not
/// past the limit, and those that are (their row and value).
#[derive(Debug, Default, PartialEq)]
pub struct BatchMark {
    pub max: Option<serde_json::Value>,
    pub future: Vec<(usize, String)>,
}

/// The mark of `batch` (see [`column_max`]), leaving out times after `not_after` (a time, a
/// date after its day, ISO-8601 text after it): those are anomalies, not progress.
pub fn column_mark(
    batch: &RecordBatch,
    field: &str,
    not_after: Option<chrono::DateTime<chrono::Utc>>,
) -> BatchMark {
    let all = || BatchMark {
        max: column_max(batch, field),
        future: Vec::new(),
    };
    let (Some(limit), Some(column)) = (not_after, batch.column_by_name(field)) else {
        return all();
    };
    let future: Vec<bool> = match column.data_type() {
        DataType::Timestamp(unit, _) => {
            let limit = match unit {
                TimeUnit::Second => limit.timestamp(),
                TimeUnit::Millisecond => limit.timestamp_millis(),
                TimeUnit::Microsecond => limit.timestamp_micros(),
                TimeUnit::Nanosecond => limit.timestamp_nanos_opt().unwrap_or(i64::MAX),
            };
            let Ok(c) = arrow_cast::cast(column, &DataType::Int64) else {
                return all();
            };
            c.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.is_some_and(|v| v > limit))
                .collect()
        }
        DataType::Date32 | DataType::Date64 => {
            let Ok(c) = arrow_cast::cast(column, &DataType::Date32) else {
                return all();
            };
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
            let limit = (limit.date_naive() - epoch).num_days();
            c.as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.is_some_and(|d| d as i64 > limit))
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 => {
            let Ok(c) = arrow_cast::cast(column, &DataType::Utf8) else {
                return all();
            };
            c.as_string::<i32>()
                .iter()
                .map(|t| {
                    t.and_then(|t| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .or_else(|_| {
                                chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%#z")
                            })
                            .ok()
                    })
                    .is_some_and(|t| t > limit)
                })
                .collect()
        }
        _ => return all(),
    };
    if !future.contains(&true) {
        return all();
    }
    let keep = arrow_array::BooleanArray::from(future.iter().map(|f| !f).collect::<Vec<_>>());
    let max = arrow_select::filter::filter_record_batch(batch, &keep)
        .ok()
        .and_then(|kept| column_max(&kept, field));
    let future = future
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(row, _)| {
            let text = arrow_cast::display::array_value_to_string(column, row);
            (row, text.unwrap_or_default())
        })
        .collect();
    BatchMark { max, future }
}

/// The highest value of `field` in a batch, if the column exists and has values: integers
/// and floats as JSON numbers; times as ISO-8601 UTC text (`2026-01-01T00:00:00.123Z`, the
/// column's precision kept); dates as `YYYY-MM-DD`; decimals and text as text.
pub fn column_max(batch: &RecordBatch, field: &str) -> Option<serde_json::Value> {
    let column = batch.column_by_name(field)?;
    let ints = |c: &dyn Array| -> Option<serde_json::Value> {
        // Every integer type fits one of i64 and u64 after a cast.
        if matches!(c.data_type(), DataType::UInt64) {
            let c = c.as_primitive::<UInt64Type>();
            return c.iter().flatten().max().map(Into::into);
        }
        let c = arrow_cast::cast(c, &DataType::Int64).ok()?;
        c.as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .max()
            .map(Into::into)
    };
    match column.data_type() {
        t if t.is_integer() => ints(column.as_ref()),
        DataType::Float64 | DataType::Float32 => {
            let c = arrow_cast::cast(column, &DataType::Float64).ok()?;
            c.as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .reduce(f64::max)
                .map(Into::into)
        }
        DataType::Timestamp(unit, _) => {
            // The values count from the epoch in UTC whatever the column's time zone.
            let c = arrow_cast::cast(column, &DataType::Int64).ok()?;
            let max = c.as_primitive::<Int64Type>().iter().flatten().max()?;
            let nanos = match unit {
                TimeUnit::Second => max as i128 * 1_000_000_000,
                TimeUnit::Millisecond => max as i128 * 1_000_000,
                TimeUnit::Microsecond => max as i128 * 1_000,
                TimeUnit::Nanosecond => max as i128,
            };
            let at = chrono::DateTime::from_timestamp(
                nanos.div_euclid(1_000_000_000) as i64,
                nanos.rem_euclid(1_000_000_000) as u32,
            )?;
            Some(
                at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    .into(),
            )
        }
        DataType::Date32 | DataType::Date64 => {
            let c = arrow_cast::cast(column, &DataType::Date32).ok()?;
            let days = c.as_primitive::<Date32Type>().iter().flatten().max()?;
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::Duration::days(days as i64))?;
            Some(date.format("%Y-%m-%d").to_string().into())
        }
        DataType::Decimal128(_, scale) => {
            let c = column.as_primitive::<Decimal128Type>();
            let max = c.iter().flatten().max()?;
            Some(decimal_text(max, *scale).into())
        }
        DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .flatten()
            .max()
            .map(|s| s.to_string().into()),
        DataType::LargeUtf8 => column
            .as_string::<i64>()
            .iter()
            .flatten()
            .max()
            .map(|s| s.to_string().into()),
        _ => None,
    }
}

/// A decimal's digits and scale as text: `12345`, 2 -> `123.45`.
fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return (value * 10i128.pow(scale.unsigned_abs() as u32)).to_string();
    }
    let scale = scale as u32;
    let sign = if value < 0 { "-" } else { "" };
    let digits = value.unsigned_abs();
    let unit = 10u128.pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        digits / unit,
        digits % unit,
        width = scale as usize
    )
}

/// The higher of two marks: numbers numerically; text that reads as ISO-8601 times as
/// instants, as dates by date, as decimals numerically; other text in order.
pub fn higher(
    a: Option<serde_json::Value>,
    b: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if greater(&b, &a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn greater(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x > y,
                (_, _, Some(x), Some(y)) => x > y,
                _ => x.as_f64().unwrap_or(f64::MIN) > y.as_f64().unwrap_or(f64::MIN),
            }
        }
        (serde_json::Value::String(x), serde_json::Value::String(y)) => {
            let time = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            if let (Some(x), Some(y)) = (time(x), time(y)) {
                return x > y;
            }
            if let (Some(x), Some(y)) = (decimal(x), decimal(y)) {
                return x > y;
            }
            x > y
        }
        _ => false,
    }
}

/// Text that reads as a plain decimal (`-12.5`), as a value that orders numerically:
/// (sign, integer digits without leading zeros, fraction digits without trailing zeros).
fn decimal(text: &str) -> Option<(bool, usize, String, String)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0').to_string();
    let frac = frac.trim_end_matches('0').to_string();
    // Compare positives by (length of the integer part, the digits); a negative reverses.
    let key = (!negative, int.len(), int, frac);
    Some(if negative {
        // Reversing the order of negatives: flip the comparison of their magnitudes.
        (false, usize::MAX - key.1, invert(&key.2), invert(&key.3))
    } else {
        key
    })
}

/// Digits mapped 0<->9, so that a larger magnitude sorts lower (for negative decimals).
fn invert(digits: &str) -> String {
    digits
        .bytes()
        .map(|b| (b'9' - b + b'0') as char)
        .chain(std::iter::once(':'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mark: serde_json::Value) -> RunRecord {
        RunRecord {
            run_id: "r".into(),
            finished_at: chrono::Utc::now(),
            snapshot_dir: crate::storage::Location::parse("d").unwrap(),
            records: 1,
            high_water: Some(mark),
        }
    }

    #[test]
    fn marks_and_lookback() {
        let mut c = IncrementalConfig {
            cursor_field: "updated_at".into(),
            param: "since".into(),
            lookback: 0,
            initial: Some("2026-01-01T00:00:00Z".into()),
            future_tolerance_secs: 3600,
        };
        assert_eq!(
            c.value(&[]).unwrap().as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        let h = [record("2026-03-01T10:00:00Z".into())];
        assert_eq!(
            c.value(&h).unwrap().as_deref(),
            Some("2026-03-01T10:00:00Z")
        );
        c.lookback = 3600;
        assert_eq!(
            c.value(&h).unwrap().as_deref(),
            Some("2026-03-01T09:00:00Z")
        );
        assert_eq!(
            c.value(&[record(100.into())]).unwrap().as_deref(),
            Some("-3500")
        );
        assert!(c.value(&[record("yesterday".into())]).is_err());
        // Dates go back by whole days, decimals by units.
        assert_eq!(
            c.value(&[record("2026-03-01".into())]).unwrap().as_deref(),
            Some("2026-02-28")
        );
        assert_eq!(
            c.value(&[record("12.50".into())]).unwrap().as_deref(),
            Some("-3587.50")
        );
        assert_eq!(higher(Some(3.into()), Some(10.into())), Some(10.into()));
        assert_eq!(higher(None, Some("b".into())), Some("b".into()));
    }

    #[test]
    fn every_orderable_type_gives_a_mark_in_order() {
        use arrow_array::{
            Date32Array, Decimal128Array, Int32Array, RecordBatch, TimestampMicrosecondArray,
        };
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter([
            (
                "at",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_767_225_600_000_001),
                        None,
                        Some(1_767_225_599_000_000),
                    ])
                    .with_timezone("UTC"),
                ) as arrow_array::ArrayRef,
            ),
            (
                "day",
                Arc::new(Date32Array::from(vec![20_454, 20_000, 20_454])),
            ),
            (
                "price",
                Arc::new(
                    Decimal128Array::from(vec![1999, -5, 100_050])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ),
            ("n", Arc::new(Int32Array::from(vec![3, 9, -1]))),
        ])
        .unwrap();
        assert_eq!(
            column_max(&batch, "at"),
            Some("2026-01-01T00:00:00.000001Z".into())
        );
        assert_eq!(column_max(&batch, "day"), Some("2026-01-01".into()));
        assert_eq!(column_max(&batch, "price"), Some("1000.50".into()));
        assert_eq!(column_max(&batch, "n"), Some(9.into()));
        // Times of different precision, decimals of different lengths, negatives.
        let h = |a: &str, b: &str| higher(Some(a.into()), Some(b.into())).unwrap();
        assert_eq!(
            h("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:00.5Z"
        );
        assert_eq!(h("9.99", "10.5"), "10.5");
        assert_eq!(h("-1.5", "-1.55"), "-1.5");
        assert_eq!(h("-2", "1"), "1");
    }
}
