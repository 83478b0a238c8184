//! A slice's request: the job's endpoint with `{partition.NAME}`, `{window.start}` and
//! `{window.end}` filled in, in the path (percent-encoded), the query, the headers and the
//! body (a body string that is only a placeholder takes the value's type: `7`, not `"7"`).

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::config::WindowsConfig;
use super::progress::Slice;
use crate::fetch::Target;

/// The endpoint as the job file writes it.
#[derive(Clone, Debug)]
pub struct Template {
    pub base: Url,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Option<serde_json::Value>,
}

/// The values placeholders name, for one slice.
struct Values<'a> {
    partition: Option<&'a BTreeMap<String, serde_json::Value>>,
    window: Option<(String, String)>,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Option<serde_json::Value> {
        if let Some(field) = name.strip_prefix("partition.") {
            return self.partition?.get(field).cloned();
        }
        let (start, end) = self.window.as_ref()?;
        match name {
            "window.start" => Some(start.clone().into()),
            "window.end" => Some(end.clone().into()),
            _ => None,
        }
    }

    /// `text` with every placeholder replaced; `encode` applies to the values (a path's).
    fn fill(&self, text: &str, encode: fn(&str) -> String) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some((open, close, name)) = next_braces(rest) {
            out.push_str(&rest[..open]);
            match self.get(name) {
                Some(v) => out.push_str(&encode(&super::text(&v))),
                None => out.push_str(&rest[open..=close]),
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn fill_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(s) => {
                let whole = s
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .filter(|n| !n.contains(['{', '}']));
                match whole.and_then(|n| self.get(n)) {
                    Some(v) => v,
                    None => self.fill(s, |v| v.to_string()).into(),
                }
            }
            serde_json::Value::Array(items) => items.iter().map(|v| self.fill_json(v)).collect(),
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), self.fill_json(v)))
                .collect(),
            other => other.clone(),
        }
    }
}

/// The next `{…}` in `text` with no brace inside: its braces' offsets and what is between.
fn next_braces(text: &str) -> Option<(usize, usize, &str)> {
    let mut from = 0;
    loop {
        let close = from + text[from..].find('}')?;
        match text[from..close].rfind('{') {
            Some(open) => {
                let open = from + open;
                return Some((open, close, &text[open + 1..close]));
            }
            None => from = close + 1,
        }
    }
}

/// The placeholders in a text: `{partition.id}` → `partition.id`.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some((_, close, name)) = next_braces(rest) {
        if name.starts_with("partition.") || name.starts_with("window.") {
            found.push(name.to_string());
        }
        rest = &rest[close + 1..];
    }
    found
}

/// The placeholders in the strings of a JSON value.
pub fn json_placeholders(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => placeholders(s),
        serde_json::Value::Array(items) => items.iter().flat_map(json_placeholders).collect(),
        serde_json::Value::Object(map) => map.values().flat_map(json_placeholders).collect(),
        _ => Vec::new(),
    }
}

/// A value as one path segment: percent-encoded.
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Template {
    /// The request of `slice`. Only the headers with placeholders are the slice's (they
    /// replace the job's of the same name, and the credentials'); the others stay the
    /// job's.
    pub fn render(
        &self,
        slice: &Slice<'_>,
        windows: Option<&WindowsConfig>,
    ) -> Result<Target, String> {
        let window = match (slice.window, windows) {
            (Some(w), Some(config)) => Some(super::window::bounds(&w, config)),
            _ => None,
        };
        let values = Values {
            partition: slice.partition,
            window,
        };
        // `.` and `..` (encoded or not) would be resolved by the URL, taking the request to
        // another path.
        if let Some(dots) = placeholders(&self.path)
            .iter()
            .filter_map(|name| values.get(name))
            .map(|v| super::text(&v))
            .find(|v| v.is_empty() || v.chars().all(|c| c == '.'))
        {
            return Err(format!(
                "the value `{dots}` cannot be a segment of the path `{}`",
                self.path
            ));
        }
        let url = crate::vocab::join_url(&self.base, &values.fill(&self.path, segment));
        let mut query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), values.fill(v, |v| v.to_string())))
            .collect();
        if let (Some(config), Some((start, end))) = (windows, &values.window) {
            if let Some(p) = &config.start_param {
                query.push((p.clone(), start.clone()));
            }
            if let Some(p) = &config.end_param {
                query.push((p.clone(), end.clone()));
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            if placeholders(value).is_empty() {
                continue;
            }
            let filled = values.fill(value, |v| v.to_string());
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header `{name}`: {e}"))?;
            let v = HeaderValue::from_str(&filled).map_err(|_| {
                format!("header `{name}` cannot hold `{filled}` (only visible ASCII)")
            })?;
            headers.insert(n, v);
        }
        Ok(Target {
            url,
            query,
            headers,
            body: self.body.as_ref().map(|b| values.fill_json(b)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_everywhere_and_typed_in_bodies() {
        let template = Template {
            base: Url::parse("https://api.example.com/v1").unwrap(),
            path: "/accounts/{partition.name}/events".into(),
            query: BTreeMap::from([("account".into(), "{partition.id}".into())]),
            headers: BTreeMap::from([("X-Account-Context".into(), "{partition.id}".into())]),
            body: Some(serde_json::json!({
                "account": "{partition.id}",
                "label": "acct-{partition.id}",
                "range": ["{window.start}", "{window.end}"]
            })),
        };
        let partition = BTreeMap::from([
            ("id".to_string(), serde_json::json!(7)),
            ("name".to_string(), serde_json::json!("a b/c")),
        ]);
        let window = super::super::window::Window {
            start: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            end: chrono::DateTime::from_timestamp(86_400, 0).unwrap(),
        };
        let windows: WindowsConfig = toml::from_str(
            "start = \"1970-01-01\"\nstep = \"1d\"\nstart_param = \"from\"\nformat = \"date\"\n\
             granularity = \"day\"\nend_inclusive = true",
        )
        .unwrap();
        let slice = Slice {
            index: 0,
            partition: Some(&partition),
            window: Some(window),
        };
        let target = template.render(&slice, Some(&windows)).unwrap();
        assert_eq!(
            target.url.as_str(),
            "https://api.example.com/v1/accounts/a%20b%2Fc/events"
        );
        assert_eq!(
            target.query,
            vec![
                ("account".to_string(), "7".to_string()),
                ("from".to_string(), "1970-01-01".to_string())
            ]
        );
        assert_eq!(target.headers["x-account-context"], "7");
        assert_eq!(
            target.body.unwrap(),
            serde_json::json!({"account": 7, "label": "acct-7", "range": ["1970-01-01", "1970-01-01"]})
        );
        let mut found = placeholders("/a/{partition.name}/{x}/{window.start}");
        found.extend(json_placeholders(
            &serde_json::json!({"a": ["{partition.id}"]}),
        ));
        assert_eq!(found, ["partition.name", "window.start", "partition.id"]);
        let dots = Template {
            path: "/a/{partition.name}".into(),
            ..template
        };
        let up = BTreeMap::from([("name".to_string(), serde_json::json!(".."))]);
        let slice = Slice {
            index: 0,
            partition: Some(&up),
            window: None,
        };
        let refused = dots.render(&slice, None).unwrap_err();
        assert!(refused.contains("`..` cannot be a segment"), "{refused}");
    }
}
