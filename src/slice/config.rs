//! `[partitions]` and `[windows]`: the slices a job's list is cut into.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::paginate::PaginationConfig;
use crate::vocab::{ConfigError, ConfigErrors, JsonPointer};

/// The partitions of a job: the same request made once per partition (an account, a
/// store, a parent record), each partition's values in the path (`{partition.id}`), the
/// query, the headers or the body, and written as columns.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PartitionsConfig {
    /// A fixed list, in the job file.
    List {
        /// The partitions: tables of values (`[{ account_id = 7 }, …]`), or scalars with
        /// `name`.
        values: Vec<serde_json::Value>,
        /// The name of a scalar list's values (`values = [7, 42]`, `name = "account_id"`).
        #[serde(default)]
        name: Option<String>,
        /// Write the partitions' values as columns of the snapshot. Default true.
        #[serde(default = "yes")]
        columns: bool,
    },
    /// The items of another request of the same provider (`/me` → its accounts; `/stores`
    /// → every store), paginated itself if it says how.
    Endpoint {
        /// Path of the request (a GET), appended to the provider's `base_url`.
        path: String,
        /// Query parameters.
        #[serde(default, deserialize_with = "crate::vocab::scalar_map")]
        #[schemars(schema_with = "crate::vocab::scalar_map_schema")]
        query: BTreeMap<String, String>,
        /// Where the array of items is in the answer: `/accounts`, or `` for a bare array.
        #[serde(default = "JsonPointer::root")]
        items_pointer: JsonPointer,
        /// The values of a partition, each at a pointer into an item:
        /// `{ account_id = "/id" }`.
        fields: BTreeMap<String, JsonPointer>,
        /// How to walk the pages of the list; default: one request.
        #[serde(default)]
        pagination: Option<Box<PaginationConfig>>,
        /// Write the partitions' values as columns of the snapshot. Default true.
        #[serde(default = "yes")]
        columns: bool,
    },
}

fn yes() -> bool {
    true
}

/// Date windows: the request made once per window of time, half-open `[start, end)`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// The first window's start: an ISO-8601 time or date (`2026-11-01`), relative to now
    /// (`-7d`, `-36h`), or `mark`: for each partition, where its last complete run's
    /// windows ended (`initial` on the first run), so that each run fetches only the
    /// windows since.
    #[schemars(example = &"-7d")]
    pub start: String,
    /// With `start = "mark"`: where a partition's windows start before any run has ended
    /// them (a time, a date or relative, as `start`).
    #[serde(default)]
    pub initial: Option<String>,
    /// The last window's end (excluded): `now` (the default), relative (`-1h` leaves the
    /// last hour, where late data lands, for the next run) or absolute.
    #[serde(default = "now")]
    pub end: String,
    /// The length of a window: `1d`, `6h`, `15m`, `30s`.
    #[schemars(example = &"1d")]
    pub step: String,
    /// How far the windows start before `start`: a margin for records that arrive late.
    #[serde(default)]
    pub lookback: Option<String>,
    /// The smallest unit the API's times have: starts and ends are truncated to it, and an
    /// inclusive end is the exclusive one less one unit.
    #[serde(default)]
    pub granularity: Granularity,
    /// The query parameter of the window's start (`from`); none: only placeholders
    /// (`{window.start}`) carry it.
    #[serde(default)]
    pub start_param: Option<String>,
    /// The query parameter of the window's end (`to`).
    #[serde(default)]
    pub end_param: Option<String>,
    /// How times are written in the parameters and placeholders.
    #[serde(default)]
    pub format: TimeFormat,
    /// The API's end is inclusive (`to=2026-11-30` includes that day): it is sent as the
    /// window's end less one `granularity`.
    #[serde(default)]
    pub end_inclusive: bool,
}

