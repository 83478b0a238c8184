//! Tokens the sandbox has issued, with their expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Tokens {
    issued: Mutex<HashMap<String, (&'static str, Instant)>>,
    /// Every token ever issued, so leak tests can look for them in logs and files.
    history: Mutex<Vec<String>>,
}

impl Tokens {
    /// Issues a fresh random token for `provider`.
    pub fn issue(&self, provider: &'static str, ttl: Duration) -> String {
        let token = format!("{provider}-{}", uuid::Uuid::new_v4().simple());
        let mut issued = self.issued.lock().expect("not poisoned");
        let now = Instant::now();
        issued.retain(|_, (_, expires)| *expires > now);
        issued.insert(token.clone(), (provider, now + ttl));
        self.history
            .lock()
            .expect("not poisoned")
            .push(token.clone());
        token
    }

    /// Records a credential the client sent (a signed request token), for leak tests.
    pub fn remember(&self, credential: &str) {
        self.history
            .lock()
            .expect("not poisoned")
            .push(credential.to_string());
    }

    /// Every token issued (and request token received) so far.
    pub fn history(&self) -> Vec<String> {
        self.history.lock().expect("not poisoned").clone()
    }

    /// Whether `token` was issued for `provider` and has not expired.
    pub fn valid(&self, provider: &str, token: &str) -> bool {
        let issued = self.issued.lock().expect("not poisoned");
        issued
            .get(token)
            .is_some_and(|(p, expires)| *p == provider && *expires > Instant::now())
    }

    /// Forgets a token (revocation).
    pub fn revoke(&self, token: &str) {
        self.issued.lock().expect("not poisoned").remove(token);
    }
}

/// The token in an `Authorization: <scheme> <token>` header.
pub fn from_header<'h>(headers: &'h axum::http::HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (s, token) = value.split_once(' ')?;
    (s == scheme).then_some(token.trim())
}
