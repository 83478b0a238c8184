//! Page bodies to Arrow record batches.
//!
//! The records array is found with serde_json's borrowed `RawValue` (no value tree is built)
//! and handed, as a byte range of the body, to `arrow-json`'s schema-driven decoder, which
//! reads the array's elements straight into Arrow builders. The schema is inferred once, from
//! the first page, and frozen for the run; it keeps the fields in the order the source sent
//! them.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::JsonPointer;

/// Where a page's records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Byte range of the records array in the body.
    pub range: Range<usize>,
    /// Number of elements in the array.
    pub count: u64,
}

/// Finds the array at `pointer` in `body` and counts its elements. The error says what was
/// wrong in words fit for a log line.
pub fn locate(body: &[u8], pointer: &JsonPointer) -> Result<Located, String> {
    let raw = raw_at(body, pointer)?.ok_or_else(|| format!("no records at {pointer}"))?;
    let text = raw.get();
    if !text.starts_with('[') {
        return Err(format!(
            "the value at {pointer} is not an array (it starts with `{}`)",
            text.chars().next().unwrap_or(' ')
        ));
    }
    let count = serde_json::Deserializer::from_str(text)
        .deserialize_seq(CountElements)
        .map_err(|e| format!("invalid JSON in the records array: {e}"))?;
    let start = text.as_ptr() as usize - body.as_ptr() as usize;
    Ok(Located {
        range: start..start + text.len(),
        count,
    })
}

/// Reads a non-negative integer at `pointer` (a total). Absent or `null` is `None`.
pub fn u64_at(body: &[u8], pointer: &JsonPointer) -> Result<Option<u64>, String> {
    match raw_at(body, pointer)? {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<u64>(raw.get())
            .map(Some)
            .map_err(|_| format!("the value at {pointer} is not a count: {}", raw.get())),
    }
}

/// The value at `pointer` (small values: totals, flags, cursors, URLs). Absent is `None`.
pub fn value_at(body: &[u8], pointer: &JsonPointer) -> Result<Option<serde_json::Value>, String> {
    match raw_at(body, pointer)? {
        None => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|e| format!("the value at {pointer} is not valid JSON: {e}")),
    }
}

/// The raw JSON text at `pointer`, borrowed from `body`. Validates the whole body as JSON.
fn raw_at<'a>(body: &'a [u8], pointer: &JsonPointer) -> Result<Option<&'a RawValue>, String> {
    let root: &RawValue =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let mut current = root;
    for token in pointer.tokens() {
        let text = current.get();
        let mut de = serde_json::Deserializer::from_str(text);
        let found = match text.as_bytes().first() {
            Some(b'{') => de.deserialize_map(FindKey(token)),
            Some(b'[') => match token.parse::<usize>() {
                Ok(index) => de.deserialize_seq(FindIndex(index)),
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        }
        .map_err(|e| format!("the body is not valid JSON: {e}"))?;
        match found {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Walks an object, borrowing the value of one key and skipping the rest.
struct FindKey<'k>(&'k str);

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matched) = map.next_key_seed(KeyIs(self.0))? {
            if matched && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares a key without allocating when it has no escapes.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

struct FindIndex(usize);

impl<'de> Visitor<'de> for FindIndex {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0;
        loop {
            if i == self.0 {
                match seq.next_element::<&'de RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
}

struct CountElements;

impl<'de> Visitor<'de> for CountElements {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// Infers the column schema from the records of the first page (a JSON array), keeping the
/// order in which fields first appear. Fields that are null throughout become strings, so
/// that later non-null values still decode.
pub fn infer_schema(records: &[u8]) -> Result<Schema, String> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(records)
        .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
    if let Some(i) = values.iter().position(|v| !v.is_object()) {
        return Err(format!(
            "record {i} is not a JSON object: the records pointer must name an array of objects"
        ));
    }
    let schema = arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| format!("cannot infer a schema from the first page: {e}"))?;
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Arc::new(nulls_to_strings(f)))
            .collect::<Fields>(),
    ))
}

/// Fields of the records array that `schema` does not have, in order of appearance.
pub fn new_fields(schema: &Schema, records: &[u8]) -> Result<Vec<Field>, String> {
    let page = infer_schema(records)?;
    Ok(page
        .fields()
        .iter()
        .filter(|f| schema.field_with_name(f.name()).is_err())
        .map(|f| f.as_ref().clone())
        .collect())
}

fn nulls_to_strings(field: &Field) -> Field {
    let data_type = match field.data_type() {
        DataType::Null => DataType::Utf8,
        DataType::List(inner) => DataType::List(Arc::new(nulls_to_strings(inner))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Arc::new(nulls_to_strings(f)))
                .collect(),
        ),
        other => other.clone(),
    };
    Field::new(field.name(), data_type, true)
}

/// Decodes records arrays into batches of a fixed schema.
pub struct PageDecoder {
    decoder: Decoder,
}

