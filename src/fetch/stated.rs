//! Errors an API states in its answers' bodies: `{"ok": false, "error": "invalid_auth"}` at
//! HTTP 200 (Slack), or a code in an error body that says more than its status (Google's
//! 403 `rateLimitExceeded`). The provider's `[errors]` says where the success flag and the
//! code are, and which codes mean refused credentials or "later"; any other stated error is
//! permanent.

use std::collections::HashSet;

use reqwest::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::{ConfigError, ConfigErrors, JsonPointer};

/// Errors the API states in its answers' bodies, and what each code means.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatedErrorsConfig {
    /// A boolean every successful answer has `true` at (Slack's `/ok`); `false` (or its
    /// absence) makes a 2xx answer an error.
    #[serde(default)]
    pub success_pointer: Option<JsonPointer>,
    /// Where the error's code is (Slack's `/error`, Google's `/error/errors/0/reason`).
    /// Without `success_pointer`, a code there makes a 2xx answer an error.
    #[serde(default)]
    pub code_pointer: Option<JsonPointer>,
    /// Codes that mean the credentials were refused (`invalid_auth`, `token_expired`): the
    /// token is renewed once, as after a 401, then the run fails with exit 3.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Codes that mean "later" (`ratelimited`, `internal_error`): retried with backoff, as a
    /// 429 or a 503 is. Any other stated error fails the run at once (exit 4).
    #[serde(default)]
    pub retry: Vec<String>,
}

impl StatedErrorsConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if self.success_pointer.is_none() && self.code_pointer.is_none() {
            errors.push(ConfigError::field(
                "errors",
                "expected `success_pointer` (where a successful answer says `true`), \
                 `code_pointer` (where an error's code is), or both",
            ));
        }
        if self.code_pointer.is_none() && !(self.credentials.is_empty() && self.retry.is_empty()) {
            errors.push(ConfigError::field(
                "errors.code_pointer",
                "codes are listed but not where to find them: expected e.g. `/error`",
            ));
        }
        if let Some(code) = self.credentials.iter().find(|c| self.retry.contains(c)) {
            errors.push(ConfigError::field(
                "errors.retry",
                format!("`{code}` is also in `credentials`: a code means one thing"),
            ));
        }
    }

    pub fn build(&self) -> StatedErrors {
        StatedErrors {
            success: self.success_pointer.clone(),
            code: self.code_pointer.clone(),
            credentials: self.credentials.iter().cloned().collect(),
            retry: self.retry.iter().cloned().collect(),
        }
    }
}

/// The runtime side of [`StatedErrorsConfig`].
#[derive(Clone, Debug, Default)]
pub struct StatedErrors {
    success: Option<JsonPointer>,
    code: Option<JsonPointer>,
    credentials: HashSet<String>,
    retry: HashSet<String>,
}

/// What a stated error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Refused credentials: renew, as after a 401; then exit 3.
    Credentials,
    /// Later: retried with backoff.
    Retry,
    /// Not retried: exit 4.
    Permanent,
}

/// An error the answer stated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stated {
    /// The code, or `""` where the answer only said it failed.
    pub code: String,
    pub class: Class,
}

