//! What a failed request says: which job, which request, what the server answered, and
//! what the failure means for retries and for the adaptive concurrency.

use std::time::Duration;

use reqwest::StatusCode;

use super::Class;
use crate::auth::AuthError;
use crate::concurrency::Signal;

/// A request that failed. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("job `{job}`: {request} returned {status}: {body}")]
    Status {
        job: String,
        request: String,
        status: StatusCode,
        body: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    #[error("job `{job}`: {request} failed: {reason}")]
    Transport {
        job: String,
        request: String,
        reason: String,
    },
    /// A TLS handshake that failed for a reason another attempt will not change (a
    /// certificate refused either way).
    #[error("job `{job}`: {request} failed: {reason}")]
    Tls {
        job: String,
        request: String,
        reason: String,
    },
    #[error(
        "job `{job}`: {request} returned {status} with a body that is not what was expected: \
         {reason}; the body begins: {body}"
    )]
    BadBody {
        job: String,
        request: String,
        status: StatusCode,
        reason: String,
        body: String,
    },
    #[error(
        "job `{job}`: the server sent the next page to {url}, {why}: refusing to send \
         credentials there. If the host is trusted, add it to the provider's `allowed_hosts` \
         (a host name, or an origin such as `https://cdn.example.com:8443`)"
    )]
    ForeignHost {
        job: String,
        url: String,
        why: String,
    },
    #[error(
        "job `{job}`: {request} answered more than {} (decompressed), the provider's \
         `max_response_bytes`: ask for smaller pages (`pagination.page_size`), or raise \
         `max_response_bytes` if such answers are expected",
        crate::http::size(*limit)
    )]
    TooLarge {
        job: String,
        request: String,
        limit: u64,
    },
    #[error("job `{job}`: {source}")]
    Auth {
        job: String,
        #[source]
        source: AuthError,
    },
    /// An answer whose body states an error (the provider's `[errors]`).
    #[error("job `{job}`: {request} returned {answer}")]
    Stated {
        job: String,
        request: String,
        answer: Box<StatedAnswer>,
    },
}

/// An answer that stated an error: what it said and what that means.
#[derive(Debug)]
pub struct StatedAnswer {
    pub status: StatusCode,
    pub code: String,
    pub class: Class,
    /// The body's beginning, credentials redacted.
    pub body: String,
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for StatedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meaning = match self.class {
            Class::Credentials => "refused credentials",
            Class::Retry => "retried, and still failing",
            Class::Permanent => "not one to retry",
        };
        write!(
            f,
            "{} stating the error `{}` ({meaning}): {}",
            self.status, self.code, self.body
        )
    }
}

impl FetchError {
    /// What the failure says about the server's load, for the adaptive concurrency.
    pub fn signal(&self) -> Signal {
        match self {
            FetchError::Status { status, .. }
                if *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() =>
            {
                Signal::Overloaded
            }
            FetchError::Transport { .. } => Signal::Overloaded,
            FetchError::Stated { answer, .. } if answer.class == Class::Retry => Signal::Overloaded,
            _ => Signal::Neutral,
        }
    }

    /// Worth another attempt: the server or the network may do better next time.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => crate::http::is_transient_status(*status),
            FetchError::Transport { .. } | FetchError::BadBody { .. } => true,
            FetchError::Stated { answer, .. } => answer.class == Class::Retry,
            FetchError::Auth { .. }
            | FetchError::Tls { .. }
            | FetchError::ForeignHost { .. }
            | FetchError::TooLarge { .. } => false,
        }
    }

    pub(super) fn short(&self) -> String {
        match self {
            FetchError::Status { status, .. } => status.to_string(),
            FetchError::Transport { reason, .. }
            | FetchError::Tls { reason, .. }
            | FetchError::BadBody { reason, .. } => reason.clone(),
            FetchError::Auth { source, .. } => source.to_string(),
            FetchError::ForeignHost { why, .. } => format!("foreign origin: {why}"),
            FetchError::TooLarge { limit, .. } => format!("larger than {limit} bytes"),
            FetchError::Stated { answer, .. } => {
                format!("{}, stating `{}`", answer.status, answer.code)
            }
        }
    }
}
