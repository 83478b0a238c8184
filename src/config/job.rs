//! The job file: what to fetch and where to write it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, ConfigErrors, JsonPointer};
use crate::paginate::PaginationConfig;
use crate::schedule::ScheduleConfig;
use crate::sink::OutputConfig;

/// A job: one endpoint of one provider, written to one snapshot per run.
/// File: `jobs/<name>.toml`; the job's name is the file name without `.toml`. Override any
/// field with `APISNAP_JOB_<NAME>__<FIELD>` (e.g. `APISNAP_JOB_EVENTS__OUTPUT__DIR`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "apisnap job")]
pub struct JobConfig {
    /// What this job fetches, for people reading the file.
    #[serde(default)]
    pub description: Option<String>,
    /// The provider's name: the file `providers/<provider>.toml` beside this job.
    #[schemars(example = &"seal_metrics")]
    pub provider: String,
    /// The request.
    pub endpoint: EndpointConfig,
    /// How to walk the pages.
    pub pagination: PaginationConfig,
    /// Requests in flight at once, for strategies whose next request is known in advance
    /// (`offset`, `page`, `range_header`; the others go one at a time): `"adaptive"` (the
    /// default) tunes it per provider from round-trip times, 429s and 5xx; a number fixes it
    /// for each list of pages.
    #[serde(default)]
    pub concurrency: crate::concurrency::ConcurrencyConfig,
    /// The partitions the request is made for (an account, a store, a parent record): the
    /// request once per partition, its values in `{partition.NAME}` placeholders and
    /// written as columns.
    #[serde(default)]
    pub partitions: Option<crate::slice::PartitionsConfig>,
    /// Date windows the request is made for, `[start, end)`, each partition's windows
    /// apart.
    #[serde(default)]
    pub windows: Option<crate::slice::WindowsConfig>,
    /// How the slices (partition × window) are fetched.
    #[serde(default)]
    pub slices: crate::slice::SlicesConfig,
    /// Where and how to write the snapshot.
    #[serde(default)]
    pub output: OutputConfig,
    /// The snapshot's columns.
    #[serde(default)]
    pub schema: SchemaConfig,
    /// Fetch only what is new since the last successful run.
    #[serde(default)]
    pub incremental: Option<crate::incremental::IncrementalConfig>,
    /// A current-state table beside the snapshots, one row per primary key.
    #[serde(default)]
    pub table: Option<crate::table::TableConfig>,
    /// Where the job's checkpoint, lock and run history live (not in the snapshot): a
    /// directory, or an object-storage prefix (`s3://bucket/state`, `gs://…`, `az://…`), where
    /// the checkpoint is replaced with conditional writes so two pods never both commit a run.
    #[serde(default = "default_state_dir")]
    pub state_dir: crate::storage::Location,
    /// When `apisnap schedule` and the generated deployments run this job.
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// What to do when the records written differ from what the API stated (a total
    /// pointer, a `Content-Range` total).
    #[serde(default)]
    pub on_count_mismatch: OnCountMismatch,
    /// What to do with a record whose key (`endpoint.key`, else the table's `primary_key`)
    /// came before in the same run: a list read by position while the collection changed,
    /// or an API that repeats itself.
    #[serde(default)]
    pub on_duplicate: OnDuplicate,
}

/// The policy for a record whose key came before in the same run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Fail the run (exit 4), naming the key: the parts committed so far stay, and the
    /// snapshot is not marked complete.
    #[default]
    Fail,
    /// Complete the snapshot with each key once, its copy fetched last: the parts are
    /// rewritten into one file at the end (as `compact = true` does); the manifest counts
    /// the copies left out (`duplicates`).
    KeepNewest,
}

/// The policy for a run whose records do not add up to the count the API stated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnCountMismatch {
    /// Fail the run (exit 4), naming both numbers: the committed parts stay, and the
    /// snapshot is not marked complete.
    #[default]
    Fail,
    /// Complete the snapshot with a warning; the manifest keeps both numbers.
    Warn,
}

/// The columns of a snapshot: inferred from the first page and frozen, with a policy for
/// fields that appear later.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// A column file declaring the columns and their types, e.g.
    /// `schemas/events.columns.toml` (relative to the working directory). Without one, the
    /// columns are inferred from the first page. `apisnap schema infer JOB` writes one.
    #[serde(default)]
    pub file: Option<String>,
    /// What to do with a field that the columns do not have.
    #[serde(default)]
    pub drift: Drift,
    /// What to do with a value that cannot be read as its column's type.
    #[serde(default)]
    pub on_invalid: OnInvalid,
}

/// The policy for values that cannot be coerced to their column's type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnInvalid {
    /// Stop the run, naming the page, record, field and value.
    #[default]
    Fail,
    /// Write null instead; the manifest counts them per column.
    Null,
}

/// The policy for fields that appear after the first page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    /// Stop the run, naming the new fields (committed parts stay, the run can resume).
    #[default]
    Fail,
    /// Drop the new fields.
    Ignore,
    /// Add them as columns from the next part on; earlier parts lack them, and the manifest
    /// says from which part each column exists.
    Evolve,
}

