//! The columns of a run, inferred from its first page.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};
use serde_json::value::RawValue;

use crate::columns::JSON_TEXT;

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
    let seen = Scalars::of(records)?;
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Arc::new(refine(f, &mut vec![f.name().clone()], &seen)))
            .collect::<Fields>(),
    ))
}

/// A path to a value below the records: field names, `[]` for the items of a list.
type Path = Vec<String>;

/// What the scalar values at each path of a page look like, read from their text: what
/// arrow-json's inference cannot see once it has parsed a number into a float.
#[derive(Default)]
struct Scalars(HashMap<Path, Seen>);

#[derive(Clone, Copy)]
struct Seen {
    /// Every value is an integer literal.
    integers: bool,
    /// The most digits of an integer past the range of int64.
    longest_past_i64: Option<usize>,
    /// Every value is a date (`YYYY-MM-DD`).
    dates: bool,
    /// Every value is an ISO-8601 date-time with a UTC offset (an instant).
    instants: bool,
    /// Every value is an ISO-8601 date-time without one (a local time).
    local_times: bool,
    /// The most digits of a fraction of a second.
    fraction: usize,
}

impl Seen {
    const FIRST: Seen = Seen {
        integers: true,
        longest_past_i64: None,
        dates: true,
        instants: true,
        local_times: true,
        fraction: 0,
    };

    fn number(&mut self, text: &str) {
        (self.dates, self.instants, self.local_times) = (false, false, false);
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            self.integers = false;
        } else if text.parse::<i64>().is_err() {
            let n = digits.trim_start_matches('0').len();
            self.longest_past_i64 = self.longest_past_i64.max(Some(n));
        }
    }

    fn string(&mut self, text: &str) {
        self.integers = false;
        let date = text.len() == 10 && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok();
        self.dates &= date;
        // A date and a time, `T` or a space between them.
        let date_time = text.len() > 10
            && matches!(text.as_bytes()[10], b'T' | b't' | b' ')
            && chrono::NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d").is_ok();
        let zoned = date_time && is_instant(text);
        let local = date_time
            && !super::exact::has_offset(text)
            && ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .any(|f| chrono::NaiveDateTime::parse_from_str(text, f).is_ok());
        self.instants &= zoned;
        self.local_times &= local;
        if zoned || local {
            let fraction = text[19..]
                .strip_prefix('.')
                .map(|f| f.bytes().take_while(u8::is_ascii_digit).count())
                .unwrap_or(0);
            self.fraction = self.fraction.max(fraction);
        }
    }

    fn other(&mut self) {
        (self.integers, self.dates, self.instants, self.local_times) = (false, false, false, false);
    }

    /// The unit that keeps every fraction seen: microseconds at least (a source that drops
    /// a zero fraction would otherwise make a seconds column that refuses the next one).
    fn unit(&self) -> TimeUnit {
        if self.fraction > 6 {
            TimeUnit::Nanosecond
        } else {
            TimeUnit::Microsecond
        }
    }
}

/// Whether `text` is a date and time with its UTC offset, in a form big APIs send and the
/// timestamp decoder reads as the same instant: RFC 3339 (`Z`, `+02:00`), and the ISO 8601
/// basic offsets `+0000` (Salesforce, Jira) and `+05`, after a `T` or a space, seconds
/// required, any fraction. Anything else (no seconds, RFC 2822, epoch numbers) stays
/// what it is: a guess could be wrong.
fn is_instant(text: &str) -> bool {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return true;
    }
    // `%#z` takes `+HH`, `+HHMM` and `+HH:MM`; a seconds field is required by `%S`.
    let basic = |t: &str| {
        ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"]
            .iter()
            .any(|f| chrono::DateTime::parse_from_str(t, f).is_ok())
    };
    // Bytes, not characters: the text may hold any UTF-8 after the date.
    let offset = &text.as_bytes()[text.len().saturating_sub(5)..];
    let sign = |b: u8| b == b'+' || b == b'-';
    // The offset must be whole: `+HHMM` or `+HH` at the end, digits after the sign.
    let shaped = match offset {
        [s, h1, h2, m1, m2] if sign(*s) => [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()),
        [.., s, h1, h2] if sign(*s) => h1.is_ascii_digit() && h2.is_ascii_digit(),
        _ => false,
    };
    shaped && !text.as_bytes()[11..].iter().any(u8::is_ascii_whitespace) && basic(text)
}

