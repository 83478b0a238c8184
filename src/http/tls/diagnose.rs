//! Why a handshake failed, in words: the rustls error at the root of a request error, or,
//! when an HTTP/2 connection closed and took the alert with it, what the server's handshake
//! asked for.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What servers asked for in their handshakes, for messages when a connection fails in a
/// way that hides the reason (a TLS alert lost in an HTTP/2 connection that closed).
#[derive(Debug)]
pub struct Handshakes {
    pub(super) asked: Mutex<Option<Asked>>,
    /// Some answer arrived: a server that asked for a certificate and then answered did
    /// not refuse, so a later failure is not explained by what it asked.
    answered: AtomicBool,
    /// Whether a client certificate is offered.
    pub client_certificate: bool,
}

/// A server's request for a client certificate.
#[derive(Clone, Debug)]
pub(super) struct Asked {
    /// The issuers it accepts, as it named them (often one: its client CA).
    accepted: Vec<String>,
    /// Whether ours chains to one of them; `None` when we have none, or the server named
    /// no issuer.
    ours_accepted: Option<bool>,
    /// Whether our key can sign with one of the schemes the server accepts (rustls sends
    /// no certificate otherwise); `None` when we have none.
    usable: Option<bool>,
}

/// Hands the configured client certificate (if any) to servers that ask, noting what they
/// asked for.
#[derive(Debug)]
pub(super) struct ClientCertificate {
    pub(super) key: Option<Arc<rustls::sign::CertifiedKey>>,
    /// The DER of the names in its chain (issuers and subjects), as servers name the
    /// issuers they accept: a server may name the root, not the CA that issued ours.
    pub(super) names: Vec<Vec<u8>>,
    pub(super) handshakes: Arc<Handshakes>,
}

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let accepted = root_hint_subjects
            .iter()
            .filter_map(|dn| name(dn))
            .collect();
        let ours_accepted = match (&self.key, root_hint_subjects.is_empty()) {
            (Some(_), false) if !self.names.is_empty() => Some(
                root_hint_subjects
                    .iter()
                    .any(|dn| self.names.iter().any(|n| n == dn)),
            ),
            _ => None,
        };
        let usable = self
            .key
            .as_ref()
            .map(|k| k.key.choose_scheme(sigschemes).is_some());
        if let Ok(mut asked) = self.handshakes.asked.lock() {
            *asked = Some(Asked {
                accepted,
                ours_accepted,
                usable,
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
    pub(super) fn new(client_certificate: bool) -> Handshakes {
        Handshakes {
            asked: Mutex::new(None),
            answered: AtomicBool::new(false),
            client_certificate,
        }
    }

    /// An answer arrived.
    pub fn answered(&self) {
        if !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
    }

    /// Why a connection that closed without a TLS error to show failed, when nothing has
    /// been answered yet and the server's handshake makes it certain: it asked for a client
    /// certificate and got none, named the issuers it accepts and ours chains to none, or
    /// accepts no signature our key can make. `None` otherwise: the failure may pass.
    pub fn refusal(&self) -> Option<String> {
        if self.answered.load(Ordering::Relaxed) {
            return None;
        }
        let asked = self.asked.lock().ok()?.clone()?;
        let issuers = asked.accepted.join("; ");
        if !self.client_certificate {
            let from = if issuers.is_empty() {
                String::new()
            } else {
                format!(" (issued by {issuers})")
            };
            return Some(format!(
                "TLS: the server asks for a client certificate{from} and the provider has \
                 none: set its `tls.client_cert` and `tls.client_key` (or `tls.pkcs12`)"
            ));
        }
        if asked.usable == Some(false) {
            return Some(
                "TLS: the server accepts none of the signature schemes the client \
                 certificate's key can make (so none was sent): ask its operators which key \
                 types it takes (RSA or ECDSA P-256 are the safest)"
                    .into(),
            );
        }
        (asked.ours_accepted == Some(false)).then(|| {
            format!(
                "TLS: the server refused apisnap's client certificate: it accepts those issued \
                 by {issuers}, and the one in `tls.client_cert` (or `tls.pkcs12`) is not: use \
                 the one its operators issued for this API"
            )
        })
    }
}

/// A TLS handshake refused for a reason another attempt will not change, in words: which
/// check failed and what to do. `None` when `e` is not such a failure (not TLS at all, or
/// a fault that may pass, such as an internal error alert from a busy load balancer).
/// `identity`: whether a client certificate is configured.
pub fn failure(e: &(dyn StdError + 'static), identity: bool) -> Option<String> {
    let tls = rustls_error(e)?;
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    let date = |t: &rustls::pki_types::UnixTime| {
        chrono::DateTime::from_timestamp(t.as_secs() as i64, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    let set_certificate = "set the provider's `tls.client_cert` and `tls.client_key` (or \
                           `tls.pkcs12`)";
    Some(match tls.clone() {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "TLS: the server's certificate is not signed by a CA apisnap trusts: for a private \
             CA set the provider's `tls.ca_file` to its PEM bundle (or SSL_CERT_FILE for every \
             provider); if the CA is trusted, the server may not be sending its intermediate \
             certificate"
                .into()
        }
        E::InvalidCertificate(Cert::BadSignature) => "TLS: the server's certificate has a bad \
             signature: it was not issued by the CA it names; ask the API's operators"
            .into(),
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
            if presented.is_empty() {
                "no host name".to_string()
            } else {
                presented.join(", ")
            },
            expected.to_str()
        ),
        E::InvalidCertificate(Cert::NotValidForName) => "TLS: the server's certificate is \
             not for this host: check the host in `base_url`"
            .into(),
        E::InvalidCertificate(Cert::Revoked) => {
            "TLS: the server's certificate has been revoked".into()
        }
        E::InvalidCertificate(Cert::InvalidPurpose | Cert::InvalidPurposeContext { .. }) => {
            "TLS: the server's certificate is not one for a server (its extended key usage): \
             ask the API's operators"
                .into()
        }
        E::InvalidCertificate(other) => {
            format!(
                "TLS: the server's certificate is refused: {}",
                E::InvalidCertificate(other)
            )
        }
        E::AlertReceived(Alert::CertificateRequired) => {
            format!("TLS: the server asks for a client certificate: {set_certificate}")
        }
        E::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate),
        ) if identity => format!(
            "TLS: the server refused apisnap's client certificate ({alert:?}): check that \
             `tls.client_cert` (or `tls.pkcs12`) is the one its operators issued for this API"
        ),
        E::AlertReceived(Alert::HandshakeFailure) => format!(
            "TLS: the server refused the handshake: it shares no cipher suite with apisnap \
             (rustls offers only modern ones){}",
            if identity {
                ", or it refused the client certificate".to_string()
            } else {
                format!(", or it wants a client certificate: {set_certificate}")
            }
        ),
        E::AlertReceived(Alert::ProtocolVersion) => format!(
            "TLS: the server and apisnap share no TLS version ({tls}): apisnap speaks TLS 1.2 \
             and 1.3; check `tls.min_version` if it is set"
        ),
        E::PeerIncompatible(why) => format!(
            "TLS: the server and apisnap share no TLS version or cipher suite ({why:?}): \
             apisnap speaks TLS 1.2 and 1.3 with modern suites; check `tls.min_version` if \
             it is set"
        ),
        E::NoCertificatesPresented => "TLS: the server sent no certificate".into(),
        // Anything else may pass (an overloaded balancer's internal error): retried.
        _ => return None,
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
