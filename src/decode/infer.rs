//! The columns of a run, inferred from its first page.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use serde_json::value::RawValue;

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
    let big = big_integers(records)?;
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match big.get(f.name().as_str()) {
                Some(data_type) if f.data_type() == &DataType::Float64 => {
                    Arc::new(Field::new(f.name(), data_type.clone(), true))
                }
                _ => Arc::new(nulls_to_strings(f)),
            })
            .collect::<Fields>(),
    ))
}

/// The top-level fields whose values on the page are all integers, some of them past the
/// range of int64: arrow-json infers those as float64, which would lose their last digits,
/// so they become `decimal(38,0)`, or text past 38 digits.
fn big_integers(records: &[u8]) -> Result<HashMap<String, DataType>, String> {
    let items: Vec<HashMap<String, &RawValue>> = serde_json::from_slice(records)
        .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
    // Per field: (every value an integer, the most digits of one past int64).
    let mut seen: HashMap<&str, (bool, Option<usize>)> = HashMap::new();
    for (name, raw) in items.iter().flat_map(|item| item.iter()) {
        let text = raw.get();
        if text == "null" {
            continue;
        }
        let entry = seen.entry(name.as_str()).or_insert((true, None));
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            entry.0 = false;
        } else if text.parse::<i64>().is_err() {
            entry.1 = entry.1.max(Some(digits.trim_start_matches('0').len()));
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|(name, (integers, longest))| match (integers, longest) {
            (true, Some(n)) if n <= 38 => Some((name.to_string(), DataType::Decimal128(38, 0))),
            (true, Some(_)) => Some((name.to_string(), DataType::Utf8)),
            _ => None,
        })
        .collect())
}

/// Per field of the records that `schema` does not have, how many records carry it: what
/// `schema.drift = "ignore"` drops, counted for the manifest.
pub fn dropped_fields(schema: &Schema, records: &[u8]) -> Result<Vec<(String, u64)>, String> {
    use std::collections::{BTreeMap, HashMap};
    // Keys only: every value is skipped unread.
    type Keys = HashMap<String, serde::de::IgnoredAny>;
    let items: Vec<Keys> = serde_json::from_slice(records)
        .map_err(|e| format!("the records array is not valid JSON: {e}"))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for key in items.iter().flat_map(|item| item.keys()) {
        if schema.field_with_name(key).is_err() {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
    }
    Ok(counts.into_iter().collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_past_int64_are_inferred_as_decimals_not_floats() {
        let records = br#"[{"id": 1, "big": 18446744073709551615, "huge": 123456789012345678901234567890123456789012, "f": 1.5},
                           {"id": 2, "big": null, "huge": 1, "f": 2}]"#;
        let schema = infer_schema(records).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(38, 0));
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(3).data_type(), &DataType::Float64);
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
}
