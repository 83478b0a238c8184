//! Finding, and nulling, the values a page's columns cannot take: only after a page
//! failed to decode, so cost does not matter here.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{ArrowError, Schema, SchemaRef};
use serde_json::value::RawValue;

use super::PageDecoder;

/// The first value of a records array that the schema cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The record's index in the page.
    pub index: usize,
    pub field: String,
    /// The value as JSON text (shortened).
    pub value: String,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} of the page: field `{}`: the value {} cannot be read: {}",
            self.index, self.field, self.value, self.reason
        )
    }
}

fn decodes(schema: &SchemaRef, records: &[u8], strict: bool) -> Result<(), ArrowError> {
    PageDecoder::new(schema.clone(), 16, strict)?
        .decode_all(records)
        .map(|_| ())
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text.to_string()
    }
}

/// One record's fields, each value kept as the text the server sent: a record rewritten
/// with a value nulled keeps every other digit as it was (a value tree would round
/// integers past 64 bits).
type Record<'a> = Vec<(String, &'a RawValue)>;

fn record(item: &RawValue) -> Result<Record<'_>, serde_json::Error> {
    let map: std::collections::HashMap<String, &RawValue> = serde_json::from_str(item.get())?;
    Ok(map.into_iter().collect())
}

fn value<'a>(record: &Record<'a>, name: &str) -> Option<&'a RawValue> {
    record.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

/// Whether `raw` decodes as the value of `field` alone (`None`), or why not.
fn field_error(field: &arrow_schema::Field, raw: &RawValue) -> Option<String> {
    let single = Arc::new(Schema::new(vec![field.clone()]));
    let key = serde_json::to_string(field.name()).expect("strings serialize");
    let one = format!("[{{{key}:{}}}]", raw.get());
    decodes(&single, one.as_bytes(), false)
        .err()
        .map(|e| e.to_string())
}

fn child(path: &str, name: &str) -> String {
    match path {
        "" => name.to_string(),
        _ => format!("{path}.{name}"),
    }
}

/// The first value below `raw` (the value of `field`, at `path`) that its column cannot
/// take: the deepest one, inside objects and lists of objects, so that the message and
/// the null name the value, not the whole object around it.
fn first_invalid(
    field: &arrow_schema::Field,
    raw: &RawValue,
    path: &str,
) -> Option<(String, String, String)> {
    if raw.get() == "null" {
        return (!field.is_nullable()).then(|| {
            (
                path.to_string(),
                "null".to_string(),
                "the column is declared not nullable".to_string(),
            )
        });
    }
    let reason = field_error(field, raw)?;
    let deeper = match field.data_type() {
        arrow_schema::DataType::Struct(children) => record(raw).ok().and_then(|object| {
            children.iter().find_map(|c| {
                let v = value(&object, c.name())?;
                first_invalid(c, v, &child(path, c.name()))
            })
        }),
        arrow_schema::DataType::List(item) => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .ok()
            .and_then(|items| {
                let at = format!("{path}[]");
                items.iter().find_map(|v| first_invalid(item, v, &at))
            }),
        _ => None,
    };
    Some(deeper.unwrap_or_else(|| (path.to_string(), shorten(raw.get()), reason)))
}