impl Scalars {
    fn of(records: &[u8]) -> Result<Scalars, String> {
        let items: Vec<&RawValue> = serde_json::from_slice(records)
            .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
        let mut seen = Scalars::default();
        for item in items {
            seen.walk(item, &mut Vec::new());
        }
        Ok(seen)
    }

    fn walk(&mut self, raw: &RawValue, path: &mut Path) {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => {
                let Ok(fields) = serde_json::from_str::<HashMap<String, &RawValue>>(text) else {
                    return;
                };
                for (name, value) in fields {
                    path.push(name);
                    self.walk(value, path);
                    path.pop();
                }
            }
            Some(b'[') => {
                let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) else {
                    return;
                };
                path.push("[]".into());
                for item in items {
                    self.walk(item, path);
                }
                path.pop();
            }
            _ if text == "null" => {}
            first => {
                let entry = self.0.entry(path.clone()).or_insert(Seen::FIRST);
                match first {
                    Some(b'"') => match serde_json::from_str::<std::borrow::Cow<str>>(text) {
                        Ok(s) => entry.string(&s),
                        Err(_) => entry.other(),
                    },
                    Some(b'-' | b'0'..=b'9') => entry.number(text),
                    _ => entry.other(),
                }
            }
        }
    }

    fn at(&self, path: &Path) -> Option<Seen> {
        self.0.get(path).copied()
    }
}

/// A field as inferred by arrow-json, typed and made lossless by what its values looked
/// like: all integers, some past int64, become `decimal(38,0)` (text past 38 digits) rather
/// than float64, which would lose their last digits; text that is all ISO-8601 dates
/// becomes dates, all date-times with an offset UTC timestamps, all without one timestamps
/// without a zone (microseconds, nanoseconds if a fraction is finer); null throughout
/// becomes text, so that later values still decode; an object without fields on the page
/// (`"from": {}`, always empty in some APIs) is kept as its JSON text, which no format
/// refuses and which holds whatever fields it has later. Nested fields alike.
fn refine(field: &Field, path: &mut Path, seen: &Scalars) -> Field {
    let data_type = match field.data_type() {
        DataType::Struct(fields) if fields.is_empty() => return json_text(field.name()),
        DataType::Null => DataType::Utf8,
        DataType::Float64 => match seen.at(path) {
            Some(Seen {
                integers: true,
                longest_past_i64: Some(n),
                ..
            }) if n <= 38 => DataType::Decimal128(38, 0),
            Some(Seen {
                integers: true,
                longest_past_i64: Some(_),
                ..
            }) => DataType::Utf8,
            _ => DataType::Float64,
        },
        DataType::Utf8 => match seen.at(path) {
            Some(seen) if seen.dates => DataType::Date32,
            Some(seen) if seen.instants => DataType::Timestamp(seen.unit(), Some("UTC".into())),
            Some(seen) if seen.local_times => DataType::Timestamp(seen.unit(), None),
            _ => DataType::Utf8,
        },
        DataType::List(inner) => {
            path.push("[]".into());
            let item = refine(inner, path, seen);
            path.pop();
            DataType::List(Arc::new(item))
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    path.push(f.name().clone());
                    let refined = refine(f, path, seen);
                    path.pop();
                    Arc::new(refined)
                })
                .collect(),
        ),
        other => other.clone(),
    };
    Field::new(field.name(), data_type, true)
}