/// The request a job makes (pagination adds its own parameters).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Path, appended to the provider's `base_url`.
    #[schemars(example = &"/stats/events")]
    pub path: String,
    /// Query parameters sent with every page.
    #[serde(default, deserialize_with = "crate::vocab::scalar_map")]
    #[schemars(schema_with = "crate::vocab::scalar_map_schema")]
    pub query: BTreeMap<String, String>,
    /// Headers for this endpoint; they override the provider's headers of the same name.
    #[serde(default, deserialize_with = "crate::vocab::scalar_map")]
    #[schemars(schema_with = "crate::vocab::scalar_map_schema")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (POST and PUT).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Where the array of records is in each response: `/data`, `/data/items`, or `` when
    /// the body is the array.
    #[serde(default = "default_records_pointer")]
    pub records_pointer: JsonPointer,
    /// The field or fields that identify a record (`["id"]`): a record whose key came before
    /// in the same run is a duplicate (`on_duplicate`). None by default.
    #[serde(default)]
    pub key: Vec<String>,
}

fn default_state_dir() -> crate::storage::Location {
    crate::storage::Location::parse("state").expect("a path")
}

fn default_records_pointer() -> JsonPointer {
    "/data".parse().expect("valid pointer")
}

/// HTTP method of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
}

impl HttpMethod {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
        }
    }
}

impl JobConfig {
    /// Checks what can be checked without the environment or the network.
    pub fn validate(&self) -> ConfigErrors {
        let mut errors = ConfigErrors::default();
        let e = &self.endpoint;
        if !e.path.starts_with('/') {
            errors.push(ConfigError::field(
                "endpoint.path",
                format!("`{}` must start with `/`", e.path),
            ));
        }
        if e.path.contains('?') {
            errors.push(ConfigError::field(
                "endpoint.path",
                "must not contain `?`: put query parameters in `endpoint.query`",
            ));
        }
        for (name, value) in &e.headers {
            check_header(name, value, "endpoint.headers", &mut errors);
        }
        if e.body.as_ref().is_some_and(|b| !b.is_object()) && self.pagination.params_in_body() {
            errors.push(ConfigError::field(
                "endpoint.body",
                "pagination fields go into the body: expected a table",
            ));
        }
        if e.body.is_some() && e.method == HttpMethod::Get {
            errors.push(ConfigError::field(
                "endpoint.body",
                "a GET request has no body: set `method = \"POST\"` or remove `body`",
            ));
        }
        self.pagination.validate(&mut errors);
        if let Some(message) = self.concurrency.invalid() {
            errors.push(ConfigError::field("concurrency", message));
        }
        if self.pagination.params_in_body() && e.method == HttpMethod::Get {
            errors.push(ConfigError::field(
                "pagination.params_in",
                "`body` needs a request with a body: set `endpoint.method = \"POST\"`",
            ));
        }
        self.validate_slices(&mut errors);
        self.output.validate(&mut errors);
        if self.output.layout == crate::sink::Layout::Hive {
            if !self.sliced() {
                errors.push(ConfigError::field(
                    "output.layout",
                    "`hive` lays out a sliced job's parts by partition and window: add \
                     `[partitions]` or `[windows]`, or remove `layout`",
                ));
            }
            if self.output.dir.contains("://") {
                errors.push(ConfigError::field(
                    "output.layout",
                    "a hive layout is written to a directory on disk for now, not to object \
                     storage: use `layout = \"flat\"` there",
                ));
            }
            if self.output.compact {
                errors.push(ConfigError::field(
                    "output.compact",
                    "a hive layout keeps a directory per partition and window: it cannot be \
                     merged into one file",
                ));
            }
            if self.table.is_some() {
                errors.push(ConfigError::field(
                    "table",
                    "the current table is not made from a hive layout yet (its partitions' \
                     values are not in the files): use `layout = \"flat\"`",
                ));
            }
        }
        if e.key.iter().any(|k| k.is_empty()) {
            errors.push(ConfigError::field(
                "endpoint.key",
                "expected field names, e.g. `[\"id\"]`",
            ));
        }
        if !self.record_key().is_empty() && self.output.format != crate::sink::Format::Parquet {
            errors.push(ConfigError::field(
                "endpoint.key",
                "duplicates are found in Parquet snapshots: set `output.format = \"parquet\"`, \
                 or remove the key",
            ));
        }
        if self.on_duplicate == OnDuplicate::KeepNewest {
            if self.record_key().is_empty() {
                errors.push(ConfigError::field(
                    "on_duplicate",
                    "`keep_newest` needs the records' key: set `endpoint.key`, e.g. \
                     `key = [\"id\"]`",
                ));
            }
            if self.output.layout == crate::sink::Layout::Hive {
                errors.push(ConfigError::field(
                    "on_duplicate",
                    "`keep_newest` rewrites the snapshot into one file, which a hive layout \
                     cannot be: use `fail`",
                ));
            }
            if self.sliced() {
                errors.push(ConfigError::field(
                    "on_duplicate",
                    "`keep_newest` is not combined with partitions or windows yet (each slice \
                     counts its own records): use `fail`",
                ));
            }
        }
        if let Some(i) = &self.incremental {
            i.validate(&mut errors);
        }
        if let Some(s) = &self.schedule {
            s.validate(&mut errors);
        }
        // Runs by marks fetch only what is new, as incremental ones do.
        let by_marks = self.windows.as_ref().is_some_and(|w| w.start == "mark");
        if let Some(t) = &self.table {
            t.validate(self.incremental.is_some() || by_marks, &mut errors);
            // The table lives beside the snapshots, in the directory above them, which
            // has to be the job's alone and the same for every run.
            let parts: Vec<&str> = self.output.dir.split('/').collect();
            let (last, above) = parts.split_last().expect("split yields one part at least");
            let per_run = last.contains("{date}") || last.contains("{run_id}");
            let fixed_above = above
                .iter()
                .all(|p| p.replace("{job}", "").find('{').is_none());
            if !per_run || !fixed_above {
                errors.push(ConfigError::field(
                    "output.dir",
                    format!(
                        "`{}`: with `[table]` the snapshots need a directory per run \
                         (`{{date}}` or `{{run_id}}` in the last part) below one that every run \
                         shares, where the table lives: e.g. `out/{{job}}/{{date}}`",
                        self.output.dir
                    ),
                ));
            }
            if self.output.format != crate::sink::Format::Parquet {
                errors.push(ConfigError::field(
                    "table",
                    "the current table is merged from Parquet snapshots: set \
                     `output.format = \"parquet\"`",
                ));
            }
        }
        errors
    }
}

