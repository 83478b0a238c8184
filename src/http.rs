//! HTTP helpers that both the data requests (`fetch`) and the login requests (`auth`) use:
//! the client, errors in words without their URL, body snippets, `Retry-After`. A leaf, so
//! that `auth` and `fetch` need not import each other's insides.

use std::time::Duration;

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A reqwest error in words, without its URL.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the body ended early or could not be decoded"
    } else {
        "request error"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

/// The most of a server's text an error message quotes.
const QUOTED: usize = 200;

/// The first 200 bytes of a body, as text, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let cut = body.len().min(QUOTED);
    let mut out = printable(&String::from_utf8_lossy(&body[..cut]));
    if body.len() > QUOTED {
        out.push('…');
    }
    if out.is_empty() {
        "(empty body)".into()
    } else {
        out
    }
}

/// A server's text made fit for one log line: control characters (newlines, escapes) out,
/// so that a server cannot forge log lines or move the terminal; at most 200 characters.
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(QUOTED)
        .collect();
    if text.chars().count() > QUOTED {
        out.push('…');
    }
    out
}

/// The HTTP client for one provider: keep-alive, compression, timeouts, User-Agent.
pub fn client(
    user_agent: &str,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        // A redirect could carry the Authorization header to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The places a provider's credentials may go: its `base_url`'s origin (scheme, host and
/// port) and those of its `allowed_hosts`. A URL the server supplies (a next page, a `Link`)
/// elsewhere gets nothing, and never over plain `http://` when the provider is `https://`.
#[derive(Clone, Debug)]
pub struct Origins {
    provider: url::Origin,
    allowed: Vec<url::Origin>,
}

impl Origins {
    /// `allowed` entries are host names, which share the provider's scheme and port, or
    /// origins of their own (`https://cdn.example.com:8443`).
    pub fn new(base: &url::Url, allowed: &[String]) -> Origins {
        let provider = base.origin();
        let allowed = allowed
            .iter()
            .filter_map(|entry| {
                if entry.contains("://") {
                    return url::Url::parse(entry).ok().map(|u| u.origin());
                }
                let mut url = base.clone();
                url.set_host(Some(entry)).ok()?;
                Some(url.origin())
            })
            .collect();
        Origins { provider, allowed }
    }

    /// `None` if credentials may go to `url`; else why not, in words for the error.
    pub fn refuse(&self, url: &url::Url) -> Option<String> {
        let origin = url.origin();
        if origin == self.provider || self.allowed.contains(&origin) {
            return None;
        }
        let url::Origin::Tuple(scheme, host, port) = &self.provider else {
            return Some("at an opaque origin".into());
        };
        let host_of = url.host_str().unwrap_or_default();
        let same_host = host_of.eq_ignore_ascii_case(&host.to_string())
            || self.allowed.iter().any(|o| match o {
                url::Origin::Tuple(_, h, _) => h.to_string().eq_ignore_ascii_case(host_of),
                url::Origin::Opaque(_) => false,
            });
        Some(if !same_host {
            format!("on host `{host_of}`, which is not the provider's")
        } else if url.scheme() != scheme {
            format!(
                "over {}://, while the provider is {scheme}://, which is not the provider's \
                 origin",
                url.scheme()
            )
        } else {
            format!(
                "on port {}, which is not the provider's ({port})",
                url.port_or_known_default().unwrap_or_default()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_to_the_providers_origins() {
        let base = url::Url::parse("https://api.example.com/v1").unwrap();
        let origins = Origins::new(
            &base,
            &[
                "cdn.example.com".into(),
                "https://files.example.com:8443".into(),
            ],
        );
        let refuse = |u: &str| origins.refuse(&url::Url::parse(u).unwrap());
        assert_eq!(refuse("https://api.example.com/v1/next?page=2"), None);
        assert_eq!(refuse("https://API.example.com:443/x"), None);
        assert_eq!(refuse("https://cdn.example.com/x"), None);
        assert_eq!(refuse("https://files.example.com:8443/x"), None);
        let other = refuse("https://evil.example.net/x").unwrap();
        assert!(other.contains("on host `evil.example.net`"), "{other}");
        let port = refuse("https://api.example.com:8443/x").unwrap();
        assert!(port.contains("on port 8443"), "{port}");
        let plain = refuse("http://api.example.com/x").unwrap();
        assert!(plain.contains("over http://"), "{plain}");
        assert!(refuse("http://cdn.example.com/x").is_some(), "no downgrade");
    }

    #[test]
    fn server_text_cannot_forge_log_lines() {
        let forged = "bad password\n2026-12-01T00:00:00Z INFO run finished\u{1b}[2J";
        let clean = printable(forged);
        assert!(
            !clean.contains('\n') && !clean.contains('\u{1b}'),
            "{clean:?}"
        );
        assert!(printable(&"x".repeat(500)).chars().count() <= 201);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        let date = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = parse_retry_after(&date).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