/// `raw` (the value of `field`, at `path`) with every value its column cannot take replaced
/// by null, as deep as the objects and lists go, counting each by path; `None` if it
/// decodes as it is. A value in a non-nullable column cannot be nulled: an error.
fn repaired(
    field: &arrow_schema::Field,
    raw: &RawValue,
    path: &str,
    counts: &mut NullCounts,
) -> Result<Option<String>, String> {
    if field_error(field, raw).is_none() {
        return Ok(None);
    }
    // Counts made inside are undone if the value ends up null as a whole.
    let counted = counts.clone();
    let rebuilt = match field.data_type() {
        arrow_schema::DataType::Struct(children) => match record(raw) {
            Ok(object) => {
                let mut text = String::from("{");
                for (k, (name, v)) in object.iter().enumerate() {
                    if k > 0 {
                        text.push(',');
                    }
                    text.push_str(&serde_json::to_string(name).expect("serializes"));
                    text.push(':');
                    let fixed = match children.find(name) {
                        Some((_, c)) => repaired(c, v, &child(path, name), counts)?,
                        None => None,
                    };
                    text.push_str(fixed.as_deref().unwrap_or(v.get()));
                }
                text.push('}');
                Some(text)
            }
            Err(_) => None,
        },
        arrow_schema::DataType::List(item) => {
            match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                Ok(items) => {
                    let at = format!("{path}[]");
                    let mut text = String::from("[");
                    for (k, v) in items.iter().enumerate() {
                        if k > 0 {
                            text.push(',');
                        }
                        let fixed = repaired(item, v, &at, counts)?;
                        text.push_str(fixed.as_deref().unwrap_or(v.get()));
                    }
                    text.push(']');
                    Some(text)
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    // Repaired inside, if it now decodes; else the value itself becomes null.
    if let Some(text) = rebuilt
        && let Ok(value) = serde_json::from_str::<&RawValue>(&text)
        && field_error(field, value).is_none()
    {
        return Ok(Some(text));
    }
    if !field.is_nullable() {
        return Err(format!(
            "field `{path}`: {}, and null is not allowed there",
            field_error(field, raw).unwrap_or_default()
        ));
    }
    *counts = counted;
    match counts.iter_mut().find(|(f, _)| f == path) {
        Some((_, n)) => *n += 1,
        None => counts.push((path.to_string(), 1)),
    }
    Ok(Some("null".to_string()))
}

/// Finds the first record and field of a records array that `schema` cannot take. Used
/// only after the array failed to decode, so its cost does not matter.
pub fn find_invalid(schema: &SchemaRef, records: &[u8], strict: bool) -> Option<Invalid> {
    let items: Vec<&RawValue> = serde_json::from_slice(records).ok()?;
    for (index, item) in items.iter().enumerate() {
        let alone = format!("[{}]", item.get());
        if decodes(schema, alone.as_bytes(), strict).is_ok() {
            continue;
        }
        let record = record(item).ok()?;
        let null: &RawValue = serde_json::from_str("null").expect("null");
        let (field, value, reason) = schema.fields().iter().find_map(|f| {
            let raw = value(&record, f.name()).unwrap_or(null);
            first_invalid(f, raw, f.name())
        })?;
        return Some(Invalid {
            index,
            field,
            value,
            reason,
        });
    }
    None
}

/// Values written as null, per column (a dotted path for a value inside an object).
pub type NullCounts = Vec<(String, u64)>;

/// The records array with every value that `schema` cannot take replaced by null (inside
/// objects, the value only, not the object), and how many were replaced per path. Fails
/// when a replaced value is in a non-nullable column.
pub fn null_invalid(
    schema: &SchemaRef,
    records: &[u8],
    strict: bool,
) -> Result<(Vec<u8>, NullCounts), String> {
    let items: Vec<&RawValue> = serde_json::from_slice(records)
        .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
    let mut counts: NullCounts = Vec::new();
    let mut out = Vec::with_capacity(records.len());
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let alone = format!("[{}]", item.get());
        if decodes(schema, alone.as_bytes(), strict).is_ok() {
            out.extend_from_slice(item.get().as_bytes());
            continue;
        }
        let record = record(item).map_err(|e| format!("record {index}: {e}"))?;
        for f in schema.fields() {
            if !f.is_nullable() && value(&record, f.name()).is_none_or(|v| v.get() == "null") {
                return Err(format!(
                    "record {index} of the page: field `{}`: the column is declared not \
                     nullable, and the value is null or absent",
                    f.name()
                ));
            }
        }
        out.push(b'{');
        for (k, (name, raw)) in record.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(serde_json::to_string(name).expect("serializes").as_bytes());
            out.push(b':');
            let fixed = match schema.field_with_name(name) {
                Ok(f) => repaired(f, raw, name, &mut counts)
                    .map_err(|e| format!("record {index} of the page: {e}"))?,
                Err(_) => None,
            };
            out.extend_from_slice(fixed.as_deref().unwrap_or(raw.get()).as_bytes());
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok((out, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulling_one_value_keeps_every_digit_of_the_others() {
        let schema = Arc::new(Schema::new(vec![
            arrow_schema::Field::new("n", arrow_schema::DataType::Int64, true),
            arrow_schema::Field::new("big", arrow_schema::DataType::Decimal128(38, 0), true),
        ]));
        let records = br#"[{"n": 1.5, "big": 123456789012345678901234567890}]"#;
        let (fixed, counts) = null_invalid(&schema, records, true).unwrap();
        assert_eq!(counts, [("n".to_string(), 1)]);
        let text = String::from_utf8(fixed).unwrap();
        assert!(
            text.contains("\"big\":123456789012345678901234567890"),
            "{text}"
        );
        assert!(text.contains("\"n\":null"), "{text}");
        let invalid = find_invalid(&schema, records, true).unwrap();
        assert_eq!(
            (invalid.field.as_str(), invalid.value.as_str()),
            ("n", "1.5")
        );
    }

    #[test]
    fn inside_objects_and_lists_only_the_value_is_named_and_nulled() {
        use arrow_schema::{DataType, Field, Fields};
        let fields = Fields::from(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("count", DataType::Int64, true),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Struct(fields.clone()), true),
            Field::new(
                "lines",
                DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true))),
                true,
            ),
        ]));
        let records = br#"[{"f": {"name": "a", "count": "many"}, "lines": [{"name": "x", "count": 1}, {"name": "y", "count": 2.5}]}]"#;
        let invalid = find_invalid(&schema, records, true).unwrap();
        assert_eq!(
            (invalid.field.as_str(), invalid.value.as_str()),
            ("f.count", "\"many\"")
        );
        let (fixed, counts) = null_invalid(&schema, records, true).unwrap();
        let mut counts = counts;
        counts.sort();
        assert_eq!(
            counts,
            [("f.count".to_string(), 1), ("lines[].count".to_string(), 1)]
        );
        let text = String::from_utf8(fixed).unwrap();
        assert!(
            text.contains(r#""name":"a""#) && text.contains(r#""name":"y""#),
            "{text}"
        );
        assert!(decodes(&schema, text.as_bytes(), true).is_ok(), "{text}");
    }
}
