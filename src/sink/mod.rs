//! Arrow batches to files analysts open: Parquet (zstd) or CSV.
//!
//! A file is written under a hidden temporary name in its final directory, fsynced, renamed,
//! and the directory fsynced ([`AtomicFile`]): nothing partial is ever visible under a final
//! name, and a crash leaves at worst a `.tmp` file behind.

pub(crate) mod csv;
pub mod duplicates;
mod hashing;
mod parquet;
pub mod snapshot;

use std::path::{Path, PathBuf};

use crate::storage::Location;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, ConfigErrors};

pub use crate::storage::AtomicFile;
pub use hashing::HashingWriter;

/// Where and how a job writes its snapshot.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// File format.
    #[serde(default)]
    pub format: Format,
    /// The snapshot directory. Placeholders: `{job}` (the job's name), `{date}` (the run's
    /// start date, UTC, `YYYY-MM-DD`), `{timestamp}` (its start time, UTC,
    /// `YYYYMMDDTHHMMSSZ`), `{run_id}` (unique per run, sortable by time). `latest.json` goes
    /// in the directory above it. Relative paths are relative to the working directory. An
    /// object-storage prefix works the same way: `s3://bucket/{job}/{run_id}`, `gs://…`,
    /// `az://…` (credentials from the cloud's standard environment variables, web identity
    /// or instance metadata).
    #[serde(default = "default_dir")]
    #[schemars(example = &"/srv/data/{job}/{date}")]
    pub dir: String,
    /// Parquet compression codec.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// zstd level (1-22, default 1); higher is smaller and slower.
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Which Parquet columns are dictionary-encoded.
    #[serde(default)]
    pub dictionary: Option<Dictionary>,
    /// Rows per Parquet row group; bounds the writer's memory.
    #[serde(default = "default_row_group_records")]
    pub row_group_records: usize,
    /// Records per part file. A part closes at the first page boundary past this; each closed
    /// part is durable and checkpointed, so a killed run resumes after the last one.
    #[serde(default = "default_part_records")]
    pub part_records: usize,
    /// Also close a part once it holds about this many bytes.
    #[serde(default)]
    pub part_bytes: Option<u64>,
    /// Complete snapshots of the job to keep (the oldest are removed); all when unset.
    #[serde(default)]
    pub retain: Option<usize>,
    /// Merge the parts into one file (`part-all.<ext>`) when the run completes.
    #[serde(default)]
    pub compact: bool,
    /// How a sliced job's parts are laid out: `flat` in the snapshot directory, or `hive`
    /// in a directory per partition and window (`account_id=7/date=2026-12-01/`), read
    /// with hive partitioning by DuckDB, polars, pyarrow and Spark; the partitions' values
    /// are then in the directory names, not in the files.
    #[serde(default)]
    pub layout: Layout,
}

/// Where a sliced job's parts go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Flat,
    Hive,
}

fn default_part_records() -> usize {
    250_000
}

fn default_dir() -> String {
    "out/{job}/{date}".into()
}

fn default_row_group_records() -> usize {
    64 * 1024
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            format: Format::default(),
            dir: default_dir(),
            compression: None,
            compression_level: None,
            dictionary: None,
            row_group_records: default_row_group_records(),
            part_records: default_part_records(),
            part_bytes: None,
            retain: None,
            compact: false,
            layout: Layout::Flat,
        }
    }
}

/// Output file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Apache Parquet: typed, compressed, nested values kept as lists and structs.
    #[default]
    Parquet,
    /// CSV (RFC 4180, UTF-8, header row); nested values as JSON text.
    Csv,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// Parquet compression codec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

/// Which Parquet columns are dictionary-encoded. A dictionary pays off where values repeat
/// (a city, a status) and costs time and size where they do not (ids, timestamps, free text):
/// there Parquet builds the dictionary, outgrows it and falls back, and the file ends up
/// larger than with no dictionary at all (see BENCHMARKS.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dictionary {
    /// Each part file decides per column from its first page: a column where at most half
    /// the values are distinct gets a dictionary.
    #[default]
    Auto,
    /// Every column (Parquet writers' usual default).
    On,
    /// No column.
    Off,
}

const PLACEHOLDERS: [&str; 4] = ["job", "date", "timestamp", "run_id"];

