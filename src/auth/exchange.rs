//! One request to a login or token endpoint, read in full.

use reqwest::StatusCode;

use super::string_at;
use crate::vocab::JsonPointer;

/// A token endpoint's answer.
pub(crate) struct Exchange {
    pub status: StatusCode,
    pub text: String,
    pub json: Option<serde_json::Value>,
}

impl Exchange {
    /// Sends `request` and reads the whole answer.
    pub async fn send(request: reqwest::RequestBuilder) -> Result<Exchange, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("request failed: {}", crate::http::describe(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("reading the response failed: {}", crate::http::describe(&e)))?;
        let json = serde_json::from_str(&text).ok();
        Ok(Exchange { status, text, json })
    }

    /// The server's own message: the first of `pointers` that holds text, else the start of
    /// the body.
    pub fn message(&self, pointers: &[&JsonPointer]) -> String {
        let found: Vec<String> = self
            .json
            .as_ref()
            .map(|j| {
                pointers
                    .iter()
                    .filter_map(|p| string_at(j, p))
                    .map(|m| crate::http::printable(&m))
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            crate::http::snippet(self.text.as_bytes())
        } else {
            found.join(": ")
        }
    }

    /// The JSON body of a successful answer, or an error that quotes the server.
    pub fn success_json(self, pointers: &[&JsonPointer]) -> Result<serde_json::Value, String> {
        if !self.status.is_success() {
            return Err(format!("HTTP {}: {}", self.status, self.message(pointers)));
        }
        let status = self.status;
        self.json.ok_or_else(|| {
            format!(
                "HTTP {status} but the body is not JSON: {}",
                crate::http::snippet(self.text.as_bytes())
            )
        })
    }
}

pub(crate) fn pointer(s: &str) -> JsonPointer {
    s.parse().expect("valid pointer")
}
