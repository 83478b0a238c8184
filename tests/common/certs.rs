//! Certificates made for a test (rcgen): a private CA, server certificates it signs (valid,
//! expired), and client certificates for mutual TLS, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that signs what the test asks for.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`, valid from `days_from` to
    /// `days_to` days from now (negative: in the past).
    pub fn server(&self, name: &str, days_from: i64, days_to: i64) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, days_from, days_to)
    }

    /// A client certificate, valid for a year.
    pub fn client(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, -1, 365)
    }

    fn sign(&self, mut params: CertificateParams, days_from: i64, days_to: i64) -> Issued {
        // rcgen takes `time` dates; `time` is not a dependency of the tests, so days are
        // counted from a date rcgen makes.
        let now = rcgen::date_time_ymd(2000, 1, 1) + since_2000();
        let shift = |days: i64| {
            let span = std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
            if days < 0 { now - span } else { now + span }
        };
        params.not_before = shift(days_from);
        params.not_after = shift(days_to);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write(dir, name, &self.pem)
    }
}

impl Issued {
    /// Writes `NAME.crt` and `NAME.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            write(dir, &format!("{name}.crt"), &self.cert_pem),
            write(dir, &format!("{name}.key"), &self.key_pem),
        )
    }

    /// The sandbox's TLS settings with this certificate, requiring client certificates of
    /// `client_ca` if given.
    pub fn sandbox(&self, client_ca: Option<&Ca>) -> apisnap::sandbox::SandboxTls {
        apisnap::sandbox::SandboxTls {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            client_ca_pem: client_ca.map(|ca| ca.pem.clone()),
            tls12_only: false,
            client_certificate_optional: false,
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn since_2000() -> std::time::Duration {
    const Y2000: u64 = 946_684_800;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now - std::time::Duration::from_secs(Y2000)
}
