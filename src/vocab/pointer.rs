//! JSON pointers (RFC 6901) as they appear in job and provider files.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A JSON pointer such as `/data` or `/data/items`; the empty string is the whole body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct JsonPointer {
    text: String,
    /// Unescaped reference tokens (`~1` -> `/`, `~0` -> `~`).
    tokens: Vec<String>,
}

impl JsonPointer {
    pub fn root() -> Self {
        JsonPointer {
            text: String::new(),
            tokens: Vec::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_root(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Looks the pointer up in a parsed value (small bodies: auth responses, totals).
    pub fn get<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        value.pointer(&self.text)
    }
}

impl JsonSchema for JsonPointer {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonPointer".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A JSON pointer (RFC 6901): `/data`, `/data/items`, or an empty string for the whole body.",
            "pattern": "^(/.*)?$",
            "examples": ["/data", "/data/items", ""]
        })
    }
}

impl From<JsonPointer> for String {
    fn from(value: JsonPointer) -> Self {
        value.text
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("(whole body)")
        } else {
            f.write_str(&self.text)
        }
    }
}

impl std::str::FromStr for JsonPointer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(JsonPointer::root());
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!(
                "`{s}` is not a JSON pointer: expected one starting with `/`, e.g. `/{s}` \
                 (or an empty string for the whole body)"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(format!(
                                "`{s}` is not a JSON pointer: `~` must be followed by 0 or 1 \
                                 (`~0` is `~`, `~1` is `/`)"
                            ));
                        }
                    }
                } else {
                    token.push(c);
                }
            }
            tokens.push(token);
        }
        Ok(JsonPointer {
            text: s.to_string(),
            tokens,
        })
    }
}

impl<'de> Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert!("".parse::<JsonPointer>().unwrap().is_root());
        let p: JsonPointer = "/data/a~1b/c~0d".parse().unwrap();
        assert_eq!(p.tokens(), ["data", "a/b", "c~d"]);
        assert!(
            "data"
                .parse::<JsonPointer>()
                .unwrap_err()
                .contains("`/data`")
        );
        assert!("/a~2".parse::<JsonPointer>().is_err());
    }
}
