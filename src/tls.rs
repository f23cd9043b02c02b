//! TLS material: the rustls server config of a TLS listener (certificates
//! chosen by SNI, TLS 1.2 and 1.3, ALPN `http/1.1`) and the client config
//! used towards `wss://` upstreams.
//!
//! Loading happens during config validation so a missing file, a key that
//! does not match its certificate or an empty chain is reported with its key
//! path before anything is bound.

use crate::config::validate_problems::Problems;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::raw::RawCertificate;

/// The process-wide crypto provider: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Certificates by SNI name, with a default for clients that send none.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `.example.com` → key, from `*.example.com` names.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.to_ascii_lowercase()) else {
            return Arc::clone(&self.default);
        };
        if let Some(k) = self.exact.get(&name) {
            return Arc::clone(k);
        }
        // A wildcard covers exactly one label, as in certificate matching.
        if let Some((_, parent)) = name.split_once('.') {
            let parent = format!(".{parent}");
            if let Some((_, k)) = self.wildcard.iter().find(|(s, _)| *s == parent) {
                return Arc::clone(k);
            }
        }
        Arc::clone(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Build a listener's server config; problems go under `key`.
pub(crate) fn server_config(
    p: &mut Problems,
    key: &str,
    certs: &[RawCertificate],
) -> Option<Arc<rustls::ServerConfig>> {
    if certs.is_empty() {
        p.push(
            format!("{key}.certificates"),
            "a TLS listener needs at least one certificate",
        );
        return None;
    }
    let provider = provider();
    let mut loaded = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let ckey = format!("{key}.certificates[{i}]");
        if let Some(ck) = certified_key(p, &ckey, c, &provider) {
            loaded.push((c, Arc::new(ck)));
        }
    }
    if loaded.len() != certs.len() {
        return None;
    }
    let mut exact = HashMap::new();
    let mut wildcard = Vec::new();
    for (c, ck) in &loaded {
        for name in &c.server_names {
            let name = name.trim().to_ascii_lowercase();
            if let Some(suffix) = name.strip_prefix("*.") {
                wildcard.push((format!(".{suffix}"), Arc::clone(ck)));
            } else {
                exact.insert(name, Arc::clone(ck));
            }
        }
    }
    let resolver = SniResolver {
        exact,
        wildcard,
        default: Arc::clone(&loaded[0].1),
    };
    let mut config = match rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    {
        Ok(b) => b
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver)),
        Err(e) => {
            p.push(key, format!("TLS setup failed: {e}"));
            return None;
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless tickets let returning clients resume without a full handshake.
    match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(t) => config.ticketer = t,
        Err(e) => p.push(key, format!("TLS ticketer failed: {e}")),
    }
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Some(Arc::new(config))
}

fn certified_key(
    p: &mut Problems,
    key: &str,
    c: &RawCertificate,
    provider: &CryptoProvider,
) -> Option<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(&c.cert) {
        Ok(iter) => match iter.collect::<Result<Vec<_>, _>>() {
            Ok(chain) => chain,
            Err(e) => {
                p.push(format!("{key}.cert"), format!("{}: {e}", c.cert));
                return None;
            }
        },
        Err(e) => {
            p.push(format!("{key}.cert"), format!("{}: {e}", c.cert));
            return None;
        }
    };
    if chain.is_empty() {
        p.push(
            format!("{key}.cert"),
            format!("{}: no certificate in file", c.cert),
        );
        return None;
    }
    let private = match PrivateKeyDer::from_pem_file(&c.key) {
        Ok(k) => k,
        Err(e) => {
            p.push(format!("{key}.key"), format!("{}: {e}", c.key));
            return None;
        }
    };
    match CertifiedKey::from_der(chain, private, provider) {
        Ok(ck) => Some(ck),
        Err(e) => {
            p.push(
                format!("{key}.key"),
                format!("{} does not fit {}: {e}", c.key, c.cert),
            );
            None
        }
    }
}

/// The client config towards `wss://` upstreams: a CA file if given, else
/// the system roots (falling back to the Mozilla set if none are found).
pub(crate) fn client_config(
    p: &mut Problems,
    key: &str,
    ca_file: &str,
) -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
    } else {
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| e.to_string())
            .and_then(|it| it.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string()));
        match certs {
            Ok(certs) if !certs.is_empty() => {
                for cert in certs {
                    if let Err(e) = roots.add(cert) {
                        p.push(key, format!("{ca_file}: {e}"));
                    }
                }
            }
            Ok(_) => p.push(key, format!("{ca_file}: no certificate in file")),
            Err(e) => p.push(key, format!("{ca_file}: {e}")),
        }
    }
    let builder = match rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    {
        Ok(b) => b,
        Err(e) => {
            p.push(key, format!("TLS setup failed: {e}"));
            return None;
        }
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}
