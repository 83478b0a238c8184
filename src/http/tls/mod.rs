//! `[tls]`: whom a provider's server has to prove it is (the CAs trusted, the oldest TLS
//! version), and how apisnap proves who it is (a client certificate, for mutual TLS). Data,
//! login and token requests share one client, so they share these settings.
//!
//! `identity.rs` reads client certificates (PEM, PKCS#12); `diagnose.rs` turns a failed
//! handshake into words that say which check failed and what to change; `peer.rs` is the
//! server's certificate as `apisnap check` reports it.

mod diagnose;
mod identity;
mod peer;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::secret::SecretRef;
use crate::vocab::{ConfigError, ConfigErrors};

use diagnose::ClientCertificate;
pub use diagnose::{Handshakes, failure};
use identity::{pem_identity, pkcs12_identity};
pub use peer::Peer;

/// The TLS settings of one provider. Without this table the server's certificate has to
/// chain to the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the
/// platform's store) and no client certificate is sent.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of CA certificates, for a server signed by a private CA. They are added to
    /// the system's roots, or replace them with `builtin_roots = false`.
    #[serde(default)]
    #[schemars(example = &"/etc/apisnap/corporate-ca.pem")]
    pub ca_file: Option<String>,
    /// Trust the system's roots as well as `ca_file`'s. `false` trusts `ca_file` alone.
    #[serde(default = "yes")]
    pub builtin_roots: bool,
    /// The client certificate for mutual TLS, PEM: the certificate first, then any
    /// intermediates. With `client_key`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// The client certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1), unencrypted: keep
    /// the file readable by apisnap's user only.
    #[serde(default)]
    pub client_key: Option<String>,
    /// The client certificate and its key in one PKCS#12 file (`.p12`, `.pfx`), instead of
    /// `client_cert` and `client_key`.
    #[serde(default)]
    pub pkcs12: Option<String>,
    /// The PKCS#12 file's password (`env:` or `file:`).
    #[serde(default)]
    pub pkcs12_password: Option<SecretRef>,
    /// The oldest TLS version accepted: `"1.2"` (the default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
}

fn yes() -> bool {
    true
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            builtin_roots: true,
            client_cert: None,
            client_key: None,
            pkcs12: None,
            pkcs12_password: None,
            min_version: None,
        }
    }
}

/// A TLS version, as `tls.min_version` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The runtime form of [`TlsConfig`]: the rustls configuration its files make, and what
/// the servers' handshakes asked of it.
#[derive(Clone)]
pub struct Tls {
    config: rustls::ClientConfig,
    pub handshakes: Arc<Handshakes>,
}

