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
    fn int64_columns_take_whole_numbers_only() {
        assert_eq!(exact_int("19"), Some(19));
        assert_eq!(exact_int("-7"), Some(-7));
        assert_eq!(exact_int("100.0"), Some(100));
        assert_eq!(exact_int("1e3"), Some(1000));
        assert_eq!(exact_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(exact_int("19.99"), None);
        assert_eq!(exact_int("9223372036854775808"), None);
        assert_eq!(exact_int("1e300"), None);
        assert_eq!(exact_int("twelve"), None);
        // What a float would round.
        assert_eq!(exact_int("4503599627370497.5"), None);
        assert_eq!(exact_int("1.00000000000000001"), None);
        assert_eq!(exact_int("1.5e1"), Some(15));
        assert_eq!(exact_int("15e-1"), None);
        assert_eq!(exact_int("-0.0"), Some(0));
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "n",
            arrow_schema::DataType::Int64,
            true,
        )]));
        let mut dec = crate::decode::PageDecoder::new(schema.clone(), 4, true).unwrap();
        assert!(
            dec.decode_all(br#"[{"n": 19.99}]"#).is_err(),
            "not truncated to 19"
        );
        let mut dec = crate::decode::PageDecoder::new(schema, 4, true).unwrap();
        let batches = dec
            .decode_all(br#"[{"n": 19}, {"n": 2.0}, {"n": null}]"#)
            .unwrap();
        assert_eq!(batches[0].num_rows(), 3);
    }

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

/// Decodes any JSON value of a `json`-typed column into its JSON text, straight from
/// arrow-json's tape (no value tree).
#[derive(Debug)]
pub struct JsonTextFactory;

impl arrow_json::reader::DecoderFactory for JsonTextFactory {
    fn make_default_decoder(
        &self,
        _ctx: &arrow_json::reader::DecoderContext,
        field: &arrow_schema::FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn arrow_json::reader::ArrayDecoder>>, arrow_schema::ArrowError> {
        if field.metadata().contains_key(JSON_TEXT) {
            return Ok(Some(Box::new(JsonTextDecoder)));
        }
        // arrow-json reads `19.99` into an integer column as 19: ours refuses it.
        Ok((field.data_type() == &arrow_schema::DataType::Int64)
            .then(|| Box::new(ExactInt64) as Box<dyn arrow_json::reader::ArrayDecoder>))
    }
}

/// Decodes an `int64` column exactly: a number with a fraction, or one past the range of
/// 64-bit integers, is an invalid value (for `schema.on_invalid` to decide), never rounded
/// or truncated. `100.0` and `1e3` are whole numbers, and are taken.
struct ExactInt64;

impl arrow_json::reader::ArrayDecoder for ExactInt64 {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement as T;
        use arrow_schema::ArrowError;
        let mut builder = arrow_array::builder::Int64Builder::with_capacity(pos.len());
        let inexact = |s: &str| {
            ArrowError::JsonError(format!(
                "{s} is not a whole number an int64 column can hold exactly (a fraction, or \
                 past ±9223372036854775807): declare the column as `decimal` or `float64`"
            ))
        };
        for p in pos {
            match tape.get(*p) {
                T::Null => builder.append_null(),
                T::Number(idx) | T::String(idx) => {
                    let s = tape.get_string(idx);
                    builder.append_value(exact_int(s).ok_or_else(|| inexact(s))?);
                }
                T::I32(v) => builder.append_value(v as i64),
                T::I64(high) => match tape.get(p + 1) {
                    T::I32(low) => {
                        builder.append_value(((high as i64) << 32) | (low as u32) as i64)
                    }
                    _ => return Err(tape.error(*p, "i64")),
                },
                _ => return Err(tape.error(*p, "an integer")),
            }
        }
        Ok(Arc::new(builder.finish()))
    }
}

/// `text` as an i64 if it is exactly one: digits, or a whole number written with a zero
/// fraction or an exponent (within the integers a float holds exactly).
fn exact_int(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(v) = text.parse::<i64>() {
        return Some(v);
    }
    // Read as decimal text, never through a float (which would round `2^52 + 0.5`): digits,
    // an optional fraction, an optional exponent; whole only if every digit past the point
    // is zero.
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1i128, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    // The value is digits × 10^shift.
    let shift = exponent.checked_sub(frac.len() as i32)?;
    let digits = if shift >= 0 {
        if shift > 19 && digits.bytes().any(|b| b != b'0') {
            return None;
        }
        format!("{digits}{}", "0".repeat(shift.min(19) as usize))
    } else {
        let cut = digits.len().checked_sub(shift.unsigned_abs() as usize)?;
        if digits[cut..].bytes().any(|b| b != b'0') {
            return None; // a fraction
        }
        digits[..cut].to_string()
    };
    let digits = digits.trim_start_matches('0');
    if digits.len() > 19 {
        return None;
    }
    let value = sign * digits.parse::<i128>().unwrap_or(0);
    i64::try_from(value).ok()
}

struct JsonTextDecoder;

impl arrow_json::reader::ArrayDecoder for JsonTextDecoder {
    fn decode(
        &mut self,
        tape: &arrow_json::reader::Tape<'_>,
        pos: &[u32],
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_json::reader::TapeElement;
        let mut builder =
            arrow_array::builder::StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        let mut text = String::new();
        for p in pos {
            if matches!(tape.get(*p), TapeElement::Null) {
                builder.append_null();
                continue;
            }
            text.clear();
            write_json(tape, *p, &mut text)?;
            builder.append_value(&text);
        }
        Ok(Arc::new(builder.finish()))
    }
}

fn write_json(
    tape: &arrow_json::reader::Tape<'_>,
    idx: u32,
    out: &mut String,
) -> Result<(), arrow_schema::ArrowError> {
    use arrow_json::reader::TapeElement as T;
    let quote = |s: &str, out: &mut String| {
        out.push_str(&serde_json::to_string(s).expect("strings serialize"));
    };
    match tape.get(idx) {
        T::StartObject(end) => {
            out.push('{');
            let mut cur = idx + 1;
            while cur < end {
                if cur > idx + 1 {
                    out.push(',');
                }
                match tape.get(cur) {
                    T::String(s) => quote(tape.get_string(s), out),
                    _ => return Err(tape.error(cur, "object key")),
                }
                out.push(':');
                cur += 1;
                write_json(tape, cur, out)?;
                cur = tape.next(cur, "value")?;
            }
            out.push('}');
        }
        T::StartList(end) => {
            out.push('[');
            let mut cur = idx + 1;
            while cur < end {
                if cur > idx + 1 {
                    out.push(',');
                }
                write_json(tape, cur, out)?;
                cur = tape.next(cur, "value")?;
            }
            out.push(']');
        }
        T::String(s) => quote(tape.get_string(s), out),
        T::Number(s) => out.push_str(tape.get_string(s)),
        T::I64(high) => match tape.get(idx + 1) {
            T::I32(low) => out.push_str(&(((high as i64) << 32) | (low as u32) as i64).to_string()),
            _ => return Err(tape.error(idx, "i64")),
        },
        T::I32(v) => out.push_str(&v.to_string()),
        T::F64(high) => match tape.get(idx + 1) {
            T::F32(low) => {
                out.push_str(&f64::from_bits(((high as u64) << 32) | low as u64).to_string())
            }
            _ => return Err(tape.error(idx, "f64")),
        },
        T::F32(v) => out.push_str(&f32::from_bits(v).to_string()),
        T::True => out.push_str("true"),
        T::False => out.push_str("false"),
        T::Null => out.push_str("null"),
        _ => return Err(tape.error(idx, "a value")),
    }
    Ok(())
}
