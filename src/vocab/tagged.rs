//! Deserializing `type`-tagged tables with precise error paths.
//!
//! serde's derived internally-tagged enums buffer their content, so an error inside a variant
//! loses its path (`field `auth`` instead of `field `auth.credentials.password``). The
//! [`tagged_enum!`](crate::tagged_enum) macro reads `type` itself and deserializes the rest
//! into the variant's struct with `serde_path_to_error`; the inner path travels in the message
//! behind [`PATH_MARK`] and the loader splices it onto the outer path.

/// Starts an error message that carries an inner field path: `<MARK>path<MARK>message`.
pub const PATH_MARK: char = '\u{1}';

/// Splits a message produced by a tagged enum into (inner path, message).
pub fn split_path(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix(PATH_MARK)?;
    rest.split_once(PATH_MARK)
}

/// Implements `Deserialize` for an enum whose variants are newtypes around config structs,
/// tagged by a `type` field. The tags must match the enum's `#[serde(rename_all)]`, which
/// `Serialize` and `JsonSchema` still use.
#[macro_export]
macro_rules! tagged_enum {
    ($enum:ident { $($tag:literal => $variant:ident($ty:ty)),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                const TAGS: &[&str] = &[$($tag),+];
                let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
                let tag = match map.remove("type") {
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => {
                        return Err(D::Error::custom(format!(
                            "{m}type{m}expected one of {}, found {other}",
                            TAGS.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
                            m = $crate::vocab::PATH_MARK,
                        )));
                    }
                    None => return Err(D::Error::missing_field("type")),
                };
                let rest = serde_json::Value::Object(map);
                let inner = |e: serde_path_to_error::Error<serde_json::Error>| {
                    let path = e.path().to_string();
                    let message = e.inner().to_string();
                    // A nested tagged enum already carries a path: join them.
                    let (path, message) = match $crate::vocab::split_path(&message) {
                        Some((p, m)) if path == "." => (p.to_string(), m.to_string()),
                        Some((p, m)) => (format!("{path}.{p}"), m.to_string()),
                        None => (path, message),
                    };
                    if path == "." {
                        D::Error::custom(message)
                    } else {
                        D::Error::custom(format!("{m}{path}{m}{message}", m = $crate::vocab::PATH_MARK))
                    }
                };
                match tag.as_str() {
                    $($tag => serde_path_to_error::deserialize::<_, $ty>(rest)
                        .map($enum::$variant)
                        .map_err(inner),)+
                    other => Err(D::Error::custom(format!(
                        "{m}type{m}unknown variant `{other}`, expected {}",
                        match TAGS {
                            [one] => format!("`{one}`"),
                            _ => format!("one of {}", TAGS.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")),
                        },
                        m = $crate::vocab::PATH_MARK,
                    ))),
                }
            }
        }
    };
}
