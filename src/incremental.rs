//! Incremental syncs: each run fetches only what is new since the last successful one.
//!
//! A job names a cursor field of its records (`updated_at`, `id`) and the query parameter the
//! API filters on. The highest value of the field in a run — its high-water mark — is kept in
//! the job's state; the next run sends it (less an optional lookback margin, for records that
//! arrive late) and so gets only newer records. The mark moves only when a run completes.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
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
}

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
    }

    /// The value to send for a new run, from the newest run that left a mark.
    pub fn value(&self, history: &[RunRecord]) -> Result<Option<String>, String> {
        let Some(mark) = history.iter().find_map(|r| r.high_water.clone()) else {
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
            serde_json::Value::String(s) => {
                let t = chrono::DateTime::parse_from_rfc3339(&s).map_err(|e| {
                    format!(
                        "the mark `{s}` of `{}` is not an ISO-8601 time ({e}), so a lookback \
                         cannot be applied",
                        self.cursor_field
                    )
                })?;
                let back =
                    t.with_timezone(&chrono::Utc) - chrono::Duration::seconds(self.lookback as i64);
                back.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            }
            other => other.to_string(),
        }))
    }
}

/// The highest value of `field` in a batch, if the column exists and has values.
pub fn column_max(batch: &RecordBatch, field: &str) -> Option<serde_json::Value> {
    let column = batch.column_by_name(field)?;
    match column.data_type() {
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .max()
            .map(Into::into),
        DataType::Float64 => column
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .reduce(f64::max)
            .map(Into::into),
        DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .flatten()
            .max()
            .map(|s| s.to_string().into()),
        _ => None,
    }
}

/// The higher of two marks (numbers numerically, text in order: ISO-8601 UTC times sort).
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
            x.as_f64().unwrap_or(f64::MIN) > y.as_f64().unwrap_or(f64::MIN)
        }
        (serde_json::Value::String(x), serde_json::Value::String(y)) => x > y,
        _ => false,
    }
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
        assert_eq!(higher(Some(3.into()), Some(10.into())), Some(10.into()));
        assert_eq!(higher(None, Some("b".into())), Some("b".into()));
    }
}