fn now() -> String {
    "now".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Second,
    Millisecond,
    Day,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-12-01T00:00:00Z` (with milliseconds when the granularity has them).
    #[default]
    Iso8601,
    /// `2026-12-01`.
    Date,
    /// Seconds since 1970.
    EpochSeconds,
    /// Milliseconds since 1970.
    EpochMillis,
}

/// How slices are fetched and laid out.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlicesConfig {
    /// Slices fetched at once (each with the job's `concurrency` requests in flight), within
    /// the provider's rate limit.
    #[serde(default = "default_slice_concurrency")]
    pub concurrency: usize,
}

impl Default for SlicesConfig {
    fn default() -> Self {
        SlicesConfig {
            concurrency: default_slice_concurrency(),
        }
    }
}

fn default_slice_concurrency() -> usize {
    4
}

impl PartitionsConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        match self {
            PartitionsConfig::List { values, name, .. } => {
                if values.is_empty() {
                    errors.push(ConfigError::field(
                        "partitions.values",
                        "expected at least one partition",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    match (v, name) {
                        (serde_json::Value::Object(map), _) if !map.is_empty() => {
                            for (k, field) in map {
                                check_name(k, "partitions.values", errors);
                                check_scalar(field, &format!("partitions.values[{i}].{k}"), errors);
                            }
                        }
                        (serde_json::Value::Object(_), _) => errors.push(ConfigError::field(
                            format!("partitions.values[{i}]"),
                            "an empty table: expected its values, e.g. `{ account_id = 7 }`",
                        )),
                        (scalar, Some(_)) => {
                            check_scalar(scalar, &format!("partitions.values[{i}]"), errors)
                        }
                        (_, None) => errors.push(ConfigError::field(
                            "partitions.name",
                            "a list of plain values needs a `name` for them (the placeholder \
                             `{partition.NAME}` and the column), or write tables: \
                             `values = [{ account_id = 7 }]`",
                        )),
                    }
                }
                if let Some(name) = name {
                    check_name(name, "partitions.name", errors);
                }
            }
            PartitionsConfig::Endpoint {
                path,
                fields,
                pagination,
                ..
            } => {
                if !path.starts_with('/') {
                    errors.push(ConfigError::field(
                        "partitions.path",
                        format!("`{path}`: expected a path starting with `/`, e.g. `/me`"),
                    ));
                }
                if fields.is_empty() {
                    errors.push(ConfigError::field(
                        "partitions.fields",
                        "expected at least one value per partition, e.g. `{ account_id = \
                         \"/id\" }`",
                    ));
                }
                for name in fields.keys() {
                    check_name(name, "partitions.fields", errors);
                }
                if let Some(p) = pagination {
                    let mut inner = ConfigErrors::default();
                    p.validate(&mut inner);
                    for mut e in inner.0 {
                        e.field = e.field.map(|f| format!("partitions.{f}"));
                        errors.push(e);
                    }
                }
            }
        }
    }

    /// Whether the values become columns.
    pub fn columns(&self) -> bool {
        match self {
            PartitionsConfig::List { columns, .. } | PartitionsConfig::Endpoint { columns, .. } => {
                *columns
            }
        }
    }
}