impl PageDecoder {
    /// `strict`: a field outside the schema is an error (rather than dropped).
    pub fn new(schema: SchemaRef, batch_size: usize, strict: bool) -> Result<Self, ArrowError> {
        let decoder = ReaderBuilder::new(schema)
            .with_batch_size(batch_size.max(1))
            .with_strict_mode(strict)
            // Columns declared `json` keep any value as its JSON text.
            .with_decoder_factory(Arc::new(crate::columns::JsonTextFactory))
            // Each element of the records array is a row.
            .with_flatten(true)
            // A column inferred as text still takes numbers and booleans.
            .with_coerce_primitive(true)
            .build_decoder()?;
        Ok(PageDecoder { decoder })
    }

    /// Decodes a whole records array; nothing of it is returned unless all of it decoded.
    pub fn decode_all(&mut self, records: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut out = Vec::new();
        let result = self.decode(records, |b| {
            out.push(b);
            Ok(())
        });
        if let Err(e) = result {
            // Drop what the failed page left in the decoder.
            let _ = self.decoder.flush();
            return Err(e);
        }
        Ok(out)
    }

    /// Decodes one records array; `emit` receives each batch (one per `batch_size` rows).
    pub fn decode(
        &mut self,
        records: &[u8],
        mut emit: impl FnMut(RecordBatch) -> Result<(), ArrowError>,
    ) -> Result<(), ArrowError> {
        let mut rest = records;
        while !rest.is_empty() {
            let read = self.decoder.decode(rest)?;
            rest = &rest[read..];
            if !rest.is_empty()
                && let Some(batch) = self.decoder.flush()?
            {
                emit(batch)?;
            }
        }
        if let Some(batch) = self.decoder.flush()? {
            emit(batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(s: &str) -> JsonPointer {
        s.parse().unwrap()
    }

    #[test]
    fn locates_records() {
        let body = br#"{"meta":{"x":[1,2]},"data":{"items":[{"a":1},{"a":2}]},"total":9}"#;
        let got = locate(body, &ptr("/data/items")).unwrap();
        assert_eq!(got.count, 2);
        assert_eq!(&body[got.range], br#"[{"a":1},{"a":2}]"#);
        assert_eq!(u64_at(body, &ptr("/total")).unwrap(), Some(9));
        assert_eq!(u64_at(body, &ptr("/nope")).unwrap(), None);
        let bare = b" [ ] ";
        assert_eq!(locate(bare, &ptr("")).unwrap().count, 0);
        assert!(
            locate(body, &ptr("/meta"))
                .unwrap_err()
                .contains("not an array")
        );
        assert!(
            locate(body, &ptr("/missing"))
                .unwrap_err()
                .contains("no records")
        );
        assert!(locate(b"{\"data\":[1,", &ptr("/data")).is_err());
    }

    #[test]
    fn infers_in_source_order_and_decodes() {
        let records = br#"[{"z":1,"a":"x","n":null,"l":[1.5]},{"z":2,"a":"y","n":null,"l":[]}]"#;
        let schema = infer_schema(records).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["z", "a", "n", "l"]);
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
        let mut dec = PageDecoder::new(Arc::new(schema), 1, true).unwrap();
        let mut rows = 0;
        dec.decode(records, |b| {
            rows += b.num_rows();
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, 2);
    }
}

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

fn shorten(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// The fields of one record (a JSON object) that `schema` cannot take, with the reasons.
fn invalid_fields(
    schema: &SchemaRef,
    record: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for field in schema.fields() {
        match record.get(field.name()) {
            None | Some(serde_json::Value::Null) if !field.is_nullable() => out.push((
                field.name().clone(),
                "the column is declared not nullable".to_string(),
            )),
            None | Some(serde_json::Value::Null) => {}
            Some(value) => {
                let single = Arc::new(Schema::new(vec![field.as_ref().clone()]));
                let one =
                    serde_json::Value::Array(vec![serde_json::json!({ field.name(): value })]);
                if let Err(e) = decodes(&single, one.to_string().as_bytes(), false) {
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
        let record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(item.get()).ok()?;
        let (field, reason) = invalid_fields(schema, &record).into_iter().next()?;
        let value = record
            .get(&field)
            .map(shorten)
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
        let mut record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(item.get()).map_err(|e| format!("record {index}: {e}"))?;
        for (field, reason) in invalid_fields(schema, &record) {
            if schema
                .field_with_name(&field)
                .is_ok_and(|f| !f.is_nullable())
            {
                return Err(format!(
                    "record {index} of the page: field `{field}`: {reason}, and null is not \
                     allowed there"
                ));
            }
            record.insert(field.clone(), serde_json::Value::Null);
            match counts.iter_mut().find(|(f, _)| *f == field) {
                Some((_, n)) => *n += 1,
                None => counts.push((field, 1)),
            }
        }
        out.extend_from_slice(
            serde_json::to_string(&record)
                .expect("serializes")
                .as_bytes(),
        );
    }
    out.push(b']');
    Ok((out, counts))
}
