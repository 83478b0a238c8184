//! Why a handshake failed, in words: the rustls error at the root of a request error, or,
//! when an HTTP/2 connection closed and took the alert with it, what the server's handshake
//! asked for.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

/// What servers asked for in their handshakes, for messages when a connection fails in a
/// way that hides the reason (a TLS alert lost in an HTTP/2 connection that closed).
#[derive(Debug, Default)]
pub struct Handshakes {
    pub(super) asked: Mutex<Option<Asked>>,
    /// Whether a client certificate is offered.
    pub client_certificate: bool,
}

/// A server's request for a client certificate.
#[derive(Clone, Debug)]
pub(super) struct Asked {
    /// The issuers it accepts, as it named them (often one: its client CA).
    accepted: Vec<String>,
    /// Whether ours is among them; `None` when we have none, or the server named no
    /// issuer.
    ours_accepted: Option<bool>,
}

/// Hands the configured client certificate (if any) to servers that ask, noting what they
/// asked for.
#[derive(Debug)]
pub(super) struct ClientCertificate {
    pub(super) key: Option<Arc<rustls::sign::CertifiedKey>>,
    /// The DER of its issuer's name, as servers name the issuers they accept.
    pub(super) issuer: Option<Vec<u8>>,
    pub(super) handshakes: Arc<Handshakes>,
}

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let accepted = root_hint_subjects
            .iter()
            .filter_map(|dn| name(dn))
            .collect();
        let ours_accepted = match (&self.issuer, root_hint_subjects.is_empty()) {
            (Some(issuer), false) => Some(root_hint_subjects.iter().any(|dn| *dn == issuer)),
            _ => None,
        };
        if let Ok(mut asked) = self.handshakes.asked.lock() {
            *asked = Some(Asked {
                accepted,
                ours_accepted,
            });
        }
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// An X.509 name (DER) as text: `CN=Example Corp Client CA`.
fn name(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    x509_parser::x509::X509Name::from_der(der)
        .ok()
        .map(|(_, n)| n.to_string())
}

impl Handshakes {
    /// Why a connection that failed without a TLS error to show most likely failed, when a
    /// server's handshake makes it certain: it asked for a client certificate and got none,
    /// or named the issuers it accepts and ours is not one.
    pub fn refusal(&self) -> Option<String> {
        let asked = self.asked.lock().ok()?.clone()?;
        let issuers = asked.accepted.join("; ");
        match (self.client_certificate, asked.ours_accepted) {
            (false, _) => Some(format!(
                "TLS: the server asks for a client certificate{} and the provider has none: \
                 set its `tls.client_cert` and `tls.client_key` (or `tls.pkcs12`)",
                match issuers.is_empty() {
                    true => String::new(),
                    false => format!(" (issued by {issuers})"),
                }
            )),
            (true, Some(false)) => Some(format!(
                "TLS: the server refused apisnap's client certificate: it accepts those issued \
                 by {issuers}, and the one in `tls.client_cert` (or `tls.pkcs12`) is not: use \
                 the one its operators issued for this API"
            )),
            _ => None,
        }
    }
}

/// A TLS handshake that failed, in words: which check and what to do. `None` when `e` is
/// not a TLS failure. `identity`: whether a client certificate was offered.
pub fn failure(e: &(dyn StdError + 'static), identity: bool) -> Option<String> {
    let tls = rustls_error(e)?;
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    let date = |t: &rustls::pki_types::UnixTime| {
        chrono::DateTime::from_timestamp(t.as_secs() as i64, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    Some(match tls.clone() {
        E::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "TLS: the server's certificate is not signed by a CA apisnap trusts: for a private \
             CA set the provider's `tls.ca_file` to its PEM bundle (or SSL_CERT_FILE for every \
             provider)"
                .into()
        }
        E::InvalidCertificate(Cert::ExpiredContext { not_after, .. }) => format!(
            "TLS: the server's certificate expired on {}: the API's operators have to renew it \
             (apisnap does not talk to a server whose certificate has expired)",
            date(&not_after)
        ),
        E::InvalidCertificate(Cert::Expired) => "TLS: the server's certificate has expired: \
             the API's operators have to renew it"
            .into(),
        E::InvalidCertificate(Cert::NotValidYetContext { not_before, .. }) => format!(
            "TLS: the server's certificate is valid only from {}: check this machine's clock",
            date(&not_before)
        ),
        E::InvalidCertificate(Cert::NotValidYet) => {
            "TLS: the server's certificate is not valid yet: check this machine's clock".into()
        }
        E::InvalidCertificate(Cert::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "TLS: the server's certificate is for {} and not for {}: check the host in \
             `base_url`",
            presented.join(", "),
            expected.to_str()
        ),
        E::InvalidCertificate(Cert::NotValidForName) => "TLS: the server's certificate is \
             not for this host: check the host in `base_url`"
            .into(),
        E::InvalidCertificate(Cert::Revoked) => {
            "TLS: the server's certificate has been revoked".into()
        }
        E::InvalidCertificate(other) => {
            format!("TLS: the server's certificate is refused: {other:?}")
        }
        E::AlertReceived(Alert::CertificateRequired) => {
            "TLS: the server asks for a client certificate: set the provider's \
             `tls.client_cert` and `tls.client_key` (or `tls.pkcs12`)"
                .into()
        }
        E::AlertReceived(Alert::HandshakeFailure) if !identity => {
            "TLS: the server refused the handshake, perhaps for want of a client certificate: \
             set the provider's `tls.client_cert` and `tls.client_key` (or `tls.pkcs12`)"
                .into()
        }
        E::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::AccessDenied
            | Alert::DecryptError
            | Alert::HandshakeFailure),
        ) => format!(
            "TLS: the server refused apisnap's client certificate ({alert:?}): check that \
             `tls.client_cert` (or `tls.pkcs12`) is the one its operators issued for this API"
        ),
        E::AlertReceived(Alert::ProtocolVersion) | E::PeerIncompatible(_) => format!(
            "TLS: the server and apisnap share no TLS version or cipher ({tls}): check \
             `tls.min_version`"
        ),
        other => format!("TLS: {other}"),
    })
}

/// The rustls error at the root of `e`, if any. `io::Error`'s `source()` skips the error it
/// wraps, so each one is opened by hand.
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(found) = rustls_error(inner)
        {
            return Some(found);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let message = failure(&io, false).unwrap();
        assert!(message.contains("tls.ca_file"), "{message}");
        let plain = std::io::Error::other("connection reset");
        assert_eq!(failure(&plain, false), None);
    }
}
