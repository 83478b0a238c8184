//! Slices: one job's list cut into partitions (an account, a store, a parent record) and
//! date windows, each slice the job's request with its values filled in, fetched and
//! checkpointed on its own.
//!
//! - [`config`]: `[partitions]`, `[windows]`, `[slices]`.
//! - [`window`]: times, spans and the half-open windows between them.
//! - [`progress`]: the frozen plan of a run and where each slice stands, as the checkpoint
//!   keeps them.
//! - [`partition`]: partitions read from another request of the provider.
//! - [`template`]: a slice's request: `{partition.NAME}`, `{window.start}`,
//!   `{window.end}` in the path, query, headers and body.
//!
//! A slice is `partition × window`: every partition gets every window. The plan is fixed
//! when a run starts, so a resumed run cuts the same slices and skips the finished ones.

pub mod config;
pub mod partition;
pub mod progress;
pub mod template;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, StringArray};
use arrow_schema::{DataType, Field, FieldRef};

pub use config::{PartitionsConfig, SlicesConfig, WindowsConfig};
pub use partition::PartitionSource;
pub use progress::{SlicePlan, SliceProgress};
pub use template::Template;
pub use window::WindowPlan;

use crate::fetch::Target;

/// How one job is sliced: the runtime form of its `[partitions]`, `[windows]` and
/// `[slices]`.
pub struct Slicing {
    partitions: Option<PartitionsConfig>,
    /// Where partitions come from when another request lists them.
    source: Option<PartitionSource>,
    windows: Option<WindowsConfig>,
    template: Template,
    /// Slices fetched at once.
    pub concurrency: usize,
    /// Of the settings a plan depends on, for checkpoints.
    fingerprint: String,
}

/// The most slices one run takes.
const MAX_SLICES: u64 = 10_000_000;

impl Slicing {
    pub fn new(
        partitions: Option<PartitionsConfig>,
        source: Option<PartitionSource>,
        windows: Option<WindowsConfig>,
        template: Template,
        concurrency: usize,
        layout: &str,
    ) -> Slicing {
        let fingerprint = {
            use sha2::{Digest, Sha256};
            // What shapes the requests; the range of windows is in the frozen plan (and a
            // backfill's in its name), so a changed `start` or `end` does not stop a resume.
            let windows = windows.as_ref().map(|w| {
                serde_json::json!({
                    "step": w.step,
                    "granularity": w.granularity,
                    "format": w.format,
                    "start_param": w.start_param,
                    "end_param": w.end_param,
                    "end_inclusive": w.end_inclusive,
                })
            });
            let settings = serde_json::json!({
                "partitions": partitions,
                "windows": windows,
                "path": template.path,
                "query": template.query,
                "headers": template.headers,
                "body": template.body,
                "layout": layout,
            });
            format!("{:x}", Sha256::digest(settings.to_string().as_bytes()))
        };
        Slicing {
            partitions,
            source,
            windows,
            template,
            concurrency,
            fingerprint,
        }
    }

    /// Whether the job has date windows (a backfill needs them).
    pub fn windowed(&self) -> bool {
        self.windows.is_some()
    }

    /// `t` truncated to the windows' granularity (a backfill's range, so that the same
    /// command names the same backfill all day).
    pub fn truncate(&self, t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        match &self.windows {
            Some(w) => window::truncate(t, w.granularity),
            None => t,
        }
    }

    /// Keeps, of `plan`, the partitions of shard `index` of `count`: each partition's by a
    /// hash of its values, so that a shard's partitions do not depend on the others (nor
    /// on the order the API lists them in). The others' windows count as not to fetch.
    pub fn take_shard(plan: &mut SlicePlan, index: u64, count: u64) -> Result<(), String> {
        if !plan.partitioned {
            return Err(
                "`--shard` splits a sliced job by its partitions, and this one has none: run \
                 it whole (`slices.concurrency` fetches windows at once)"
                    .into(),
            );
        }
        let windows = plan.windows.as_ref().map_or(1, |w| w.len());
        let mut first = plan.first_windows.clone();
        first.resize(plan.partitions.len(), 0);
        for (p, values) in plan.partitions.iter().enumerate() {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(partition_key(Some(values)).as_bytes());
            let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
            if hash % count != index {
                first[p] = windows;
            }
        }
        plan.first_windows = first;
        Ok(())
    }

