//! TLS for database connections, in pure Rust (rustls with the ring provider) so that it
//! links into the static musl binary.
//!
//! `sslmode` behaves as in libpq:
//!
//! | mode | encrypts | checks the certificate chain | checks the host name |
//! | --- | --- | --- | --- |
//! | `disable` | no | — | — |
//! | `prefer` (default) | if the server offers it | no | no |
//! | `require` | yes | only when a root certificate is available | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use postgres::Socket;
use postgres::tls::MakeTlsConnect;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values that skyrep supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, without checking the certificate.
    Prefer,
    /// TLS always; the chain is checked only when a root certificate is available.
    Require,
    /// TLS, and the server certificate must chain to a trusted root.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => bail!(
                "invalid sslmode `{other}` (choose disable, prefer, require, verify-ca or verify-full)"
            ),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

impl SslMode {
    /// The `postgres` crate's mode for the protocol-level decision (whether to ask for TLS).
    pub fn protocol_mode(self) -> postgres::config::SslMode {
        match self {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        }
    }
}

/// The TLS connector skyrep gives the driver: rustls, plus a stand-in server name where
/// there is none (unix sockets, `hostaddr` alone) and no name is checked. The driver asks for
/// a connector before it knows whether TLS will be used at all, and rustls refuses an empty
/// name even when no handshake follows.
#[derive(Clone)]
pub struct Connector {
    rustls: MakeRustlsConnect,
    checks_names: bool,
}

impl MakeTlsConnect<Socket> for Connector {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = if hostname.is_empty() && !self.checks_names {
            "localhost"
        } else {
            hostname
        };
        MakeTlsConnect::<Socket>::make_tls_connect(&mut self.rustls, name)
    }
}

/// The TLS connector for `mode`, trusting the PEM certificates in `rootcert` where the mode
/// checks certificates.
pub fn connector(mode: SslMode, rootcert: Option<&Path>) -> Result<Connector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, rootcert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Arc::new(
            NoCertificateCheck(provider.signature_verification_algorithms),
        ),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => bail!(
            "sslmode={mode} needs the server's root certificate: set sslrootcert \
             (default ~/.postgresql/root.crt, which does not exist)"
        ),
        (SslMode::Require | SslMode::VerifyCa, Some(file)) => {
            Arc::new(ChainOnlyCheck(webpki_verifier(file, &provider)?))
        }
        (SslMode::VerifyFull, Some(file)) => webpki_verifier(file, &provider)?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Connector {
        rustls: MakeRustlsConnect::new(config),
        checks_names: mode == SslMode::VerifyFull,
    })
}

fn webpki_verifier(
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("cannot read sslrootcert {}", file.display()))?;
    for cert in certs {
        let cert =
            cert.with_context(|| format!("bad certificate in sslrootcert {}", file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("unusable certificate in sslrootcert {}", file.display()))?;
    }
    if roots.is_empty() {
        bail!("sslrootcert {} holds no certificate", file.display());
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .with_context(|| format!("cannot use sslrootcert {}", file.display()))
}

/// Encrypts without checking who the server is (libpq's `prefer` and `require` without a
/// root certificate). The handshake signatures are still verified.
#[derive(Debug)]
struct NoCertificateCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Checks that the certificate chains to a trusted root but not the name in it (libpq's
/// `verify-ca`).
#[derive(Debug)]
struct ChainOnlyCheck(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain is known to be good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for text in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(text.parse::<SslMode>().unwrap().to_string(), text);
        }
        assert_eq!("allow".parse::<SslMode>().unwrap(), SslMode::Prefer);
        assert!("on".parse::<SslMode>().is_err());
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        let err = connector(SslMode::VerifyFull, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("sslrootcert"), "{err}");
        let err = connector(SslMode::VerifyCa, Some(Path::new("/nonexistent/root.crt")))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/root.crt"), "{err}");
        assert!(connector(SslMode::Require, None).is_ok());
    }
}
