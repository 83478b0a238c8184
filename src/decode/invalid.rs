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

/// The fields of one record (a JSON object) that `schema` cannot take, with the reasons.
fn invalid_fields(schema: &SchemaRef, record: &Record<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in schema.fields() {
        let raw = value(record, field.name()).filter(|v| v.get() != "null");
        match raw {
            None if !field.is_nullable() => out.push((
                field.name().clone(),
                "the column is declared not nullable".to_string(),
            )),
            None => {}
            Some(raw) => {
                let single = Arc::new(Schema::new(vec![field.as_ref().clone()]));
                let key = serde_json::to_string(field.name()).expect("strings serialize");
                let one = format!("[{{{key}:{}}}]", raw.get());
                if let Err(e) = decodes(&single, one.as_bytes(), false) {
                    out.push((field.name().clone(), e.to_string()));
                }
            }
        }
    }
    out
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
        let (field, reason) = invalid_fields(schema, &record).into_iter().next()?;
        let value = value(&record, &field)
            .map(|v| shorten(v.get()))
            .unwrap_or_else(|| "(absent)".into());
        return Some(Invalid {
            index,
            field,
            value,
            reason,
        });
    }
    None
}

/// Values written as null, per column.
pub type NullCounts = Vec<(String, u64)>;

/// The records array with every value that `schema` cannot take replaced by null, and how
/// many were replaced per field. Fails when a replaced value is in a non-nullable column.
pub fn null_invalid(
    schema: &SchemaRef,
    records: &[u8],
    strict: bool,
) -> Result<(Vec<u8>, NullCounts), String> {
    let items: Vec<&RawValue> = serde_json::from_slice(records)
        .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
    let mut counts: Vec<(String, u64)> = Vec::new();
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
        let invalid = invalid_fields(schema, &record);
        for (field, reason) in &invalid {
            if schema
                .field_with_name(field)
                .is_ok_and(|f| !f.is_nullable())
            {
                return Err(format!(
                    "record {index} of the page: field `{field}`: {reason}, and null is not \
                     allowed there"
                ));
            }
            match counts.iter_mut().find(|(f, _)| f == field) {
                Some((_, n)) => *n += 1,
                None => counts.push((field.clone(), 1)),
            }
        }
        out.push(b'{');
        for (k, (name, raw)) in record.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(serde_json::to_string(name).expect("serializes").as_bytes());
            out.push(b':');
            let nulled = invalid.iter().any(|(f, _)| f == name);
            out.extend_from_slice(if nulled {
                b"null"
            } else {
                raw.get().as_bytes()
            });
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
}
