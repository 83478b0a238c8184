//! Query parameters and header values written as TOML strings, numbers or booleans.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<Scalar> for String {
    fn from(value: Scalar) -> Self {
        match value {
            Scalar::String(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// Deserializes a table whose values may be strings, numbers or booleans into strings, so
/// `account_id = 42` and `account_id = "42"` mean the same.
pub fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, ScalarOrError>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            ScalarOrError::Ok(s) => Ok((k, s.into())),
            ScalarOrError::Other(_) => Err(serde::de::Error::custom(format!(
                "`{k}`: expected a string, number or boolean"
            ))),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScalarOrError {
    Ok(Scalar),
    Other(serde::de::IgnoredAny),
}

/// The JSON Schema of a scalar map.
pub fn scalar_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": ["string", "number", "boolean"] }
    })
}

/// An optional value written as a string or a number (`id = 7` or `id = "7"`).
pub fn scalar_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(String::from))
}
