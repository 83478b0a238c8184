//! `[table]`: the job's current-state table, one row per key.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, ConfigErrors, JsonPointer};

/// A current-state table beside the snapshots (`out/{job}/current/`): after each successful
/// run, the previous table merged with the run's snapshot, one row per primary key, its
/// newest version.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The field or fields that identify a record, e.g. `["id"]` or `["account", "id"]`.
    #[schemars(example = &["id"])]
    pub primary_key: Vec<String>,
    /// The field whose highest value is the newest version of a key (`updated_at`); ties,
    /// and a table without it, go to the later run, then the later record.
    #[serde(default)]
    pub order_by: Option<String>,
    /// Records that mark a key deleted: its newest version matching this rule removes it
    /// from the table.
    #[serde(default)]
    pub tombstone: Option<TombstoneConfig>,
    /// `absence`: a key missing from a run's snapshot is deleted, for jobs that fetch
    /// everything each run (not incremental ones); `tombstone` (the default): only records
    /// that match `tombstone` delete.
    #[serde(default)]
    pub deletions: Deletions,
    /// Hash buckets (files) of a new table; doubled when one grows past `bucket_rows`, so
    /// that a merge holds one bucket in memory at a time whatever the table's size.
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// The most rows a bucket holds before the table is split into twice as many.
    #[serde(default = "default_bucket_rows")]
    pub bucket_rows: u64,
    /// Days a deleted key is remembered (its tombstone kept beside the table, not in it), so
    /// that an older version of it sent again within them (a lookback window, a late
    /// replica, a backfill) does not bring it back. Longer than any re-send you expect.
    #[serde(default = "default_remember_deletions_days")]
    pub remember_deletions_days: u32,
}

fn default_remember_deletions_days() -> u32 {
    30
}

/// Which records mark a key deleted.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TombstoneConfig {
    /// The field (a column), or a JSON pointer into a struct column (`/meta/deleted`).
    pub field: String,
    /// The value that marks a deletion (`true`, `"deleted"`, `1`); without it, any value but
    /// null and `false` does (`deleted_at` set).
    #[serde(default, deserialize_with = "crate::vocab::scalar_opt")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub equals: Option<String>,
}

/// How keys leave the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Deletions {
    /// Only records that match `tombstone`.
    #[default]
    Tombstone,
    /// Also every key a run's snapshot does not hold.
    Absence,
}

fn default_buckets() -> u32 {
    16
}

fn default_bucket_rows() -> u64 {
    100_000
}

impl TableConfig {
    pub fn validate(&self, incremental: bool, errors: &mut ConfigErrors) {
        if self.primary_key.is_empty() || self.primary_key.iter().any(|k| k.is_empty()) {
            errors.push(ConfigError::field(
                "table.primary_key",
                "expected one or more field names, e.g. `[\"id\"]`",
            ));
        }
        if let Some(t) = &self.tombstone
            && t.field.starts_with('/')
            && t.field.parse::<JsonPointer>().is_err()
        {
            errors.push(ConfigError::field(
                "table.tombstone.field",
                format!("`{}` is not a JSON pointer (`/meta/deleted`)", t.field),
            ));
        }
        if self.deletions == Deletions::Absence && incremental {
            errors.push(ConfigError::field(
                "table.deletions",
                "an incremental job's snapshot holds only what changed, so every other key \
                 would be deleted: use `tombstone` for incremental jobs",
            ));
        }
        if !(1..=65_536).contains(&self.buckets) {
            errors.push(ConfigError::field(
                "table.buckets",
                format!("{} is out of range: expected 1-65536", self.buckets),
            ));
        }
        if self.bucket_rows < 1_000 {
            errors.push(ConfigError::field(
                "table.bucket_rows",
                format!("{} is too small: expected 1000 or more", self.bucket_rows),
            ));
        }
    }
}
