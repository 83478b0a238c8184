//! The token lifecycle shared by every login kind.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use url::Url;

use super::cache::TokenCache;
use super::code_exchange::CodeExchange;
use super::exchange::LoginFailure;
use super::jwt::JwtAssertion;
use super::oauth2::OAuth2;
use super::password::PasswordLogin;
use super::token::{CacheMode, Token, TokenConfig};
use super::{AuthError, Credentials, authorization, sensitive};
use crate::env::Env;
use crate::secret::Secret;
use crate::vocab::ConfigError;

/// The ways of obtaining a token.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per provider
pub(crate) enum Login {
    Password(PasswordLogin),
    CodeExchange(CodeExchange),
    Jwt(JwtAssertion),
    OAuth2(OAuth2),
}

impl Login {
    async fn login(&self, http: &crate::http::Http) -> Result<Token, LoginFailure> {
        match self {
            Login::Password(l) => l.login(http).await,
            Login::CodeExchange(l) => l.login(http).await,
            Login::Jwt(l) => l.login(http).await,
            Login::OAuth2(l) => l.login(http).await,
        }
    }

    /// Trades a still-valid token for a fresh one, where the kind can.
    async fn reissue(
        &self,
        http: &crate::http::Http,
        token: &Token,
    ) -> Option<Result<Token, LoginFailure>> {
        match self {
            Login::CodeExchange(l) if l.can_reissue() => Some(l.reissue(http, token).await),
            _ => None,
        }
    }

    fn url(&self) -> &Url {
        match self {
            Login::Password(l) => &l.url,
            Login::CodeExchange(l) => &l.authorize_url,
            Login::Jwt(l) => &l.url,
            Login::OAuth2(l) => &l.url,
        }
    }

    fn sources(&self) -> &str {
        match self {
            Login::Password(l) => &l.sources,
            Login::CodeExchange(l) => &l.sources,
            Login::Jwt(l) => &l.sources,
            Login::OAuth2(l) => &l.sources,
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        match self {
            Login::Password(l) => l.secrets(),
            Login::CodeExchange(l) => l.secrets(),
            Login::Jwt(l) => l.secrets(),
            Login::OAuth2(l) => l.secrets(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Login::Password(_) => "password_login",
            Login::CodeExchange(_) => "code_exchange",
            Login::Jwt(_) => "jwt_assertion",
            Login::OAuth2(_) => "oauth2_client_credentials",
        }
    }
}

/// One token shared by all requests of a run. Login is single-flight: callers that find the
/// token missing or stale queue on the mutex, and the first one logs in for all of them.
pub struct TokenSession {
    provider: String,
    login: Login,
    config: TokenConfig,
    state: Mutex<State>,
    logins: AtomicU64,
    /// Tokens dropped after a 401 (each followed by a new login).
    reauthentications: AtomicU64,
    /// When each re-authentication after a 401 happened, for the budget.
    reauths: std::sync::Mutex<VecDeque<Instant>>,
    /// When each login happened, for the budget of logins.
    login_times: std::sync::Mutex<VecDeque<Instant>>,
    cache: Option<TokenCache>,
    /// The current token, kept for scrubbing server messages.
    current: std::sync::Mutex<Option<Secret>>,
}

#[derive(Default)]
struct State {
    token: Option<(Token, Credentials)>,
    generation: u64,
    /// The cache is read once, before the first login.
    cache_checked: bool,
    /// A login that failed (after its retries): the requests waiting behind it fail with
    /// the same answer instead of each sending the credentials again — a server that
    /// rejected them once would count every try against the account.
    failed: Option<(String, LoginFailure)>,
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
        base_url: &Url,
        login: Login,
        config: TokenConfig,
        env: &Env,
    ) -> Result<Self, ConfigError> {
        let cache = match config.cache {
            CacheMode::None => None,
            CacheMode::Disk => Some(TokenCache::new(
                provider,
                &config,
                env,
                &fingerprint(provider, base_url, &login),
            )?),
        };
        Ok(TokenSession {
            provider: provider.to_string(),
            login,
            config,
            state: Mutex::new(State::default()),
            logins: AtomicU64::new(0),
            reauthentications: AtomicU64::new(0),
            reauths: std::sync::Mutex::new(VecDeque::new()),
            login_times: std::sync::Mutex::new(VecDeque::new()),
            cache,
            current: std::sync::Mutex::new(None),
        })
    }

    pub(crate) async fn credentials(
        &self,
        http: &crate::http::Http,
    ) -> Result<Credentials, AuthError> {
        let mut state = self.state.lock().await;
        let now = Utc::now();
        if let Some((token, creds)) = &state.token
            && !self.is_stale(token, now)
        {
            return Ok(Credentials {
                generation: state.generation,
                ..creds.clone()
            });
        }
        let token = self.fresh_token(http, &mut state, now).await?;
        self.install(&mut state, token);
        let (_, creds) = state.token.as_ref().expect("just installed");
        Ok(Credentials {
            generation: state.generation,
            ..creds.clone()
        })
    }

    /// A new token: from the cache (once), by reissue while the old one still works, or by a
    /// full login.
    async fn fresh_token(
        &self,
        http: &crate::http::Http,
        state: &mut State,
        now: DateTime<Utc>,
    ) -> Result<Token, AuthError> {
        if !state.cache_checked {
            // A refused cache (loose permissions) fails every caller, not only the first:
            // `cache_checked` is set only once the cache has been read.
            let cached = match &self.cache {
                Some(cache) => cache.load()?,
                None => None,
            };
            state.cache_checked = true;
            if let Some(token) = cached
                && !self.is_stale(&token, now)
            {
                tracing::debug!(provider = %self.provider, "using the cached token");
                return Ok(token);
            }
        }
        if let Some((old, _)) = &state.token
            && !old.is_expired(now)
            && let Some(result) = self.login.reissue(http, old).await
        {
            match result {
                Ok(token) => {
                    tracing::debug!(provider = %self.provider, "token reissued");
                    self.store(&token);
                    return Ok(token);
                }
                Err(e) => {
                    tracing::warn!(provider = %self.provider, error = %self.redact(&e.message), "reissue failed; logging in again");
                }
            }
        }
        let failure = |url: &str, f: &LoginFailure| match f.unreachable {
            true => AuthError::LoginUnreachable {
                provider: self.provider.clone(),
                url: url.to_string(),
                message: f.message.clone(),
            },
            false => AuthError::Login {
                provider: self.provider.clone(),
                url: url.to_string(),
                message: f.message.clone(),
            },
        };
        if let Some((url, f)) = &state.failed {
            return Err(failure(url, f));
        }
        self.count_login()?;
        let token = match self.login.login(http).await {
            Ok(token) => token,
            Err(f) => {
                let url = http.described(self.login.url().as_str());
                let f = f.map(|m| self.redact(&m));
                let error = failure(&url, &f);
                state.failed = Some((url, f));
                return Err(error);
            }
        };
        self.logins.fetch_add(1, Ordering::Relaxed);
        tracing::info!(provider = %self.provider, expires_at = ?token.expires_at, "logged in");
        self.store(&token);
        Ok(token)
    }

    fn store(&self, token: &Token) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.store(token)
        {
            // The run goes on; the next one logs in again.
            tracing::warn!(provider = %self.provider, error = %e, "cannot cache the token");
        }
    }