impl TlsConfig {
    /// Checks what can be checked without the files and the environment.
    pub fn validate(&self, errors: &mut ConfigErrors) {
        if !self.builtin_roots && self.ca_file.is_none() {
            errors.push(ConfigError::field(
                "tls.builtin_roots",
                "`false` trusts `tls.ca_file` alone, and there is none: set `tls.ca_file` \
                 to the CA's PEM bundle, or remove `builtin_roots`",
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            errors.push(ConfigError::field(
                if self.client_cert.is_some() {
                    "tls.client_key"
                } else {
                    "tls.client_cert"
                },
                "a client certificate needs both `tls.client_cert` and `tls.client_key` \
                 (PEM files), or a `tls.pkcs12` file",
            ));
        }
        if self.pkcs12.is_some() && self.client_cert.is_some() {
            errors.push(ConfigError::field(
                "tls.pkcs12",
                "set either `tls.pkcs12` or `tls.client_cert` with `tls.client_key`, not both",
            ));
        }
        if self.pkcs12_password.is_some() && self.pkcs12.is_none() {
            errors.push(ConfigError::field(
                "tls.pkcs12_password",
                "a password without a `tls.pkcs12` file",
            ));
        }
        for (field, path) in [
            ("tls.ca_file", &self.ca_file),
            ("tls.client_cert", &self.client_cert),
            ("tls.client_key", &self.client_key),
            ("tls.pkcs12", &self.pkcs12),
        ] {
            if path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                errors.push(ConfigError::field(field, "expected the path of a file"));
            }
        }
    }

    /// Reads and checks the files: certificates that parse, a key that belongs to its
    /// certificate, a client certificate within its validity.
    pub fn build(&self, env: &Env) -> Result<Tls, ConfigError> {
        let mut roots = Vec::new();
        if let Some(path) = &self.ca_file {
            let pem = read("tls.ca_file", path)?;
            roots = certificates(&pem).map_err(|e| {
                ConfigError::field("tls.ca_file", format!("`{path}` is not a PEM bundle: {e}"))
            })?;
            if roots.is_empty() {
                return Err(ConfigError::field(
                    "tls.ca_file",
                    format!(
                        "`{path}` holds no certificate: expected PEM blocks \
                         `-----BEGIN CERTIFICATE-----`"
                    ),
                ));
            }
        }
        let chain = match (&self.client_cert, &self.client_key, &self.pkcs12) {
            (Some(cert), Some(key), _) => Some(pem_identity(cert, key)?),
            (_, _, Some(p12)) => {
                let password = match &self.pkcs12_password {
                    Some(secret) => Some(
                        secret
                            .resolve(env)
                            .map_err(|e| ConfigError::field("tls.pkcs12_password", e.to_string()))?
                            .expose()
                            .to_string(),
                    ),
                    None => None,
                };
                Some(pkcs12_identity(p12, password.as_deref())?)
            }
            _ => None,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (key, names) = match chain {
            Some(chain) => {
                let (key, names) = chain.certified(&provider)?;
                (Some(key), names)
            }
            None => (None, Vec::new()),
        };
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
            _ => rustls::DEFAULT_VERSIONS,
        };
        let unusable = |field: &str, e: &dyn std::fmt::Display| {
            ConfigError::field(field, format!("rustls cannot use these settings: {e}"))
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| unusable("tls.min_version", &e))?;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if self.builtin_roots {
            // The platform's verifier reads SSL_CERT_FILE and SSL_CERT_DIR, as curl does.
            Arc::new(
                rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                    .map_err(|e| {
                    ConfigError::field(
                        "tls",
                        format!(
                            "cannot load the system's CA certificates ({e}): install them \
                                 (Debian: ca-certificates), or set `tls.ca_file` and \
                                 `tls.builtin_roots = false`"
                        ),
                    )
                })?,
            )
        } else {
            let mut store = rustls::RootCertStore::empty();
            for cert in roots {
                store.add(cert).map_err(|e| unusable("tls.ca_file", &e))?;
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| unusable("tls.ca_file", &e))?
        };
        let handshakes = Arc::new(Handshakes::new(key.is_some()));
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(ClientCertificate {
                key,
                names,
                handshakes: handshakes.clone(),
            }));
        // reqwest leaves a preconfigured client's ALPN alone: these are what it offers with
        // its own configuration (HTTP/2, else HTTP/1.1).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { config, handshakes })
    }
}

impl Tls {
    /// These settings on a client under construction.
    pub fn apply(self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder
            .tls_backend_preconfigured(self.config)
            // The server's certificate and version, for `apisnap check`.
            .tls_info(true)
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshakes", &self.handshakes)
            .finish_non_exhaustive()
    }
}

fn read(field: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::field(field, format!("cannot read `{path}`: {e}")))
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let mut errors = ConfigErrors::default();
        TlsConfig {
            builtin_roots: false,
            client_cert: Some("c.pem".into()),
            pkcs12_password: Some("env:X".parse().unwrap()),
            ..TlsConfig::default()
        }
        .validate(&mut errors);
        let text = errors.to_string();
        for field in ["tls.builtin_roots", "tls.client_key", "tls.pkcs12_password"] {
            assert!(text.contains(field), "{field} in {text}");
        }
    }
}