impl WindowsConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        let now = chrono::Utc::now();
        let start = match (self.start.as_str(), &self.initial) {
            ("mark", Some(initial)) => super::window::parse_time(initial, now).map_err(|e| {
                errors.push(ConfigError::field("windows.initial", e.clone()));
            }),
            ("mark", None) => {
                errors.push(ConfigError::field(
                    "windows.initial",
                    "`start = \"mark\"` needs where the first run starts, e.g. \
                     `initial = \"2026-01-01\"` or `\"-30d\"`",
                ));
                Err(())
            }
            (text, initial) => {
                if initial.is_some() {
                    errors.push(ConfigError::field(
                        "windows.initial",
                        "only `start = \"mark\"` takes an `initial`",
                    ));
                }
                super::window::parse_time(text, now)
                    .map_err(|e| errors.push(ConfigError::field("windows.start", e)))
            }
        };
        let end = super::window::parse_time(&self.end, now);
        if let Err(e) = &end {
            errors.push(ConfigError::field("windows.end", e.clone()));
        }
        match super::window::parse_span(&self.step) {
            Ok(step) if step.num_seconds() < 1 => errors.push(ConfigError::field(
                "windows.step",
                "expected at least one second",
            )),
            Ok(step)
                if self.granularity == Granularity::Day && step.num_seconds() % 86_400 != 0 =>
            {
                errors.push(ConfigError::field(
                    "windows.step",
                    format!(
                        "`{}` is not whole days, and `granularity = \"day\"`: expected `1d`, \
                         `7d`, …",
                        self.step
                    ),
                ))
            }
            Ok(step)
                if self.granularity == Granularity::Second
                    && step.num_milliseconds() % 1000 != 0 =>
            {
                errors.push(ConfigError::field(
                    "windows.step",
                    format!(
                        "`{}` is not whole seconds, and `granularity = \"second\"`: set \
                         `granularity = \"millisecond\"` or a step in seconds",
                        self.step
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) => errors.push(ConfigError::field("windows.step", e)),
        }
        if self.format == TimeFormat::EpochSeconds && self.granularity == Granularity::Millisecond {
            errors.push(ConfigError::field(
                "windows.format",
                "`epoch_seconds` cannot carry milliseconds: use `epoch_millis`, or \
                 `granularity = \"second\"`",
            ));
        }
        if self.end_inclusive
            && self.granularity == Granularity::Day
            && self.format != TimeFormat::Date
        {
            errors.push(ConfigError::field(
                "windows.end_inclusive",
                "an inclusive end at day granularity is a date (`to=2026-11-30` takes the whole \
                 day; a time would take only its first instant): set `format = \"date\"`",
            ));
        }
        if let Some(l) = &self.lookback
            && let Err(e) = super::window::parse_span(l)
        {
            errors.push(ConfigError::field("windows.lookback", e));
        }
        if let (Ok(s), Ok(e)) = (&start, &end)
            && s >= e
            && !self.start.starts_with('-')
            && self.start != "mark"
            && !self.end.starts_with('-')
        {
            errors.push(ConfigError::field(
                "windows.end",
                format!(
                    "`{}` is not after `windows.start` `{}`",
                    self.end, self.start
                ),
            ));
        }
        if self.format == TimeFormat::Date && self.granularity != Granularity::Day {
            errors.push(ConfigError::field(
                "windows.format",
                "`date` writes whole days: set `granularity = \"day\"` too",
            ));
        }
        for (field, name) in [
            ("windows.start_param", &self.start_param),
            ("windows.end_param", &self.end_param),
        ] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                errors.push(ConfigError::field(field, "expected a parameter name"));
            }
        }
    }
}

impl SlicesConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if !(1..=64).contains(&self.concurrency) {
            errors.push(ConfigError::field(
                "slices.concurrency",
                format!("{}: expected 1 to 64 slices at once", self.concurrency),
            ));
        }
    }
}

fn check_name(name: &str, field: &str, errors: &mut ConfigErrors) {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        errors.push(ConfigError::field(
            field,
            format!(
                "`{name}`: a partition value's name is a placeholder and a column: letters, \
                 digits and `_`, e.g. `account_id`"
            ),
        ));
    }
}

fn check_scalar(value: &serde_json::Value, field: &str, errors: &mut ConfigErrors) {
    if !(value.is_string() || value.is_i64() || value.is_u64()) {
        errors.push(ConfigError::field(
            field,
            format!("{value}: expected a text or a whole number"),
        ));
    }
}

/// Every placeholder of the endpoint names a value the slices have: `{partition.NAME}` one
/// of the partitions' names, `{window.start}` and `{window.end}` a window.
pub fn check_placeholders(
    found: &[String],
    partitions: Option<&PartitionsConfig>,
    windows: bool,
    errors: &mut ConfigErrors,
) {
    let names: Vec<String> = match partitions {
        None => Vec::new(),
        Some(PartitionsConfig::List { values, name, .. }) => match values.first() {
            Some(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => name.iter().cloned().collect(),
        },
        Some(PartitionsConfig::Endpoint { fields, .. }) => fields.keys().cloned().collect(),
    };
    let mut reported = std::collections::BTreeSet::new();
    for placeholder in found {
        if !reported.insert(placeholder.clone()) {
            continue;
        }
        let problem = if let Some(field) = placeholder.strip_prefix("partition.") {
            match partitions {
                None => Some("there is no `[partitions]` table".to_string()),
                Some(_) if !names.iter().any(|n| n == field) => Some(format!(
                    "the partitions have no value `{field}` (they have {})",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(_) => None,
            }
        } else if placeholder == "window.start" || placeholder == "window.end" {
            (!windows).then(|| "there is no `[windows]` table".to_string())
        } else {
            Some("expected `{window.start}` or `{window.end}`".to_string())
        };
        if let Some(problem) = problem {
            errors.push(ConfigError::field(
                "endpoint",
                format!("the placeholder `{{{placeholder}}}`: {problem}"),
            ));
        }
    }
}