    fn install(&self, state: &mut State, token: Token) {
        let mut creds = Credentials {
            headers: vec![authorization(&self.config.scheme, &token.value)],
            ..Credentials::default()
        };
        for (name, value) in &token.headers {
            if let Ok(name) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) {
                creds.headers.push(sensitive(name, value));
            }
        }
        *self.current.lock().expect("not poisoned") = Some(token.value.clone());
        state.generation += 1;
        state.token = Some((token, creds));
    }

    /// Renew `renew_before` ahead of expiry, but never more than half the token's lifetime
    /// ahead: a short-lived token would otherwise be renewed on every request.
    fn is_stale(&self, token: &Token, now: DateTime<Utc>) -> bool {
        let Some(expires_at) = token.expires_at else {
            return false;
        };
        let lifetime = (expires_at - token.issued_at).max(chrono::Duration::zero());
        let margin = chrono::Duration::from_std(Duration::from_secs(self.config.renew_before_secs))
            .unwrap_or(chrono::Duration::MAX)
            .min(lifetime / 2);
        now >= expires_at - margin
    }

    /// Counts a login about to be sent against `max_logins` per window; past it, the
    /// credentials are not sent.
    fn count_login(&self) -> Result<(), AuthError> {
        let window = Duration::from_secs(self.config.reauth_window_secs);
        let mut times = self.login_times.lock().expect("not poisoned");
        let now = Instant::now();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            times.pop_front();
        }
        if times.len() >= self.config.max_logins as usize {
            return Err(AuthError::Logins {
                provider: self.provider.clone(),
                count: times.len(),
                max: self.config.max_logins,
                window_secs: self.config.reauth_window_secs,
            });
        }
        times.push_back(now);
        Ok(())
    }

    /// Drops the token of `generation` after a 401 (once, however many requests saw it
    /// rejected) and counts the re-authentication against the budget.
    pub(crate) async fn invalidate(&self, generation: u64) -> Result<(), AuthError> {
        let mut state = self.state.lock().await;
        if state.generation != generation || state.token.is_none() {
            return Ok(());
        }
        state.token = None;
        self.reauthentications.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.cache {
            cache.remove();
        }
        let window = Duration::from_secs(self.config.reauth_window_secs);
        let mut reauths = self.reauths.lock().expect("not poisoned");
        let now = Instant::now();
        while reauths
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            reauths.pop_front();
        }
        reauths.push_back(now);
        if reauths.len() > self.config.max_reauth as usize {
            return Err(AuthError::Budget {
                provider: self.provider.clone(),
                count: reauths.len(),
                max: self.config.max_reauth,
                window_secs: self.config.reauth_window_secs,
            });
        }
        Ok(())
    }

    pub(crate) fn sources(&self) -> String {
        self.login.sources().to_string()
    }

    pub(crate) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    pub(crate) fn reauthentications(&self) -> u64 {
        self.reauthentications.load(Ordering::Relaxed)
    }

    /// Whether `value` is one of the login's secrets or the current token, as a whole.
    pub(crate) fn holds(&self, value: &str) -> bool {
        let current = self.current.lock().expect("not poisoned").clone();
        !value.is_empty()
            && self
                .login
                .secrets()
                .into_iter()
                .chain(current.as_ref())
                .any(|s| s.expose() == value)
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let current = self.current.lock().expect("not poisoned").clone();
        crate::secret::redact(
            text,
            self.login
                .secrets()
                .into_iter()
                .chain(current.as_ref())
                .map(Secret::expose),
        )
    }
}

/// Identifies the credentials without holding them: a token cached for other credentials
/// (or another server) is never used.
fn fingerprint(provider: &str, base_url: &Url, login: &Login) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        provider,
        base_url.as_str(),
        login.kind(),
        login.url().as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for s in login.secrets() {
        h.update(s.expose().as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}