impl StatedErrors {
    /// The places to read in a 2xx answer's scan, in the order [`StatedErrors::judge`] takes
    /// their values.
    pub fn pointers(&self) -> Vec<JsonPointer> {
        [&self.success, &self.code]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Whether the API states anything in its bodies.
    pub fn is_empty(&self) -> bool {
        self.success.is_none() && self.code.is_none()
    }

    /// The error an answer of `status` states, given the values at [`StatedErrors::pointers`]
    /// (`None`: absent); `None` if it states none. A 2xx answer is an error when its success
    /// flag is not `true`, or without a flag, when it has a code. Another status is an error
    /// already; a code there only refines it, and `Permanent` means: as its status says.
    pub fn judge(
        &self,
        status: StatusCode,
        values: &[Option<serde_json::Value>],
    ) -> Option<Stated> {
        let mut values = values.iter();
        let success = self
            .success
            .as_ref()
            .map(|_| values.next().cloned().flatten());
        let code = self
            .code
            .as_ref()
            .and_then(|_| values.next().cloned().flatten())
            .and_then(|v| match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) if s.is_empty() => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            });
        let failed = match (status.is_success(), &success) {
            (false, _) => true,
            (true, Some(flag)) => flag.as_ref() != Some(&serde_json::Value::Bool(true)),
            (true, None) => code.is_some(),
        };
        if !failed || (!status.is_success() && code.is_none()) {
            return None;
        }
        let code = code.unwrap_or_default();
        let class = if self.credentials.contains(&code) {
            Class::Credentials
        } else if self.retry.contains(&code) {
            Class::Retry
        } else {
            Class::Permanent
        };
        Some(Stated { code, class })
    }

    /// [`StatedErrors::judge`] of a body the scan could not read (an error body has no
    /// records): its values looked up in the parsed body, which is small.
    pub fn judge_body(&self, status: StatusCode, body: &[u8]) -> Option<Stated> {
        if self.is_empty() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let values: Vec<_> = self
            .pointers()
            .iter()
            .map(|p| p.get(&value).cloned())
            .collect();
        self.judge(status, &values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slack() -> StatedErrors {
        StatedErrorsConfig {
            success_pointer: Some("/ok".parse().unwrap()),
            code_pointer: Some("/error".parse().unwrap()),
            credentials: vec!["invalid_auth".into(), "token_expired".into()],
            retry: vec!["ratelimited".into()],
        }
        .build()
    }

    #[test]
    fn slacks_answers_are_judged_by_their_flag_and_code() {
        let s = slack();
        let judge =
            |body: serde_json::Value| s.judge_body(StatusCode::OK, body.to_string().as_bytes());
        assert_eq!(judge(serde_json::json!({"ok": true, "channels": []})), None);
        let stated = |code: &str, class| {
            Some(Stated {
                code: code.into(),
                class,
            })
        };
        assert_eq!(
            judge(serde_json::json!({"ok": false, "error": "invalid_auth"})),
            stated("invalid_auth", Class::Credentials)
        );
        assert_eq!(
            judge(serde_json::json!({"ok": false, "error": "ratelimited"})),
            stated("ratelimited", Class::Retry)
        );
        assert_eq!(
            judge(serde_json::json!({"ok": false, "error": "channel_not_found"})),
            stated("channel_not_found", Class::Permanent)
        );
        // No flag at all where one is expected: not a success.
        assert_eq!(
            judge(serde_json::json!({"channels": []})),
            stated("", Class::Permanent)
        );
        // A 4xx with a code: refined; without one, as its status says.
        let google = StatedErrorsConfig {
            success_pointer: None,
            code_pointer: Some("/error/errors/0/reason".parse().unwrap()),
            credentials: vec!["authError".into()],
            retry: vec!["rateLimitExceeded".into(), "userRateLimitExceeded".into()],
        }
        .build();
        let body = serde_json::json!({"error": {"code": 403, "errors": [{"reason": "userRateLimitExceeded"}]}});
        assert_eq!(
            google.judge_body(StatusCode::FORBIDDEN, body.to_string().as_bytes()),
            stated("userRateLimitExceeded", Class::Retry)
        );
        assert_eq!(google.judge_body(StatusCode::FORBIDDEN, b"{}"), None);
        // A 2xx with a code and no flag is an error; without a code it is not.
        assert_eq!(google.judge_body(StatusCode::OK, b"{\"items\": []}"), None);
        assert!(
            google
                .judge_body(StatusCode::OK, body.to_string().as_bytes())
                .is_some()
        );
    }

    #[test]
    fn a_config_that_cannot_be_followed_is_refused() {
        let mut errors = ConfigErrors::default();
        StatedErrorsConfig::default().validate(&mut errors);
        StatedErrorsConfig {
            success_pointer: Some("/ok".parse().unwrap()),
            credentials: vec!["x".into()],
            retry: vec!["x".into()],
            ..StatedErrorsConfig::default()
        }
        .validate(&mut errors);
        let text = errors.to_string();
        assert!(
            text.contains("`errors`") || text.contains("errors:"),
            "{text}"
        );
        assert!(
            text.contains("errors.code_pointer") && text.contains("errors.retry"),
            "{text}"
        );
    }
}