/// A column that keeps each value as its JSON text.
fn json_text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(std::collections::HashMap::from([(
        JSON_TEXT.to_string(),
        "true".to_string(),
    )]))
}

/// The columns `schema` grows into to hold `records` (`schema.drift = "evolve"`), at every
/// depth: fields new on this page come after the existing ones of their object (the
/// records', an object's, a list's items'), existing ones stay as they are; and the paths
/// of the fields added (`via.source.rel`, `lines[].sku`). No path: nothing new, and a page
/// that does not decode has a value its column cannot take.
pub fn evolve(schema: &Schema, records: &[u8]) -> Result<(Schema, Vec<String>), String> {
    let page = infer_schema(records)?;
    let mut added = Vec::new();
    let fields = merge_fields(schema.fields(), page.fields(), "", &mut added);
    Ok((
        Schema::new(fields).with_metadata(schema.metadata().clone()),
        added,
    ))
}

fn child(prefix: &str, name: &str) -> String {
    match prefix {
        "" => name.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

fn merge_fields(have: &Fields, page: &Fields, prefix: &str, added: &mut Vec<String>) -> Fields {
    let mut out: Vec<FieldRef> = have
        .iter()
        .map(|f| match page.find(f.name()) {
            Some((_, p)) => Arc::new(merge_field(f, p, &child(prefix, f.name()), added)),
            None => f.clone(),
        })
        .collect();
    for p in page.iter().filter(|p| have.find(p.name()).is_none()) {
        added.push(child(prefix, p.name()));
        out.push(p.clone());
    }
    out.into()
}

fn merge_field(have: &Field, page: &Field, at: &str, added: &mut Vec<String>) -> Field {
    match (have.data_type(), page.data_type()) {
        // JSON text holds any object.
        _ if have.metadata().contains_key(JSON_TEXT) => have.clone(),
        (DataType::Struct(h), DataType::Struct(p)) => have
            .clone()
            .with_data_type(DataType::Struct(merge_fields(h, p, at, added))),
        (DataType::List(h), DataType::List(p)) => {
            let item = merge_field(h, p, &format!("{at}[]"), added);
            have.clone().with_data_type(DataType::List(Arc::new(item)))
        }
        _ => have.clone(),
    }
}

/// Per field of the records that `schema` does not have, how many records carry it: what
/// `schema.drift = "ignore"` drops, counted for the manifest.
pub fn dropped_fields(schema: &Schema, records: &[u8]) -> Result<Vec<(String, u64)>, String> {
    use std::collections::BTreeMap;
    let items: Vec<&RawValue> = serde_json::from_slice(records)
        .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for item in items {
        count_dropped(schema.fields(), item, "", &mut counts);
    }
    Ok(counts.into_iter().collect())
}

/// Counts the keys of the object `raw` that `fields` lacks (by path), and those below the
/// fields that are objects or lists of objects; values are read only where the columns
/// have such structure, the rest is skipped unread.
fn count_dropped(
    fields: &Fields,
    raw: &RawValue,
    prefix: &str,
    counts: &mut std::collections::BTreeMap<String, u64>,
) {
    let Ok(object) = serde_json::from_str::<HashMap<String, &RawValue>>(raw.get()) else {
        return;
    };
    for (key, value) in object {
        let Some((_, field)) = fields.find(&key) else {
            *counts.entry(child(prefix, &key)).or_insert(0) += 1;
            continue;
        };
        if field.metadata().contains_key(JSON_TEXT) {
            continue;
        }
        match field.data_type() {
            DataType::Struct(inner) => count_dropped(inner, value, &child(prefix, &key), counts),
            DataType::List(item) => {
                if let DataType::Struct(inner) = item.data_type()
                    && let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(value.get())
                {
                    let at = format!("{}[]", child(prefix, &key));
                    for item in items {
                        count_dropped(inner, item, &at, counts);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_past_int64_are_inferred_as_decimals_not_floats() {
        let records = br#"[{"id": 1, "big": 18446744073709551615, "huge": 123456789012345678901234567890123456789012, "f": 1.5, "nested": {"n": [18446744073709551616]}},
                           {"id": 2, "big": null, "huge": 1, "f": 2, "nested": {"n": [3]}}]"#;
        let schema = infer_schema(records).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(38, 0));
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(3).data_type(), &DataType::Float64);
        let DataType::Struct(nested) = schema.field(4).data_type() else {
            panic!("{schema:?}")
        };
        let DataType::List(item) = nested[0].data_type() else {
            panic!("{nested:?}")
        };
        assert_eq!(item.data_type(), &DataType::Decimal128(38, 0));
        let batches = super::super::PageDecoder::new(Arc::new(schema), 8, true)
            .unwrap()
            .decode_all(records)
            .unwrap();
        let text = arrow_cast::display::array_value_to_string;
        assert_eq!(
            text(batches[0].column(1), 0).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            text(batches[0].column(2), 0).unwrap(),
            "123456789012345678901234567890123456789012"
        );
    }

    #[test]
    fn iso_dates_and_times_are_inferred_as_dates_and_timestamps() {
        let records = br#"[
            {"d": "2026-01-01", "z": "2026-01-01T00:00:37Z", "o": "2026-01-01T02:00:37+02:00",
             "l": "2026-01-01 00:00:37", "ns": "2026-01-01T00:00:37.123456789Z",
             "mixed": "2026-01-01T00:00:37Z", "word": "hello", "n": {"at": "2026-01-02"}},
            {"d": null, "z": "2026-01-01T00:00:38.5Z", "o": "2026-01-01T00:00:38-05:00",
             "l": "2026-01-01 00:00:38.25", "ns": "2026-01-01T00:00:38Z",
             "mixed": "2026-01-01T00:00:38", "word": "2026-01-01", "n": {"at": "2026-01-03"}}
        ]"#;
        let schema = infer_schema(records).unwrap();
        let utc = |unit| DataType::Timestamp(unit, Some("UTC".into()));
        let of = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
        assert_eq!(of("d"), DataType::Date32);
        assert_eq!(of("z"), utc(TimeUnit::Microsecond));
        assert_eq!(of("o"), utc(TimeUnit::Microsecond));
        assert_eq!(of("l"), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(of("ns"), utc(TimeUnit::Nanosecond));
        assert_eq!(of("mixed"), DataType::Utf8, "offsets on some only");
        assert_eq!(of("word"), DataType::Utf8);
        let DataType::Struct(n) = of("n") else {
            panic!()
        };
        assert_eq!(n[0].data_type(), &DataType::Date32);
        let batches = super::super::PageDecoder::new(Arc::new(schema.clone()), 8, true)
            .unwrap()
            .decode_all(records)
            .unwrap();
        let text = |col: &str, row| {
            let i = schema.index_of(col).unwrap();
            arrow_cast::display::array_value_to_string(batches[0].column(i), row).unwrap()
        };
        assert_eq!(text("o", 0), "2026-01-01T00:00:37Z");
        assert_eq!(text("o", 1), "2026-01-01T05:00:38Z");
        assert_eq!(text("z", 1), "2026-01-01T00:00:38.500Z");
        assert_eq!(text("ns", 0), "2026-01-01T00:00:37.123456789Z");
        assert_eq!(text("l", 1), "2026-01-01T00:00:38.250");
    }

    #[test]
    fn the_offsets_big_apis_write_are_inferred_as_the_instants_they_name() {
        // Each form, and the instant it names (2026-01-01T10:00:00Z plus a fraction).
        let forms = [
            // Salesforce and Jira: milliseconds and a basic offset.
            ("2026-01-01T10:00:00.000+0000", "2026-01-01T10:00:00Z"),
            ("2026-01-01T15:30:00.250+0530", "2026-01-01T10:00:00.250Z"),
            ("2026-01-01T05:00:00-0500", "2026-01-01T10:00:00Z"),
            // An hour-only offset.
            ("2026-01-01T12:00:00+02", "2026-01-01T10:00:00Z"),
            // A space for the `T`, with an extended offset (PostgreSQL's text form).
            ("2026-01-01 11:00:00+01:00", "2026-01-01T10:00:00Z"),
            ("2026-01-01 10:00:00.5+0000", "2026-01-01T10:00:00.500Z"),
        ];
        for (form, instant) in forms {
            let records = format!(r#"[{{"t": "{form}"}}]"#);
            let schema = infer_schema(records.as_bytes()).unwrap();
            assert_eq!(
                schema.field(0).data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "{form}"
            );
            let batches = super::super::PageDecoder::new(Arc::new(schema), 8, true)
                .unwrap()
                .decode_all(records.as_bytes())
                .unwrap();
            let text = arrow_cast::display::array_value_to_string(batches[0].column(0), 0);
            assert_eq!(text.unwrap(), instant, "{form}");
        }
        // Ambiguous, or not a form the decoder reads: stays text.
        for text in [
            "2024-05-01 会议记录",
            "2026-01-01 ok 😀😀",
            "2026-01-01T10:00:00+0😀",
            "2026-01-01T10:00+0000",
            "Thu, 01 Jan 2026 10:00:00 +0000",
            "2026-01-01T10:00:00+000",
            "2026-01-01T10:00:00 +0000",
            "2026-01-01T10:00:00+2",
        ] {
            let records = format!(r#"[{{"t": "{text}"}}]"#);
            let schema = infer_schema(records.as_bytes()).unwrap();
            assert_eq!(schema.field(0).data_type(), &DataType::Utf8, "{text}");
        }
    }

    /// Records decoded with `schema` and written to Parquet in memory, read back as text.
    fn round_trip(schema: &Schema, records: &[u8]) -> Vec<String> {
        let batches = super::super::PageDecoder::new(Arc::new(schema.clone()), 8, true)
            .unwrap()
            .decode_all(records)
            .unwrap();
        let mut file = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut file, Arc::new(schema.clone()), None)
                .unwrap();
        for b in &batches {
            writer.write(b).unwrap();
        }
        writer.close().unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(file),
        )
        .unwrap()
        .build()
        .unwrap();
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = (0..batch.num_columns())
                    .map(|c| {
                        arrow_cast::display::array_value_to_string(batch.column(c), row).unwrap()
                    })
                    .collect();
                rows.push(cells.join(" | "));
            }
        }
        rows
    }

    #[test]
    fn objects_that_are_always_empty_are_kept_as_json_text_at_any_depth() {
        // Zendesk's `via.source.from`, Okta's `credentials.password`.
        let first = br#"[{"id": 1, "via": {"source": {"from": {}, "rel": null}}, "credentials": {"password": {}}, "tags": [{}]},
                         {"id": 2, "via": {"source": {"from": {}, "rel": "x"}}, "credentials": {"password": {}}, "tags": []}]"#;
        let schema = infer_schema(first).unwrap();
        let json = |f: &Field| f.metadata().contains_key(JSON_TEXT);
        let DataType::Struct(creds) = schema.field_with_name("credentials").unwrap().data_type()
        else {
            panic!("{schema:?}")
        };
        assert!(json(&creds[0]), "{creds:?}");
        // Written to Parquet and read back, each object as its JSON text; on a later page
        // the object has fields, and its text holds them.
        let rows = round_trip(&schema, first);
        assert_eq!(
            rows[0],
            "1 | {source: {from: {}, rel: }} | {password: {}} | [{}]"
        );
        let later = br#"[{"id": 3, "via": {"source": {"from": {"address": "a@b.c"}, "rel": "x"}}, "credentials": {"password": {}}, "tags": [{"k": 1}]}]"#;
        assert_eq!(evolve(&schema, later).unwrap().1, Vec::<String>::new());
        let rows = round_trip(&schema, later);
        assert_eq!(
            rows[0],
            r#"3 | {source: {from: {"address":"a@b.c"}, rel: x}} | {password: {}} | [{"k":1}]"#
        );
        // `schema infer` writes a column file apisnap takes back.
        let file = crate::columns::ColumnsFile::from_schema(&schema);
        let text = crate::columns::to_toml(&file);
        assert!(text.contains("type = \"json\""), "{text}");
        let back: crate::columns::ColumnsFile = toml::from_str(&text).unwrap();
        assert!(back.to_schema().is_ok(), "{text}");
    }

    #[test]
    fn fields_new_inside_objects_and_lists_of_objects_evolve_and_are_counted_when_dropped() {
        let first = br#"[{"id": 1, "fields": {"name": "a"}, "lines": [{"sku": "x"}]}]"#;
        let later = br#"[{"id": 2, "fields": {"name": "b", "notes": "n", "extra": {"k": 1}}, "lines": [{"sku": "y", "qty": 3}], "top": true}]"#;
        let schema = infer_schema(first).unwrap();
        let (evolved, added) = evolve(&schema, later).unwrap();
        assert_eq!(
            added,
            ["fields.notes", "fields.extra", "lines[].qty", "top"]
        );
        // Existing fields keep their place and type; the new ones follow.
        let DataType::Struct(fields) = evolved.field(1).data_type() else {
            panic!()
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["name", "notes", "extra"]);
        assert_eq!(evolve(&schema, first).unwrap().1, Vec::<String>::new());
        // The later page decodes with the evolved columns; an earlier part widens to them.
        let rows = round_trip(&evolved, later);
        assert!(
            rows[0].contains("notes") || rows[0].contains('n'),
            "{rows:?}"
        );
        let old = super::super::PageDecoder::new(Arc::new(schema.clone()), 8, true)
            .unwrap()
            .decode_all(first)
            .unwrap();
        let widened =
            crate::sink::snapshot::widen(old[0].clone(), &Arc::new(evolved.clone())).unwrap();
        assert_eq!(widened.schema().as_ref(), &evolved);
        // Dropped under `ignore`: counted by path.
        let dropped = dropped_fields(&schema, later).unwrap();
        assert_eq!(
            dropped,
            [
                ("fields.extra".to_string(), 1),
                ("fields.notes".to_string(), 1),
                ("lines[].qty".to_string(), 1),
                ("top".to_string(), 1)
            ]
        );
    }

    #[test]
    fn a_time_its_column_cannot_hold_exactly_is_refused() {
        let decode = |data_type: DataType, records: &[u8]| {
            let schema = Arc::new(Schema::new(vec![Field::new("t", data_type, true)]));
            super::super::PageDecoder::new(schema, 8, true)
                .unwrap()
                .decode_all(records)
        };
        let micros_utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert!(
            decode(
                micros_utc.clone(),
                br#"[{"t": "2026-01-01T00:00:00.123456789Z"}]"#
            )
            .is_err()
        );
        assert!(decode(micros_utc, br#"[{"t": "2026-01-01T00:00:00.123456Z"}]"#).is_ok());
        let local = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(decode(local.clone(), br#"[{"t": "2026-01-01T00:00:00+02:00"}]"#).is_err());
        assert!(decode(local, br#"[{"t": "2026-01-01T00:00:00"}]"#).is_ok());
        assert!(decode(DataType::Date32, br#"[{"t": "2026-01-01T10:00:00"}]"#).is_err());
        assert!(decode(DataType::Date32, br#"[{"t": "2026-01-01T00:00:00"}]"#).is_ok());
        assert!(decode(DataType::Date32, br#"[{"t": "2026-01-01"}]"#).is_ok());
    }
}