impl OutputConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if let Err(e) = check_template(&self.dir) {
            errors.push(ConfigError::field("output.dir", e));
        }
        if self.format == Format::Csv {
            for (set, field) in [
                (self.compression.is_some(), "output.compression"),
                (self.compression_level.is_some(), "output.compression_level"),
                (self.dictionary.is_some(), "output.dictionary"),
            ] {
                if set {
                    errors.push(ConfigError::field(
                        field,
                        "applies to Parquet only: remove it or set `format = \"parquet\"`",
                    ));
                }
            }
        }
        if let Some(level) = self.compression_level {
            if !(1..=22).contains(&level) {
                errors.push(ConfigError::field(
                    "output.compression_level",
                    format!("{level} is out of range: expected 1-22"),
                ));
            } else if self.compression.unwrap_or_default() != Compression::Zstd {
                errors.push(ConfigError::field(
                    "output.compression_level",
                    "applies to zstd only",
                ));
            }
        }
        errors.require(
            self.part_records > 0,
            "output.part_records",
            "expected at least 1",
        );
        errors.require(
            self.part_bytes != Some(0),
            "output.part_bytes",
            "expected at least 1",
        );
        errors.require(
            self.retain != Some(0),
            "output.retain",
            "0 would delete the snapshot just written: expected 1 or more",
        );
        errors.require(
            self.row_group_records > 0,
            "output.row_group_records",
            "expected at least 1",
        );
    }

    /// The snapshot directory for a run started at `at`.
    pub fn render_dir(
        &self,
        job: &str,
        at: chrono::DateTime<chrono::Utc>,
        run_id: &str,
    ) -> Result<Location, SinkError> {
        Ok(Location::parse(
            &self
                .dir
                .replace("{job}", job)
                .replace("{date}", &at.format("%Y-%m-%d").to_string())
                .replace("{timestamp}", &at.format("%Y%m%dT%H%M%SZ").to_string())
                .replace("{run_id}", run_id),
        )?)
    }

    /// Opens a writer for `path` (created under a temporary name until [`BatchWriter::finish`]).
    pub fn open(&self, path: &Path, schema: SchemaRef) -> Result<Box<dyn BatchWriter>, SinkError> {
        match self.format {
            Format::Parquet => Ok(Box::new(parquet::ParquetWriter::create(
                path, schema, self,
            )?)),
            Format::Csv => Ok(Box::new(csv::CsvWriter::create(path, schema)?)),
        }
    }
}

fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("`{template}` has a `}}` without `{{`"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{template}` has a `{{` without `}}`"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in `{template}`: expected {{job}}, {{date}}, {{timestamp}} or {{run_id}}"
            ));
        }
        rest = &after[close + 1..];
    }
    if template.trim().is_empty() {
        return Err("expected a directory, e.g. `out/{job}/{date}`".into());
    }
    crate::storage::check(template)
}

/// One part file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The file name, in the snapshot directory.
    pub file: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// A file being written.
pub trait BatchWriter: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError>;
    /// About how large the file is so far, buffered data included.
    fn size(&self) -> u64;
    /// Completes the file, makes it durable and moves it to its final name.
    fn finish(self: Box<Self>) -> Result<WrittenFile, SinkError>;
}

/// A file that is complete under its final name.
#[derive(Clone, Debug, Serialize)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl WrittenFile {
    /// Makes `inner` durable under `file`'s final name, and says what it holds.
    fn commit(
        file: AtomicFile,
        inner: std::fs::File,
        records: u64,
        sha256: String,
    ) -> Result<WrittenFile, SinkError> {
        let path = file.path().to_path_buf();
        let bytes = file.commit(inner)?;
        Ok(WrittenFile {
            path,
            records,
            bytes,
            sha256,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl SinkError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SinkError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn encode(path: &Path, message: impl ToString) -> Self {
        SinkError::Encode {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_template("out/{job}/{date}/{run_id}").is_ok());
        assert!(
            check_template("out/{jobs}")
                .unwrap_err()
                .contains("unknown placeholder `{jobs}`")
        );
        assert!(check_template("out/{job").is_err());
        assert!(check_template("out/job}").is_err());
        let c = OutputConfig::default();
        assert_eq!(
            c.render_dir(
                "e",
                chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
                "r"
            )
            .unwrap()
            .to_string(),
            "out/e/2026-01-02"
        );
    }
}
