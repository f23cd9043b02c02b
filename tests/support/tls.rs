//! Certificates made with rcgen (a throwaway CA and leaves signed by it,
//! written as PEM files for the gateway's config) and a rustls client that
//! trusts that CA, optionally limited to some protocol versions.

use super::within;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

/// A test certificate authority.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

pub fn test_ca() -> TestCa {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tidegate test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    TestCa { cert, key }
}

/// A leaf certificate signed by a test CA.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// DER of the leaf, to compare with what a client saw.
    pub der: Vec<u8>,
}

pub fn leaf(ca: &TestCa, names: &[&str]) -> Leaf {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("leaf certificate");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// Write a leaf's PEM files into `dir`; returns (cert, key) paths.
pub fn write_leaf(dir: &Path, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, &leaf.cert_pem).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    (cert, key)
}

/// A rustls client trusting `ca`, limited to `versions`.
pub fn client_tls(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("CA into roots");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// TCP connect and TLS handshake with SNI `name`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> TlsStream {
    within("TLS handshake", async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let server_name =
            rustls_pki_types::ServerName::try_from(name.to_string()).expect("valid server name");
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .expect("TLS handshake succeeds")
    })
    .await
}
