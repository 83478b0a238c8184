//! Declared schemas: a job's columns, written down instead of inferred.
//!
//! A column file (`schemas/<job>.columns.toml`, named by the job's `schema.file`) lists the
//! columns in order, each with a type and whether it may be null. Values are coerced by the
//! decoder (ISO-8601 strings to timestamps and dates, integers to floats, numbers written as
//! strings to numbers, numbers or strings to decimals). A value that cannot be coerced fails
//! the run naming the record and field, or becomes null and is counted, by the job's
//! `schema.on_invalid` policy. `apisnap schema infer JOB` writes a first version of the file
//! from a sample page.

use std::path::Path;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, ConfigErrors};

/// A column file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnsFile {
    /// The columns, in the order they are written.
    pub columns: Vec<Column>,
}

/// One column (or a list item, or a struct field).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// The field name in the records (not needed for a list's `item`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `string`, `int64`, `float64`, `bool`, `date`, `timestamp`, `decimal`, `list`,
    /// `struct`, or `json` (any value, kept as JSON text).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the value may be null or absent.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub nullable: bool,
    /// `timestamp`: `second`, `millisecond`, `microsecond` or `nanosecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `timestamp`: the IANA time zone the values are in, e.g. `UTC`; none for local times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `decimal`: total digits (1-38).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    /// `decimal`: digits after the point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i8>,
    /// `list`: the type of its items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Box<Column>>,
    /// `struct`: its fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<Column>>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Field metadata that marks a column decoded as JSON text.
pub const JSON_TEXT: &str = "apisnap.json_text";

impl ColumnsFile {
    /// Reads and checks a column file.
    pub fn load(path: &Path) -> Result<Schema, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::from(ConfigError::file(
                path,
                format!("cannot read the column file: {e}"),
            ))
        })?;
        let de = toml::Deserializer::parse(&text).map_err(|e| {
            ConfigErrors::from(ConfigError::file(path, e.to_string().trim().to_string()))
        })?;
        let file: ColumnsFile = serde_path_to_error::deserialize(de).map_err(|e| {
            ConfigErrors::from(ConfigError {
                file: Some(path.to_path_buf()),
                field: Some(e.path().to_string()),
                message: e.inner().to_string(),
            })
        })?;
        file.to_schema().map_err(|e| e.in_file(path))
    }

    pub fn to_schema(&self) -> Result<Schema, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut fields = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            let at = format!("columns[{i}]");
            if c.name.is_empty() {
                errors.push(ConfigError::field(&at, "expected a `name`"));
            } else if fields.iter().any(|f: &Field| f.name() == &c.name) {
                errors.push(ConfigError::field(
                    &at,
                    format!("`{}` is declared twice", c.name),
                ));
            }
            match c.field(&at) {
                Ok(f) => fields.push(f),
                Err(e) => errors.push(e),
            }
        }
        errors.into_result(Schema::new(fields))
    }

    /// A column file describing `schema` (for `apisnap schema infer`).
    pub fn from_schema(schema: &Schema) -> ColumnsFile {
        ColumnsFile {
            columns: schema.fields().iter().map(|f| Column::of(f)).collect(),
        }
    }
}

impl Column {
    fn simple(name: &str, kind: &str) -> Column {
        Column {
            name: name.to_string(),
            kind: kind.to_string(),
            nullable: true,
            unit: None,
            timezone: None,
            precision: None,
            scale: None,
            item: None,
            fields: None,
        }
    }

    fn of(field: &Field) -> Column {
        let mut c = Column::simple(field.name(), "string");
        c.nullable = field.is_nullable();
        if field.metadata().contains_key(JSON_TEXT) {
            c.kind = "json".into();
            return c;
        }
        match field.data_type() {
            DataType::Int64 => c.kind = "int64".into(),
            DataType::Float64 => c.kind = "float64".into(),
            DataType::Boolean => c.kind = "bool".into(),
            DataType::Date32 => c.kind = "date".into(),
            DataType::Timestamp(unit, tz) => {
                c.kind = "timestamp".into();
                c.unit = Some(unit_name(*unit).into());
                c.timezone = tz.as_ref().map(|t| t.to_string());
            }
            DataType::Decimal128(p, s) => {
                c.kind = "decimal".into();
                c.precision = Some(*p);
                c.scale = Some(*s);
            }
            DataType::List(item) => {
                c.kind = "list".into();
                let mut item = Column::of(item);
                item.name = String::new();
                c.item = Some(Box::new(item));
            }
            DataType::Struct(fields) => {
                c.kind = "struct".into();
                c.fields = Some(fields.iter().map(|f| Column::of(f)).collect());
            }
            _ => {}
        }
        c
    }