    /// Requests made to list the partitions.
    pub fn requests(&self) -> u64 {
        self.source.as_ref().map_or(0, |s| s.requests())
    }

    /// Of the settings the slices depend on: the partitions, the windows, the request.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The slices of a run starting `now`: the partitions listed (asking the API if they
    /// come from a request) and the windows cut — from the config's `start`, from each
    /// partition's mark (`start = "mark"`), or exactly `[from, to)` for a backfill. With
    /// the plan, the slices whose window ends before their partition's mark, which the run
    /// counts as done.
    pub async fn plan(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        marks: &Marks,
        backfill: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    ) -> Result<SlicePlan, String> {
        let partitions = match (&self.partitions, &self.source) {
            (None, _) => Vec::new(),
            (Some(PartitionsConfig::List { values, name, .. }), _) => values
                .iter()
                .map(|v| match (v, name) {
                    (serde_json::Value::Object(map), _) => {
                        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                    }
                    (scalar, Some(name)) => BTreeMap::from([(name.clone(), scalar.clone())]),
                    (scalar, None) => BTreeMap::from([("value".to_string(), scalar.clone())]),
                })
                .collect(),
            (Some(PartitionsConfig::Endpoint { .. }), Some(source)) => source.list().await?,
            (Some(PartitionsConfig::Endpoint { .. }), None) => {
                return Err("the partitions' request was not built".into());
            }
        };
        // The same partition twice would write its records twice.
        let mut seen = std::collections::HashSet::new();
        let listed = partitions.len();
        let partitions: Vec<_> = partitions
            .into_iter()
            .filter(|p| seen.insert(serde_json::to_string(p).unwrap_or_default()))
            .collect();
        if partitions.len() < listed {
            tracing::warn!(
                listed,
                distinct = partitions.len(),
                "partitions listed more than once are fetched once"
            );
        }
        if self.partitions.is_some() && partitions.is_empty() {
            tracing::warn!("no partitions: the snapshot will be empty");
        }
        if let Some(first) = partitions.first() {
            let names: Vec<&String> = first.keys().collect();
            if let Some((i, _)) = partitions
                .iter()
                .enumerate()
                .find(|(_, p)| p.keys().collect::<Vec<_>>() != names)
            {
                return Err(format!(
                    "partition {} has other values than the first ({}): every partition \
                     needs the same names",
                    i + 1,
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let keys = partition_keys(self.partitions.is_some(), &partitions);
        // Where each partition's windows start, by marks.
        let mut starts: Vec<Option<chrono::DateTime<chrono::Utc>>> = Vec::new();
        let windows = match (&self.windows, backfill) {
            (None, _) => None,
            (Some(w), Some((from, to))) => {
                // Exactly the range asked for: no lookback.
                let exact = WindowsConfig {
                    lookback: None,
                    ..w.clone()
                };
                Some(WindowPlan::new(&exact, now, Some(from), Some(to))?)
            }
            (Some(w), None) if w.start == "mark" => {
                let initial = window::parse_time(w.initial.as_deref().unwrap_or("now"), now)?;
                starts = keys
                    .iter()
                    .map(|k| Some(marks.get(k).copied().unwrap_or(initial)))
                    .collect();
                let first = starts.iter().flatten().min().copied().unwrap_or(initial);
                Some(WindowPlan::new(w, now, Some(first), None)?)
            }
            (Some(w), None) => Some(WindowPlan::new(w, now, None, None)?),
        };
        // A partition's windows that end before its mark (less the lookback) were fetched.
        let mut first_windows = Vec::new();
        if let (Some(w), Some(config)) = (&windows, &self.windows)
            && !starts.is_empty()
        {
            let lookback = match &config.lookback {
                Some(l) => window::parse_span(l)?,
                None => chrono::Duration::zero(),
            };
            for start in &starts {
                // The first window that ends after the partition's start: a division.
                let first = match start.map(|s| s - lookback) {
                    Some(from) if from > w.start => {
                        let ms = (from - w.start).num_milliseconds() as u64;
                        (ms / w.step_ms as u64).min(w.len())
                    }
                    _ => 0,
                };
                first_windows.push(first);
            }
        }
        let plan = SlicePlan {
            partitioned: self.partitions.is_some(),
            partitions,
            windows,
            first_windows,
            since_param: None,
            since: Vec::new(),
        };
        if plan.to_fetch() > MAX_SLICES {
            return Err(format!(
                "{} slices to fetch is more than {MAX_SLICES}: take longer windows \
                 (`windows.step`), fewer partitions or a later `initial`",
                plan.to_fetch()
            ));
        }
        if plan.windows.as_ref().is_some_and(|w| w.is_empty()) {
            tracing::warn!(
                "the windows' end is not after their start: no window, the snapshot will be empty"
            );
        }
        Ok(plan)
    }

    /// Each partition's mark after a complete run of `plan`: where its windows ended, for
    /// those that had a window to fetch (one whose `initial` is after the end keeps none).
    pub fn marks_after(&self, plan: &SlicePlan, marks: &mut Marks) {
        let Some(w) = &plan.windows else { return };
        let keys = partition_keys(plan.partitioned, &plan.partitions);
        for (p, key) in keys.into_iter().enumerate() {
            if plan.first_window(p as u64) >= w.len() {
                continue;
            }
            let mark = marks.entry(key).or_insert(w.end);
            *mark = (*mark).max(w.end);
        }
    }

    /// The request of slice `index`; an error when a value cannot go where the endpoint
    /// puts it (a header cannot hold `Zürich`).
    pub fn target(&self, plan: &SlicePlan, index: u64) -> Result<Target, String> {
        let mut target = self
            .template
            .render(&plan.get(index), self.windows.as_ref())
            .map_err(|e| format!("slice {}: {e}", Slicing::describe(plan, index)))?;
        // An incremental job's partition sends its own mark.
        let (p, _) = plan.split(index);
        if let (Some(param), Some(Some(since))) = (&plan.since_param, plan.since.get(p as usize)) {
            target.query.push((param.clone(), since.clone()));
        }
        Ok(target)
    }

    /// The columns the partitions' values are written in (none when `columns = false`):
    /// whole numbers as `int64` when every partition's are, text otherwise.
    pub fn columns(&self, plan: &SlicePlan) -> Vec<FieldRef> {
        if !self.partitions.as_ref().is_some_and(|p| p.columns()) {
            return Vec::new();
        }
        let Some(first) = plan.partitions.first() else {
            return Vec::new();
        };
        first
            .keys()
            .map(|name| {
                let integers = plan
                    .partitions
                    .iter()
                    .all(|p| p.get(name).is_some_and(|v| v.is_i64()));
                let data_type = if integers {
                    DataType::Int64
                } else {
                    DataType::Utf8
                };
                Arc::new(Field::new(name, data_type, false))
            })
            .collect()
    }

    /// The directory of slice `index` in a hive layout: `name=value` per partition value,
    /// then the window's `date=YYYY-MM-DD` (whole-day steps) or `window_start=…`.
    pub fn hive_dir(plan: &SlicePlan, index: u64) -> String {
        let slice = plan.get(index);
        let mut parts: Vec<String> = slice
            .partition
            .map(|p| {
                p.iter()
                    .map(|(k, v)| format!("{k}={}", hive_value(&text(v))))
                    .collect()
            })
            .unwrap_or_default();
        if let (Some(w), Some(windows)) = (slice.window, &plan.windows) {
            let whole_days = windows.step_ms % 86_400_000 == 0 && w.start.timestamp() % 86_400 == 0;
            parts.push(match whole_days {
                true => format!("date={}", w.start.format("%Y-%m-%d")),
                false => format!("window_start={}", w.start.format("%Y-%m-%dT%H%M%SZ")),
            });
        }
        parts.join("/")
    }

    /// A short name of slice `index` for logs and manifests: `account_id=7 2026-11-30..2026-12-01`.
    pub fn describe(plan: &SlicePlan, index: u64) -> String {
        let slice = plan.get(index);
        let mut parts: Vec<String> = slice
            .partition
            .map(|p| p.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
            .unwrap_or_default();
        if let Some(w) = slice.window {
            parts.push(format!(
                "{}..{}",
                w.start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                w.end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ));
        }
        parts.join(" ")
    }
}

/// Each partition's mark: where its last complete run's windows ended, by
/// [`partition_key`].
pub type Marks = BTreeMap<String, chrono::DateTime<chrono::Utc>>;

/// A partition's key among the marks: its values as JSON (`{"account_id":7}`), `""` for a
/// job without partitions.
pub fn partition_key(partition: Option<&BTreeMap<String, serde_json::Value>>) -> String {
    partition
        .map(|p| serde_json::to_string(p).unwrap_or_default())
        .unwrap_or_default()
}

/// A value as a hive directory name's part: percent-encoded as Hive does (`/`, `=`, `%`,
/// control characters and the like), so that every reader splits the path the same way.
fn hive_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '/' | '\\' | '=' | '%' | ':' | '#' | '?' | '*' | '"' | '\'' | '[' | ']' | '^' | '{'
            | '}' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return "__HIVE_DEFAULT_PARTITION__".into();
    }
    out
}

/// The marks' keys of a plan's partitions, in order: one `""` for a job without partitions.
fn partition_keys(
    partitioned: bool,
    partitions: &[BTreeMap<String, serde_json::Value>],
) -> Vec<String> {
    match partitioned {
        false => vec![partition_key(None)],
        true => partitions.iter().map(|p| partition_key(Some(p))).collect(),
    }
}

/// A scalar as text: strings without quotes.
pub(crate) fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Constant columns for `rows` rows of one partition: its values in `columns`' order and
/// types.
pub fn constant_columns(
    columns: &[FieldRef],
    partition: Option<&BTreeMap<String, serde_json::Value>>,
    rows: usize,
) -> Vec<ArrayRef> {
    columns
        .iter()
        .map(|field| {
            let value = partition.and_then(|p| p.get(field.name()));
            let array: ArrayRef = match field.data_type() {
                DataType::Int64 => Arc::new(Int64Array::from(vec![
                    value
                        .and_then(|v| v.as_i64())
                        .unwrap_or_default();
                    rows
                ])),
                _ => {
                    let v = value.map(text).unwrap_or_default();
                    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, rows)))
                }
            };
            array
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slicing(partitions: PartitionsConfig) -> Slicing {
        Slicing::new(
            Some(partitions),
            None,
            None,
            Template {
                base: url::Url::parse("https://api.example.com").unwrap(),
                path: "/a/{partition.id}".into(),
                query: Default::default(),
                headers: Default::default(),
                body: None,
            },
            1,
            "flat",
        )
    }

    #[tokio::test]
    async fn a_partition_listed_twice_is_fetched_once_and_none_means_no_slice() {
        let list: PartitionsConfig =
            toml::from_str("type = \"list\"\nname = \"id\"\nvalues = [7, 42, 7, \"7\"]").unwrap();
        let plan = slicing(list)
            .plan(chrono::Utc::now(), &Marks::new(), None)
            .await
            .unwrap();
        // `7` and `"7"` are different values: both kept; the second `7` is not.
        assert_eq!(plan.partitions.len(), 3);
        assert_eq!(plan.len(), 3);
        let empty = SlicePlan {
            partitioned: true,
            partitions: Vec::new(),
            windows: None,
            first_windows: Vec::new(),
            since_param: None,
            since: Vec::new(),
        };
        assert_eq!(
            empty.len(),
            0,
            "no partition, no slice (not one without values)"
        );
        let columns =
            slicing(toml::from_str("type = \"list\"\nname = \"id\"\nvalues = [7, \"x\"]").unwrap());
        let plan = columns
            .plan(chrono::Utc::now(), &Marks::new(), None)
            .await
            .unwrap();
        assert_eq!(columns.columns(&plan)[0].data_type(), &DataType::Utf8);
    }
}
