//! [`Location`]: a place as the user wrote it, checked, holding no client.

use std::path::{Path, PathBuf};

use object_store::path::Path as Key;

use super::StorageError;

/// The URL schemes that name object storage.
const SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// A place, as the user wrote it, checked: a path, `file:///path`, or
/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`. Written in state and
/// reports as that text; two locations are equal when they name the same place.
#[derive(Clone)]
pub struct Location {
    pub(super) text: String,
    pub(super) place: Place,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Local(PathBuf),
    Remote {
        /// `s3://bucket`
        root: String,
        prefix: Key,
    },
}

impl Location {
    /// Checks the form of `text`; builds no client and makes no request.
    pub fn parse(text: &str) -> Result<Location, StorageError> {
        let bad = |message: String| StorageError::Location {
            location: text.to_string(),
            message,
        };
        let local = |path: &str| Location {
            text: text.to_string(),
            place: Place::Local(PathBuf::from(path)),
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(local(text));
        };
        if scheme == "file" {
            return Ok(local(rest));
        }
        if !SCHEMES.contains(&scheme) {
            return Err(bad(format!(
                "unknown scheme `{scheme}://`: expected s3://, gs://, az://, file:// or a path"
            )));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("no bucket: expected {scheme}://BUCKET/PREFIX")));
        }
        let prefix = Key::parse(prefix.trim_end_matches('/'))
            .map_err(|e| bad(format!("not a valid object key prefix: {e}")))?;
        Ok(Location {
            text: text.to_string(),
            place: Place::Remote {
                root: format!("{scheme}://{bucket}"),
                prefix,
            },
        })
    }

    /// The place `name` below this one.
    pub fn join(&self, name: &str) -> Location {
        let text = format!("{}/{}", self.text.trim_end_matches('/'), name);
        let place = match &self.place {
            Place::Local(dir) => Place::Local(dir.join(name)),
            Place::Remote { root, prefix } => Place::Remote {
                root: root.clone(),
                prefix: join_key(prefix, name),
            },
        };
        Location { text, place }
    }

    /// The place one level up (`None` at a bucket, or for a bare relative name).
    pub fn parent(&self) -> Option<Location> {
        match &self.place {
            Place::Local(dir) => {
                let up = dir.parent().filter(|p| !p.as_os_str().is_empty())?;
                let text = match self.text.strip_prefix("file://") {
                    Some(_) => format!("file://{}", up.display()),
                    None => up.display().to_string(),
                };
                Some(Location {
                    text,
                    place: Place::Local(up.to_path_buf()),
                })
            }
            Place::Remote { root, prefix } => {
                let parts: Vec<_> = prefix.parts().collect();
                let (_, up) = parts.split_last()?;
                let prefix = Key::from_iter(up.iter().cloned());
                Some(Location {
                    text: remote_url(root, &prefix),
                    place: Place::Remote {
                        root: root.clone(),
                        prefix,
                    },
                })
            }
        }
    }

    /// The directory on this machine's disk, for a place that is one (deployments list the
    /// paths a service may write; the demo previews a part).
    pub fn local_path(&self) -> Option<&Path> {
        match &self.place {
            Place::Local(dir) => Some(dir),
            Place::Remote { .. } => None,
        }
    }

    /// The last component: a directory's name.
    pub fn name(&self) -> Option<&str> {
        self.text
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
    }
}

impl Eq for Location {}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Location::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Location {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Location".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

/// Checks the form of a location (for `apisnap validate`).
pub fn check(text: &str) -> Result<(), String> {
    match Location::parse(text) {
        Ok(_) => Ok(()),
        Err(StorageError::Location { message, .. }) => Err(format!("`{text}`: {message}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The directory on this machine that `text` names, if it names one (`None` for object
/// storage, and for text that is not a location).
pub fn local_dir(text: &str) -> Option<PathBuf> {
    Location::parse(text)
        .ok()?
        .local_path()
        .map(Path::to_path_buf)
}

pub(super) fn join_key(prefix: &Key, name: &str) -> Key {
    name.split('/')
        .filter(|s| !s.is_empty())
        .fold(prefix.clone(), |key, part| key.join(part))
}

fn remote_url(root: &str, prefix: &Key) -> String {
    if prefix.as_ref().is_empty() {
        root.to_string()
    } else {
        format!("{root}/{prefix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let local = Location::parse("out/x").unwrap();
        assert_eq!(local.local_path(), Some(Path::new("out/x")));
        assert_eq!(local.join("y").to_string(), "out/x/y");
        assert_eq!(local.parent().unwrap().to_string(), "out");
        let file = Location::parse("file:///srv/x").unwrap();
        assert_eq!(file.local_path(), Some(Path::new("/srv/x")));
        assert_eq!(file.parent().unwrap().to_string(), "file:///srv");
        let r = Location::parse("s3://bucket/a/b/").unwrap();
        assert!(r.local_path().is_none());
        assert_eq!(
            r.join("c").join("d.json").to_string(),
            "s3://bucket/a/b/c/d.json"
        );
        assert_eq!(r.parent().unwrap().to_string(), "s3://bucket/a");
        assert_eq!(
            r.parent().unwrap().parent().unwrap().to_string(),
            "s3://bucket"
        );
        assert!(r.parent().unwrap().parent().unwrap().parent().is_none());
        let e = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
        assert!(
            Location::parse("s3:///x")
                .unwrap_err()
                .to_string()
                .contains("no bucket")
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"s3://bucket/a/b/\"");
        assert_eq!(serde_json::from_str::<Location>(&json).unwrap(), r);
    }
}
