//! A client certificate and its key, from PEM files or a PKCS#12 file, checked to belong
//! together and to be valid now.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Peer, certificates, read};
use crate::vocab::ConfigError;

/// A client certificate chain and its key, checked to belong together.
pub(super) struct Chain {
    /// Where they came from, for messages: `tls.client_cert` or `tls.pkcs12`.
    field: &'static str,
    /// The field a key that does not belong is blamed on.
    key_field: &'static str,
    path: String,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

pub(super) fn pem_identity(cert_path: &str, key_path: &str) -> Result<Chain, ConfigError> {
    let pem = read("tls.client_cert", cert_path)?;
    let certs = certificates(&pem).map_err(|e| {
        ConfigError::field("tls.client_cert", format!("`{cert_path}` is not PEM: {e}"))
    })?;
    if certs.is_empty() {
        return Err(ConfigError::field(
            "tls.client_cert",
            format!("`{cert_path}` holds no certificate: expected `-----BEGIN CERTIFICATE-----`"),
        ));
    }
    let key_pem = read("tls.client_key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let hint = if key_pem.windows(9).any(|w| w == b"ENCRYPTED") {
            "the key is encrypted: decrypt it (`openssl pkey -in key.pem -out plain.pem`), or \
             use a `tls.pkcs12` file with its password"
                .to_string()
        } else {
            format!("expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")
        };
        ConfigError::field("tls.client_key", format!("`{key_path}`: {hint}"))
    })?;
    Ok(Chain {
        field: "tls.client_cert",
        key_field: "tls.client_key",
        path: cert_path.to_string(),
        certs,
        key,
    })
}

/// `password`: `None` when the job sets none (an unprotected file, opened with "").
pub(super) fn pkcs12_identity(path: &str, password: Option<&str>) -> Result<Chain, ConfigError> {
    let data = read("tls.pkcs12", path)?;
    let store = p12_keystore::KeyStore::from_pkcs12(
        &data,
        password.unwrap_or_default(),
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|e| {
        let why = match e {
            p12_keystore::error::Error::MacError(_) if password.is_none() => {
                "it needs a password: set `tls.pkcs12_password` (`env:` or `file:`)".to_string()
            }
            p12_keystore::error::Error::MacError(_) => {
                "the password does not open it: check `tls.pkcs12_password`".to_string()
            }
            other => format!("not a PKCS#12 file apisnap can read ({other})"),
        };
        ConfigError::field("tls.pkcs12", format!("`{path}`: {why}"))
    })?;
    let Some((_, chain)) = store.private_key_chain() else {
        return Err(ConfigError::field(
            "tls.pkcs12",
            format!("`{path}` holds no private key with its certificate"),
        ));
    };
    let key = PrivateKeyDer::try_from(chain.key().as_der().to_vec())
        .map_err(|e| ConfigError::field("tls.pkcs12", format!("`{path}`: its key: {e}")))?;
    Ok(Chain {
        field: "tls.pkcs12",
        key_field: "tls.pkcs12",
        path: path.to_string(),
        certs: chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect(),
        key,
    })
}

impl Chain {
    /// The signing key with its chain, the certificate the key belongs to first, its
    /// validity checked; and the DER of every name in the chain (issuers and subjects), to
    /// compare with the issuers a server says it accepts.
    pub(super) fn certified(
        mut self,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<(Arc<rustls::sign::CertifiedKey>, Vec<Vec<u8>>), ConfigError> {
        let field = self.field;
        let path = &self.path;
        let signing = provider
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| {
                ConfigError::field(field, format!("`{path}`: a key rustls cannot use: {e}"))
            })?;
        let leaf = self.certs.iter().position(|cert| {
            rustls::sign::CertifiedKey::new(vec![cert.clone()], signing.clone())
                .keys_match()
                .is_ok()
        });
        let Some(leaf) = leaf else {
            return Err(ConfigError::field(
                self.key_field,
                format!("the private key does not belong to the certificate in `{path}`"),
            ));
        };
        let leaf_cert = self.certs.remove(leaf);
        let names = {
            use x509_parser::prelude::{FromDer, X509Certificate};
            std::iter::once(&leaf_cert)
                .chain(&self.certs)
                .filter_map(|der| X509Certificate::from_der(der).ok())
                .flat_map(|(_, c)| [c.issuer().as_raw().to_vec(), c.subject().as_raw().to_vec()])
                .collect()
        };
        if let Some(peer) = Peer::from_der(&leaf_cert) {
            let now = chrono::Utc::now();
            if peer.not_after < now {
                return Err(ConfigError::field(
                    field,
                    format!(
                        "the client certificate in `{path}` ({}) expired on {}: ask its issuer \
                         for a new one",
                        peer.subject,
                        peer.not_after.format("%Y-%m-%d %H:%M UTC")
                    ),
                ));
            }
            if peer.not_before > now {
                return Err(ConfigError::field(
                    field,
                    format!(
                        "the client certificate in `{path}` ({}) is valid only from {}: check \
                         this machine's clock",
                        peer.subject,
                        peer.not_before.format("%Y-%m-%d %H:%M UTC")
                    ),
                ));
            }
        }
        self.certs.insert(0, leaf_cert);
        Ok((
            Arc::new(rustls::sign::CertifiedKey::new(self.certs, signing)),
            names,
        ))
    }
}
