//! One request to a login or token endpoint, read in full.

use reqwest::StatusCode;

use super::string_at;
use crate::http::{BodyError, FullJitter, Http};
use crate::vocab::JsonPointer;

/// Why a login did not give a token: the server could not be reached (after the retries:
/// refused connections, timeouts, 5xx, 429), or it answered, and the answer was a refusal
/// or could not be used. Only the second says anything about the credentials.
#[derive(Debug)]
pub(crate) struct LoginFailure {
    pub message: String,
    pub unreachable: bool,
}

impl LoginFailure {
    /// The same failure with its message rewritten (a step named, a secret redacted).
    pub fn map(self, f: impl FnOnce(String) -> String) -> LoginFailure {
        LoginFailure {
            message: f(self.message),
            unreachable: self.unreachable,
        }
    }
}

/// A message about the answer: the server was reached.
impl From<String> for LoginFailure {
    fn from(message: String) -> Self {
        LoginFailure {
            message,
            unreachable: false,
        }
    }
}

impl From<&str> for LoginFailure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// A login request that did not get an answer worth reading.
struct Failure {
    message: String,
    /// A new attempt may do better (the network, or the server's state).
    transient: bool,
    retry_after: Option<std::time::Duration>,
}

/// A token endpoint's answer.
pub(crate) struct Exchange {
    pub status: StatusCode,
    pub text: String,
    pub json: Option<serde_json::Value>,
}

impl Exchange {
    /// Sends `request` and reads the whole answer (at most the provider's
    /// `max_response_bytes`), retried like a data request on a transient failure — a reset
    /// connection, a timeout, 408, 425, 429 (after its `Retry-After`), 5xx — and never on an
    /// answer about the credentials.
    pub async fn send(
        http: &Http,
        request: reqwest::RequestBuilder,
    ) -> Result<Exchange, LoginFailure> {
        use backon::Retryable;
        let target = request
            .try_clone()
            .and_then(|r| r.build().ok())
            .map(|r| format!("{} {}", r.method(), r.url()))
            .unwrap_or_else(|| "the login request".into());
        let attempt = || async {
            let request = request.try_clone().ok_or_else(|| Failure {
                message: "the request cannot be sent twice".into(),
                transient: false,
                retry_after: None,
            })?;
            Self::once(http, request).await
        };
        let max_delay = std::time::Duration::from_millis(http.retry.max_delay_ms);
        attempt
            .retry(FullJitter {
                config: http.retry.clone(),
            })
            .when(|f: &Failure| f.transient)
            .adjust(|f, wait| match f.retry_after {
                // The server knows best when to come back, within our own ceiling.
                Some(after) => wait.map(|_| after.min(max_delay)),
                None => wait,
            })
            .notify(|f, wait| {
                tracing::warn!(request = %target, error = %f.message, wait_ms = wait.as_millis() as u64, "retrying the login request");
            })
            .await
            .map_err(|f| LoginFailure {
                message: f.message,
                // No answer about the credentials came: a transient failure that outlasted
                // the retries, or one that no retry changes (a TLS refusal, an answer past
                // `max_response_bytes`) — the server, not the credentials.
                unreachable: true,
            })
    }

    async fn once(http: &Http, request: reqwest::RequestBuilder) -> Result<Exchange, Failure> {
        let transient = |message: String| Failure {
            message,
            transient: true,
            retry_after: None,
        };
        let response = request.send().await.map_err(|e| {
            let failure = http.failed(&e);
            Failure {
                message: format!("request failed: {}", failure.reason),
                transient: failure.transient,
                retry_after: None,
            }
        })?;
        http.note_peer(&response);
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::parse_retry_after);
        let body = http.read_body(response).await.map_err(|e| match e {
            BodyError::TooLarge { limit } => Failure {
                message: format!(
                    "the answer is larger than {} (the provider's `max_response_bytes`)",
                    crate::http::size(limit)
                ),
                transient: false,
                retry_after: None,
            },
            BodyError::Transport(reason) => {
                transient(format!("reading the response failed: {reason}"))
            }
        })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if crate::http::is_transient_status(status) {
            return Err(Failure {
                message: format!("HTTP {status}: {}", crate::http::snippet(&body)),
                transient: true,
                retry_after,
            });
        }
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