    fn field(&self, at: &str) -> Result<Field, ConfigError> {
        let name = if self.name.is_empty() {
            "item"
        } else {
            &self.name
        };
        let data_type = match self.kind.as_str() {
            "string" | "json" => DataType::Utf8,
            "int64" => DataType::Int64,
            "float64" => DataType::Float64,
            "bool" => DataType::Boolean,
            "date" => DataType::Date32,
            "timestamp" => {
                let unit = match self.unit.as_deref().unwrap_or("millisecond") {
                    "second" => TimeUnit::Second,
                    "millisecond" => TimeUnit::Millisecond,
                    "microsecond" => TimeUnit::Microsecond,
                    "nanosecond" => TimeUnit::Nanosecond,
                    other => {
                        return Err(ConfigError::field(
                            format!("{at}.unit"),
                            format!(
                                "`{other}`: expected second, millisecond, microsecond or nanosecond"
                            ),
                        ));
                    }
                };
                if let Some(tz) = &self.timezone {
                    crate::vocab::parse_timezone(tz)
                        .map_err(|e| ConfigError::field(format!("{at}.timezone"), e))?;
                }
                DataType::Timestamp(unit, self.timezone.as_deref().map(Arc::from))
            }
            "decimal" => {
                let (Some(p), Some(s)) = (self.precision, self.scale) else {
                    return Err(ConfigError::field(
                        at,
                        "a decimal needs `precision` (1-38) and `scale`",
                    ));
                };
                if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                    return Err(ConfigError::field(
                        at,
                        format!(
                            "decimal({p},{s}): expected 1 <= precision <= 38 and 0 <= scale <= precision"
                        ),
                    ));
                }
                DataType::Decimal128(p, s)
            }
            "list" => {
                let item = self.item.as_ref().ok_or_else(|| {
                    ConfigError::field(
                        at,
                        "a list needs `item`, e.g. `item = { type = \"string\" }`",
                    )
                })?;
                DataType::List(Arc::new(item.field(&format!("{at}.item"))?))
            }
            "struct" => {
                let fields = self
                    .fields
                    .as_ref()
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| ConfigError::field(at, "a struct needs `fields`"))?;
                let mut out = Vec::new();
                for (i, f) in fields.iter().enumerate() {
                    out.push(f.field(&format!("{at}.fields[{i}]"))?);
                }
                DataType::Struct(Fields::from(out))
            }
            other => {
                return Err(ConfigError::field(
                    format!("{at}.type"),
                    format!(
                        "unknown type `{other}`: expected string, int64, float64, bool, date, \
                         timestamp, decimal, list, struct or json"
                    ),
                ));
            }
        };
        let field = Field::new(name, data_type, self.nullable);
        Ok(if self.kind == "json" {
            field.with_metadata(std::collections::HashMap::from([(
                JSON_TEXT.to_string(),
                "true".to_string(),
            )]))
        } else {
            field
        })
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "second",
        TimeUnit::Millisecond => "millisecond",
        TimeUnit::Microsecond => "microsecond",
        TimeUnit::Nanosecond => "nanosecond",
    }
}

/// Renders a column file as TOML.
pub fn to_toml(file: &ColumnsFile) -> String {
    toml::to_string(file).expect("column files serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let text = r#"
[[columns]]
name = "id"
type = "int64"
nullable = false
[[columns]]
name = "at"
type = "timestamp"
unit = "second"
timezone = "UTC"
[[columns]]
name = "price"
type = "decimal"
precision = 10
scale = 2
[[columns]]
name = "tags"
type = "list"
item = { type = "string" }
[[columns]]
name = "address"
type = "struct"
fields = [{ name = "city", type = "string" }]
[[columns]]
name = "raw"
type = "json"
"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let schema = ColumnsFile::load(&path).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert_eq!(
            schema.field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
        );
        assert_eq!(schema.field(2).data_type(), &DataType::Decimal128(10, 2));
        assert!(schema.field(5).metadata().contains_key(JSON_TEXT));
        let again = ColumnsFile::from_schema(&schema);
        assert_eq!(again.to_schema().unwrap().field(3), schema.field(3));

        // Dates from ISO strings.
        let dates = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let mut dec = crate::decode::PageDecoder::new(dates, 4, true).unwrap();
        let batch = dec
            .decode_all(br#"[{"d":"2026-03-04"},{"d":null}]"#)
            .unwrap()
            .remove(0);
        let days = chrono::NaiveDate::from_ymd_opt(2026, 3, 4)
            .unwrap()
            .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days() as i32;
        use arrow_array::Array;
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Date32Array>()
            .unwrap();
        assert_eq!(col.value(0), days);
        assert!(col.is_null(1));

        std::fs::write(&path, "[[columns]]\nname = \"x\"\ntype = \"varchar\"\n").unwrap();
        let e = ColumnsFile::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("columns[0].type") && e.contains("unknown type `varchar`"),
            "{e}"
        );
    }
}
