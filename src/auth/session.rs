//! The token lifecycle shared by every login kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use tokio::sync::Mutex;

use super::password::PasswordLogin;
use super::{AuthError, Credentials, header_pair};
use crate::secret::Secret;

/// A token obtained by a login.
pub(crate) struct Token {
    pub value: Secret,
    pub issued_at: DateTime<Utc>,
    /// `None`: valid until the server rejects it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The ways of obtaining a token.
#[derive(Debug)]
pub(crate) enum Login {
    Password(PasswordLogin),
}

impl Login {
    async fn login(&self, provider: &str, client: &reqwest::Client) -> Result<Token, AuthError> {
        match self {
            Login::Password(l) => l.login(provider, client).await,
        }
    }

    fn sources(&self) -> &str {
        match self {
            Login::Password(l) => l.sources(),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        match self {
            Login::Password(l) => l.secrets().collect(),
        }
    }
}

/// One token shared by all requests of a run. Login is single-flight: callers that find the
/// token missing or stale queue on the mutex, and the first one logs in for all of them.
pub struct TokenSession {
    provider: String,
    login: Login,
    scheme: String,
    renew_before: Duration,
    state: Mutex<State>,
    logins: AtomicU64,
    /// The current token value, kept for scrubbing server messages.
    current: std::sync::Mutex<Option<Secret>>,
}

#[derive(Default)]
struct State {
    token: Option<(Token, (HeaderName, HeaderValue))>,
    generation: u64,
}

impl std::fmt::Debug for TokenSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSession")
            .field("provider", &self.provider)
            .field("sources", &self.login.sources())
            .finish_non_exhaustive()
    }
}

impl TokenSession {
    pub(crate) fn new(
        provider: &str,
        login: Login,
        scheme: String,
        renew_before: Duration,
    ) -> Self {
        TokenSession {
            provider: provider.to_string(),
            login,
            scheme,
            renew_before,
            state: Mutex::new(State::default()),
            logins: AtomicU64::new(0),
            current: std::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn credentials(
        &self,
        client: &reqwest::Client,
    ) -> Result<Credentials, AuthError> {
        let mut state = self.state.lock().await;
        let fresh = state
            .token
            .as_ref()
            .is_some_and(|(t, _)| !self.is_stale(t, Utc::now()));
        if !fresh {
            let token = self.login.login(&self.provider, client).await?;
            self.logins.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(provider = %self.provider, expires_at = ?token.expires_at, "logged in");
            let header = header_pair(&self.scheme, &token.value);
            *self.current.lock().expect("not poisoned") = Some(token.value.clone());
            state.token = Some((token, header));
            state.generation += 1;
        }
        let (_, header) = state.token.as_ref().expect("token just set");
        Ok(Credentials {
            headers: vec![header.clone()],
            generation: state.generation,
        })
    }

    /// Renew `renew_before` ahead of expiry, but never more than half the token's lifetime
    /// ahead: a short-lived token would otherwise be renewed on every request.
    fn is_stale(&self, token: &Token, now: DateTime<Utc>) -> bool {
        let Some(expires_at) = token.expires_at else {
            return false;
        };
        let lifetime = (expires_at - token.issued_at).max(chrono::Duration::zero());
        let margin = chrono::Duration::from_std(self.renew_before)
            .unwrap_or(chrono::Duration::MAX)
            .min(lifetime / 2);
        now >= expires_at - margin
    }

    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            state.token = None;
        }
    }

    pub(crate) fn sources(&self) -> String {
        self.login.sources().to_string()
    }

    pub(crate) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        let current = self.current.lock().expect("not poisoned").clone();
        for secret in self.login.secrets().into_iter().chain(current.as_ref()) {
            if !secret.expose().is_empty() {
                out = out.replace(secret.expose(), "[redacted]");
            }
        }
        out
    }
}