impl JobConfig {
    /// The fields that identify a record for finding duplicates within a run: the
    /// endpoint's `key`, empty when not set. (A table's `primary_key` alone does not turn
    /// it on: the table keeps the newest version of each key whatever a run holds.)
    pub fn record_key(&self) -> Vec<String> {
        self.endpoint.key.clone()
    }

    /// Whether the job is cut into slices.
    pub fn sliced(&self) -> bool {
        self.partitions.is_some() || self.windows.is_some()
    }

    fn validate_slices(&self, errors: &mut ConfigErrors) {
        if let Some(p) = &self.partitions {
            p.validate(errors);
        }
        if let Some(w) = &self.windows {
            w.validate(errors);
        }
        self.slices.validate(errors);
        let e = &self.endpoint;
        let mut texts: Vec<String> = vec![e.path.clone()];
        texts.extend(e.query.values().cloned());
        texts.extend(e.headers.values().cloned());
        let mut found: Vec<String> = texts
            .iter()
            .flat_map(|t| crate::slice::template::placeholders(t))
            .collect();
        found.extend(
            e.body
                .iter()
                .flat_map(crate::slice::template::json_placeholders),
        );
        // The keyset's own placeholder, filled by the pagination on every request.
        if self.pagination.key_in_path() {
            if !e.path.contains("{page.key}") {
                errors.push(ConfigError::field(
                    "endpoint.path",
                    format!(
                        "`{}`: with `pagination.params_in = \"path\"` the path says where the \
                         key goes: `{{page.key}}`, e.g. `/events/after/{{page.key}}`",
                        e.path
                    ),
                ));
            }
            if self.sliced() {
                errors.push(ConfigError::field(
                    "pagination.params_in",
                    "a key in the path is not combined with partitions or windows yet: send it \
                     in the query",
                ));
            }
            found.retain(|p| p != "page.key");
        }
        crate::slice::config::check_placeholders(
            &found,
            self.partitions.as_ref(),
            self.windows.is_some(),
            errors,
        );
        let by_marks = self.windows.as_ref().is_some_and(|w| w.start == "mark");
        let last = self.output.dir.rsplit('/').next().unwrap_or_default();
        if by_marks && !last.contains("{run_id}") && !last.contains("{timestamp}") {
            errors.push(ConfigError::field(
                "output.dir",
                format!(
                    "`{}`: with `windows.start = \"mark\"` each run writes only what is new, \
                     so a second run on one day must not replace the first's snapshot: put \
                     `{{run_id}}` (or `{{timestamp}}`) in the last part, e.g. \
                     `out/{{job}}/{{run_id}}`",
                    self.output.dir
                ),
            ));
        }
        if self.windows.is_some() && self.incremental.is_some() {
            errors.push(ConfigError::field(
                "incremental",
                "a job with `[windows]` fetches what is new by its windows: set \
                 `windows.start = \"mark\"` instead of `[incremental]`",
            ));
        }
    }
}

pub(super) fn check_header(name: &str, value: &str, field: &str, errors: &mut ConfigErrors) {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        errors.push(ConfigError::field(
            format!("{field}.{name}"),
            "not a valid header name: expected letters, digits and `-`",
        ));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        errors.push(ConfigError::field(
            format!("{field}.{name}"),
            "not a valid header value: expected visible ASCII",
        ));
    }
    if name.eq_ignore_ascii_case("authorization") {
        errors.push(ConfigError::field(
            format!("{field}.{name}"),
            "the Authorization header comes from the provider's `auth`: a literal one would \
             put a secret in the file",
        ));
    }
}
