//! rustls client configuration for `wss://` targets.
//!
//! A load test usually points at a gateway with a self-signed or private-CA
//! certificate, so the choices are: trust a CA file (`--ca`), or skip
//! certificate verification (`--insecure`; signatures are still checked, so
//! the handshake costs what a real client's would). `--resumption off` builds
//! a config with session resumption disabled, so every connection pays for a
//! full handshake. `--resumption on` keeps every TLS 1.3 ticket a server
//! hands out (up to [`TICKETS_PER_SERVER`]), not rustls' default of 8: with
//! dozens of connections finishing and starting at once, 8 tickets run out
//! and most connections would fall back to a full handshake.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme};

/// How `wss://` connections are set up.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Accept any server certificate.
    pub insecure: bool,
    /// PEM file of CA certificates to trust.
    pub ca: Option<PathBuf>,
    /// Reuse sessions through rustls' in-memory client session cache.
    pub resumption: bool,
}

/// Builds the one client config every connection of a run shares (sharing
/// it is what lets its session cache resume sessions).
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else if let Some(ca) = &opts.ca {
        builder
            .with_root_certificates(load_roots(ca)?)
            .with_no_client_auth()
    } else {
        bail!("a wss:// target needs --ca FILE (PEM) or --insecure");
    };
    config.resumption = if opts.resumption {
        Resumption::store(Arc::new(TicketPool::default()))
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// Tickets kept per server name; a storm runs at most a few thousand
/// connections at once.
pub const TICKETS_PER_SERVER: usize = 4096;

/// Session store of a load-test client: like rustls' memory cache, but with
/// room for as many TLS 1.3 tickets as a storm's concurrency can consume.
#[derive(Debug, Default)]
struct TicketPool {
    servers: Mutex<HashMap<ServerName<'static>, Remembered>>,
}

#[derive(Debug, Default)]
struct Remembered {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl TicketPool {
    fn with<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut Remembered) -> T) -> T {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let entry = servers.entry(name.to_owned()).or_default();
        f(entry)
    }
}

impl ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.with(&name, |r| r.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(name, |r| r.kx_hint)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(&name, |r| r.tls12 = Some(value));
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(name, |r| r.tls12.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.with(name, |r| r.tls12 = None);
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.with(&name, |r| {
            if r.tls13.len() == TICKETS_PER_SERVER {
                r.tls13.pop_front();
            }
            r.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(name, |r| r.tls13.pop_back())
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("opening CA file {}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        let cert = cert.with_context(|| format!("reading PEM from {}", path.display()))?;
        roots.add(cert).context("adding CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificates found in {}", path.display());
    }
    Ok(roots)
}

/// Accepts any certificate but still verifies handshake signatures, so the
/// cryptographic work per handshake matches a verifying client's.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
