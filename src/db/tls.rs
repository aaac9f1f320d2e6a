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
//!
//! Over TLS the stream gives the driver the channel binding data of SCRAM-SHA-256-PLUS
//! (`tls-server-end-point`, RFC 5929: the hash of the server certificate, with the hash of
//! its signature algorithm, SHA-256 for MD5 and SHA-1), so `channel_binding=require` works.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result, bail};
use postgres::Socket;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use ring::digest;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres_rustls::MakeRustlsConnect;
use x509_cert::Certificate;
use x509_cert::der::Decode;

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
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = if hostname.is_empty() && !self.checks_names {
            "localhost"
        } else {
            hostname
        };
        MakeTlsConnect::<Socket>::make_tls_connect(&mut self.rustls, name).map(Connect)
    }
}

/// The rustls stream of tokio-postgres-rustls.
type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
/// The handshake of tokio-postgres-rustls.
type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

/// The TLS handshake for one connection; the stream it gives knows its channel binding.
pub struct Connect(RustlsConnect);

impl TlsConnect<Socket> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        let handshake = self.0.connect(socket);
        Box::pin(async move {
            let mut inner = handshake.await?;
            let certificate = Pin::into_inner(Pin::new(&mut inner).project_stream())
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first());
            let end_point = certificate.and_then(|cert| server_end_point(cert.as_ref()));
            Ok(Stream { inner, end_point })
        })
    }
}

/// A TLS connection to the server, with its `tls-server-end-point` channel binding data.
pub struct Stream {
    inner: RustlsStream,
    /// The hash of the server certificate, where its signature algorithm names one.
    end_point: Option<Vec<u8>>,
}

impl TlsStream for Stream {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.end_point {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.clone()),
            None => ChannelBinding::none(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// RFC 5929's `tls-server-end-point` of the DER certificate `der`: its hash with the hash
/// function of its signature algorithm, SHA-256 where that is MD5 or SHA-1 (PostgreSQL's
/// rule too). `None` for an algorithm without one such hash (Ed25519, RSA-PSS, SHA-224).
fn server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(der).ok()?;
    let algorithm = match cert.signature_algorithm.oid.to_string().as_str() {
        // md5WithRSA, sha1WithRSA, sha256WithRSA; ecdsa-with-SHA1, -SHA256; dsa-with-sha1,
        // -sha256.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3"
        | "2.16.840.1.101.3.4.3.2" => &digest::SHA256,
        // sha384WithRSA, ecdsa-with-SHA384.
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        // sha512WithRSA, ecdsa-with-SHA512.
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(algorithm, der).as_ref().to_vec())
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
    fn server_end_point_hashes_with_the_signature_hash() {
        for (alg, hash) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, &digest::SHA256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, &digest::SHA384),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let der = cert.der().as_ref();
            assert_eq!(
                server_end_point(der).unwrap(),
                digest::digest(hash, der).as_ref()
            );
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(server_end_point(cert.der().as_ref()), None);
        assert_eq!(server_end_point(b"not a certificate"), None);
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
