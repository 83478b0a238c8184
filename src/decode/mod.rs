//! Page bodies to Arrow record batches.
//!
//! The records array is found in one validating pass with serde_json's borrowed `RawValue`
//! (no value tree is built) and handed, as a byte range of the body, to `arrow-json`'s
//! schema-driven decoder, which reads the array's elements straight into Arrow builders. The
//! schema is inferred once, from the first page, and frozen for the run; it keeps the fields
//! in the order the source sent them.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, SchemaRef};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::vocab::JsonPointer;

mod exact;
mod infer;
mod invalid;

pub use exact::ExactDecoders;
pub use infer::{dropped_fields, evolve, infer_schema};
pub use invalid::{Invalid, NullCounts, find_invalid, null_invalid};

/// Where a page's records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Byte range of the records array in the body.
    pub range: Range<usize>,
    /// Number of elements in the array.
    pub count: u64,
}

/// What the fetcher reads from a page body.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    pub records: Located,
    /// The value at each of the other pointers (`None`: absent).
    pub values: Vec<Option<serde_json::Value>>,
    /// The value of the [`RecordField`] asked for (`None`: no record, or absent in it).
    pub field: Option<serde_json::Value>,
}

/// A field of the page's first or last record, read during the scan: a keyset cursor
/// (`?starting_after=<id of the last record>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordField {
    First(JsonPointer),
    Last(JsonPointer),
}

/// Validates `body` as JSON and, in the same single pass, finds the records array at
/// `records`, counts its elements, and reads the (small) values at `pointers`: totals, flags,
/// cursors, next URLs. Bodies are hundreds of kilobytes and every extra pass over them showed
/// in profiles, so a page is walked once. The error says what was wrong in words fit for a
/// log line.
pub fn scan(
    body: &[u8],
    records: &JsonPointer,
    pointers: &[JsonPointer],
    field: Option<&RecordField>,
) -> Result<Scanned, String> {
    // Checked once as a whole, so that borrowing each record below does not check it again.
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let found =
        walk(text, records, pointers).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let mut in_record = None;
    let located = match found.records {
        None => return Err(format!("no records at {records}")),
        Some(RecordsAt::NotArray(kind)) => {
            return Err(format!(
                "the value at {records} is not an array (it is {kind})"
            ));
        }
        Some(RecordsAt::Array {
            count,
            span: Some((first, last)),
        }) => {
            in_record = match field {
                Some(RecordField::First(p)) => Some((first, p)),
                Some(RecordField::Last(p)) => Some((last, p)),
                None => None,
            };
            // Out from the first and last elements, over whitespace, to the brackets.
            let offset = |raw: &RawValue| raw.get().as_ptr() as usize - body.as_ptr() as usize;
            let start = body[..offset(first)].trim_ascii_end().len() - 1;
            let after = offset(last) + last.get().len();
            let end = body.len() - body[after..].trim_ascii_start().len() + 1;
            Located {
                range: start..end,
                count,
            }
        }
        Some(RecordsAt::Array { span: None, .. }) => {
            // An empty array has no element to find it by; look for it as a value (an empty
            // page is small, and comes once per run).
            let raw = walk(text, &JsonPointer::root(), std::slice::from_ref(records))
                .ok()
                .and_then(|f| f.values[0])
                .ok_or_else(|| format!("no records at {records}"))?;
            let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
            Located {
                range: start..start + raw.get().len(),
                count: 0,
            }
        }
    };
    let values = found
        .values
        .iter()
        .zip(pointers)
        .map(|(raw, pointer)| {
            raw.map(|raw| {
                serde_json::from_str(raw.get())
                    .map_err(|e| format!("the value at {pointer} is not valid JSON: {e}"))
            })
            .transpose()
        })
        .collect::<Result<_, _>>()?;
    let field = match in_record {
        Some((record, pointer)) if pointer.is_root() => Some(record),
        Some((record, pointer)) => lookup(record, pointer.tokens()),
        None => None,
    }
    .map(|raw| serde_json::from_str(raw.get()))
    .transpose()
    .map_err(|e| format!("a record's value is not valid JSON: {e}"))?;
    Ok(Scanned {
        records: located,
        values,
        field,
    })
}

/// One pass over `body`.
fn walk<'de>(
    body: &'de str,
    records: &JsonPointer,
    pointers: &[JsonPointer],
) -> Result<Found<'de>, serde_json::Error> {
    let wanted = std::iter::once(records)
        .chain(pointers)
        .map(JsonPointer::tokens)
        .enumerate()
        .collect();
    let mut found = Found {
        records: None,
        values: vec![None; pointers.len()],
    };
    let mut de = serde_json::Deserializer::from_str(body);
    Walk {
        wanted,
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// What a walk found: slot 0 is the records array, slot `i` the value of pointer `i - 1`.
struct Found<'de> {
    records: Option<RecordsAt<'de>>,
    values: Vec<Option<&'de RawValue>>,
}

impl<'de> Found<'de> {
    fn set(&mut self, slot: usize, raw: &'de RawValue) -> Result<(), serde_json::Error> {
        if slot == 0 {
            // The records array is also the value of another pointer (rare): walk it again.
            let mut de = serde_json::Deserializer::from_str(raw.get());
            self.records
                .get_or_insert(RecordsSeed.deserialize(&mut de)?);
        } else {
            self.values[slot - 1].get_or_insert(raw);
        }
        Ok(())
    }
}

/// The value at the records pointer.
enum RecordsAt<'de> {
    /// Elements counted; the first and the last, if any.
    Array {
        count: u64,
        span: Option<(&'de RawValue, &'de RawValue)>,
    },
    /// Not an array: what it is instead.
    NotArray(&'static str),
}

/// Visits one JSON value, descending only into the keys and indices some pointer still
/// wants. Everything else is skipped (and validated) without building anything.
struct Walk<'w, 'de> {
    /// (slot, tokens still to match below this value)
    wanted: Vec<(usize, &'w [String])>,
    found: &'w mut Found<'de>,
}

impl<'de> Walk<'_, 'de> {
    /// The wanted pointers that continue below a key or index that `matches` their next
    /// token.
    fn below(&mut self, matches: impl Fn(&str) -> bool) -> Walk<'_, 'de> {
        Walk {
            wanted: self
                .wanted
                .iter()
                .filter(|(_, tokens)| matches(&tokens[0]))
                .map(|&(slot, tokens)| (slot, &tokens[1..]))
                .collect(),
            found: &mut *self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.wanted.as_slice() {
            [] => {
                IgnoredAny::deserialize(d)?;
                Ok(())
            }
            // The usual case: the records array, and nothing else wanted within it.
            [(0, [])] => {
                let records = RecordsSeed.deserialize(d)?;
                self.found.records.get_or_insert(records);
                Ok(())
            }
            wanted if wanted.iter().any(|(_, tokens)| tokens.is_empty()) => {
                let raw = <&'de RawValue>::deserialize(d)?;
                for &(slot, tokens) in wanted {
                    // A pointer below one that ends here: look it up in the borrowed text.
                    let value = if tokens.is_empty() {
                        Some(raw)
                    } else {
                        lookup(raw, tokens)
                    };
                    if let Some(value) = value {
                        self.found.set(slot, value).map_err(de::Error::custom)?;
                    }
                }
                Ok(())
            }
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            map.next_value_seed(self.below(|token| token == key))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let step = self.below(|token| token.parse() == Ok(index));
            if seq.next_element_seed(step)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    // Scalars: the pointers that wanted to go deeper find nothing.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads the records array element by element: each is validated and borrowed (not parsed
/// into anything), counted, and the first and last kept to find the array's bytes by.
struct RecordsSeed;

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = RecordsAt<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RecordsAt<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed {
    type Value = RecordsAt<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0;
        let mut span = None;
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            count += 1;
            span = Some((span.map_or(element, |(first, _)| first), element));
        }
        Ok(RecordsAt::Array { count, span })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(RecordsAt::NotArray("an object"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RecordsAt::NotArray("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RecordsAt::NotArray("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RecordsAt::NotArray("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RecordsAt::NotArray("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RecordsAt::NotArray("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RecordsAt::NotArray("null"))
    }
}

/// An object key, borrowed from the body unless it has escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The value at `tokens` below `raw`, borrowed.
fn lookup<'de>(raw: &'de RawValue, tokens: &[String]) -> Option<&'de RawValue> {
    let mut found = Found {
        records: None,
        values: vec![None],
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Walk {
        wanted: vec![(1, tokens)],
        found: &mut found,
    }
    .deserialize(&mut de)
    .ok()?;
    found.values[0]
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
            .with_decoder_factory(Arc::new(ExactDecoders))
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

    fn locate(body: &[u8], pointer: &str) -> Result<Located, String> {
        scan(body, &ptr(pointer), &[], None).map(|s| s.records)
    }

    #[test]
    fn scans_records_and_values_in_one_pass() {
        let body = br#"{"meta":{"x":[1,2]},"data":{"items":[{"a":1},{"a":"],[{"}]},"total":9,"pages":[{"next":"n\"2"}]}"#;
        let got = scan(
            body,
            &ptr("/data/items"),
            &[
                ptr("/total"),
                ptr("/nope"),
                ptr("/pages/0/next"),
                ptr("/meta/x/1"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(got.records.count, 2);
        assert_eq!(&body[got.records.range], br#"[{"a":1},{"a":"],[{"}]"#);
        assert_eq!(
            got.values,
            vec![Some(9.into()), None, Some("n\"2".into()), Some(2.into())]
        );
        // A pointer below the records array, and one equal to it.
        let got = scan(
            body,
            &ptr("/data"),
            &[ptr("/data/items/1/a"), ptr("/meta")],
            None,
        );
        assert!(got.unwrap_err().contains("not an array"));
        let got = scan(body, &ptr("/data/items"), &[ptr("/data/items/1/a")], None).unwrap();
        assert_eq!(got.values, vec![Some("],[{".into())]);
        // Escaped keys still match.
        let got = scan(br#"{"d\u0061ta":[1, [2,3] ,{}]}"#, &ptr("/data"), &[], None).unwrap();
        assert_eq!(got.records.count, 3);
    }

    #[test]
    fn reads_a_field_of_the_first_or_the_last_record() {
        let body = br#"{"data":[{"id":"a","at":{"t":1}},{"id":2},{"id":"c\"","at":{"t":3}}]}"#;
        let field = |f: RecordField| scan(body, &ptr("/data"), &[], Some(&f)).unwrap().field;
        assert_eq!(field(RecordField::First(ptr("/id"))), Some("a".into()));
        assert_eq!(field(RecordField::Last(ptr("/id"))), Some("c\"".into()));
        assert_eq!(field(RecordField::Last(ptr("/at/t"))), Some(3.into()));
        assert_eq!(field(RecordField::Last(ptr("/nope"))), None);
        let empty = scan(
            b"{\"data\":[]}",
            &ptr("/data"),
            &[],
            Some(&RecordField::Last(ptr("/id"))),
        );
        assert_eq!(empty.unwrap().field, None);
    }

    #[test]
    fn locates_records() {
        let body = br#"{"meta":{"x":[1,2]},"data":{"items":[{"a":1},{"a":2}]},"total":9}"#;
        let got = locate(body, "/data/items").unwrap();
        assert_eq!(got.count, 2);
        assert_eq!(&body[got.range], br#"[{"a":1},{"a":2}]"#);
        assert_eq!(locate(b" [ ] ", "").unwrap().count, 0);
        let spaced = b"{\"n\": 1, \"data\" : [\n {\"a\": [1]} ,\t{}\n] , \"e\": [ ] }";
        let got = locate(spaced, "/data").unwrap();
        assert_eq!(got.count, 2);
        assert_eq!(&spaced[got.range], b"[\n {\"a\": [1]} ,\t{}\n]");
        let got = locate(spaced, "/e").unwrap();
        assert_eq!((got.count, &spaced[got.range]), (0, &b"[ ]"[..]));
        let got = scan(spaced, &ptr("/data"), &[ptr("/data"), ptr("/n")], None).unwrap();
        assert_eq!(got.records.count, 2);
        assert_eq!(got.values[1], Some(1.into()));
        assert_eq!(locate(b"[\n{}\n]", "").unwrap().count, 1);
        assert!(locate(body, "/meta").unwrap_err().contains("not an array"));
        assert!(locate(body, "/missing").unwrap_err().contains("no records"));
        assert!(locate(b"{\"data\":[1,", "/data").is_err());
        assert!(locate(b"{\"data\":[1]} x", "/data").is_err());
        assert!(locate(b"{\"data\":[1],\"x\":tru}", "/data").is_err());
    }

    #[test]
    fn infers_in_source_order_and_decodes() {
        let records = br#"[{"z":1,"a":"x","n":null,"l":[1.5]},{"z":2,"a":"y","n":null,"l":[]}]"#;
        let schema = infer_schema(records).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["z", "a", "n", "l"]);
        assert_eq!(schema.field(2).data_type(), &arrow_schema::DataType::Utf8);
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
