//! The upstream leg of the handshake: pick an endpoint (`balance`: the
//! upstream's policy among healthy endpoints, retry on the next candidate
//! when a connect fails), connect (TCP, TLS for `wss://`),
//! send the client's upgrade request with forwarding headers, and read the
//! upstream's answer. Only a 101 that matches the request lets the client
//! have its own 101; any other status is relayed to the client.

pub mod balance;
mod client;
pub(crate) mod health;
mod request;
pub(crate) mod resolve;
mod response;

pub use balance::{Active, Affinity, Outcome};
pub use client::ClientInfo;

/// The path rewrite, for the fuzz target `path` (docs/fuzzing.md).
#[doc(hidden)]
pub use request::strip_route_prefix;
pub use request::{each_forwarded_header, query_without_credential, rewritten_path};
pub use request::{is_handshake_or_hop_header, switching_protocols, UpstreamRequest};
pub(crate) use response::handshake;
/// The response-head checks without a socket, for the fuzz target
/// `upstream_response` (docs/fuzzing.md).
#[doc(hidden)]
pub use response::{parse_head, refusal_fields, switch, Head, Switch};

use crate::config::balance::Policy;
use crate::config::{EndpointConfig, UpstreamConfig};
use crate::handshake::Rejection;
use crate::io::Io;
use crate::metrics::Metrics;
use prometheus::{Histogram, IntCounter};
use rustls_pki_types::ServerName;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest upstream response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Largest body of a refusal relayed to the client.
pub const MAX_RELAYED_BODY: usize = 64 * 1024;

/// Why no upstream session could be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Every endpoint failed its TCP (+TLS) connect; the upstream's name.
    #[error("no endpoint of upstream {0} could be reached")]
    Unreachable(String),
    /// The gateway's descriptor table is full: no socket could be made
    /// for any endpoint. Not the upstream's failure, so no endpoint's
    /// health is charged with it.
    #[error("no descriptor left for an upstream connection (EMFILE/ENFILE)")]
    NoDescriptor,
    #[error("upstream did not answer the upgrade in time")]
    Timeout,
    #[error("upstream sent an invalid handshake response: {0}")]
    /// The answer was not a valid handshake response: what was wrong.
    BadResponse(&'static str),
    #[error("upstream sent a header that is not valid HTTP: {0}")]
    InvalidHeader(&'static str),
    /// `url` is what was requested (path without the query), so that a
    /// 404 from a doubled base path (`/ws/ws`) shows in the log line.
    #[error("upstream refused the upgrade of {url} with status {status}")]
    Refused {
        status: u16,
        url: String,
        rejection: Rejection,
    },
}

impl UpstreamError {
    /// What the client is told.
    pub fn rejection(self) -> Rejection {
        match self {
            UpstreamError::Unreachable(_) => Rejection::UpstreamUnreachable,
            UpstreamError::NoDescriptor => Rejection::FdLimit,
            UpstreamError::Timeout => Rejection::UpstreamTimeout,
            UpstreamError::BadResponse(_) => Rejection::UpstreamBadResponse,
            UpstreamError::InvalidHeader(_) => Rejection::UpstreamInvalidHeader,
            UpstreamError::Refused { rejection, .. } => rejection,
        }
    }
}

/// An accepted upstream WebSocket connection.
pub struct Connected {
    /// The upstream socket, past its 101.
    pub io: Io,
    /// Bytes the upstream sent right behind its 101.
    pub leftover: Vec<u8>,
    /// The sub-protocol the upstream chose.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters the upstream accepted.
    pub deflate: Option<crate::deflate::Params>,
    /// End-to-end headers of the upstream's 101, for the client.
    pub headers: Vec<(String, String)>,
    /// Index in the upstream's `endpoints` of the one that answered.
    pub endpoint: usize,
    /// Held for the session's life under `least_connections`.
    pub active: Option<Active>,
}

struct EndpointMetrics {
    refused: IntCounter,
    timeout: IntCounter,
    tls: IntCounter,
    handshake: IntCounter,
}

/// A configured upstream with its balancing state, endpoint health and
/// metric handles.
pub struct Upstream {
    pub config: Arc<UpstreamConfig>,
    /// Round-robin cursor (also breaks ties of the other policies).
    next: AtomicUsize,
    connect_duration: Histogram,
    endpoints: Vec<EndpointMetrics>,
    /// Health and load of each configured endpoint.
    pub(crate) state: Vec<health::EndpointState>,
    /// Resolved addresses of each configured endpoint.
    pub(crate) addresses: Vec<resolve::Addresses>,
    /// Hash seeds and cookie values of the endpoints.
    ids: balance::Identities,
}

impl Upstream {
    /// Build an upstream and start its health checker and DNS
    /// re-resolution (when configured; they end when it is dropped).
    /// `previous`: the upstream of the same name before a reload, whose
    /// health verdicts carry over to the endpoints it shares (same URL).
    /// Must run inside a tokio runtime when either is configured.
    pub fn start(
        config: Arc<UpstreamConfig>,
        metrics: &Metrics,
        previous: Option<&Upstream>,
    ) -> Arc<Upstream> {
        let up = Arc::new(Upstream::new(config, metrics));
        if let Some(old) = previous {
            for (i, ep) in up.config.endpoints.iter().enumerate() {
                let same = old.config.endpoints.iter().position(|o| o.url == ep.url);
                if let Some(j) = same {
                    up.state[i].carry(&old.state[j]);
                }
            }
        }
        let b = &up.config.balance;
        if let Some(check) = &b.health {
            tokio::spawn(health::run_checks(Arc::downgrade(&up), check.clone()));
        }
        if let (true, Some(interval)) = (resolve::wanted(&up), b.resolve_interval) {
            let servers = b.nameservers.clone();
            tokio::spawn(resolve::run(Arc::downgrade(&up), interval, servers));
        }
        up
    }

    pub fn new(config: Arc<UpstreamConfig>, metrics: &Metrics) -> Upstream {
        let f = |ep: &EndpointConfig, reason: &str| {
            metrics
                .upstream_connect_failures
                .with_label_values(&[&config.name, &ep.url, reason])
        };
        let endpoints = config
            .endpoints
            .iter()
            .map(|ep| EndpointMetrics {
                refused: f(ep, "connect"),
                timeout: f(ep, "timeout"),
                tls: f(ep, "tls"),
                handshake: f(ep, "handshake"),
            })
            .collect();
        let state = config
            .endpoints
            .iter()
            .map(|ep| health::EndpointState::new(metrics.endpoint_health(&config.name, &ep.url)))
            .collect();
        Upstream {
            connect_duration: metrics
                .upstream_connect_duration
                .with_label_values(&[&config.name]),
            ids: balance::Identities::new(&config),
            addresses: config
                .endpoints
                .iter()
                .map(|_| Default::default())
                .collect(),
            config,
            next: AtomicUsize::new(0),
            endpoints,
            state,
        }
    }

    /// Some endpoint passed its last active check (readiness); `None`
    /// without active checks.
    pub fn any_checked_up(&self) -> Option<bool> {
        self.config.balance.health.as_ref()?;
        Some(self.state.iter().any(|s| s.checked_up()))
    }

    /// Connect to an endpoint and complete the upstream handshake.
    /// `request` is built per endpoint by `build`; `path` is what it asks
    /// for behind the endpoint's base path (named in a refusal's log line).
    pub async fn connect(
        self: &Arc<Self>,
        affinity: &Affinity<'_>,
        (key, offered): (&str, (&[String], &[crate::deflate::Params])),
        path: &str,
        build: impl Fn(&EndpointConfig) -> Vec<u8>,
    ) -> Result<Connected, UpstreamError> {
        for i in self.candidates(affinity) {
            let ep = &self.config.endpoints[i];
            let began = Instant::now();
            let io = match self.open(i, ep).await {
                Ok(io) => io,
                Err(ConnectError::NoDescriptor) => return Err(UpstreamError::NoDescriptor),
                Err(_) => {
                    self.report(i, Outcome::ConnectFailed);
                    continue;
                }
            };
            let result = timeout(
                self.config.handshake_timeout,
                handshake(io, (ep, path), &build(ep), key, offered),
            )
            .await;
            self.connect_duration.observe(began.elapsed().as_secs_f64());
            return match result {
                Ok(Ok(mut c)) => {
                    self.report(i, Outcome::Ok);
                    if let Some(cookie) = self.affinity_cookie(affinity, i) {
                        c.headers.push(("Set-Cookie".into(), cookie));
                    }
                    let least = self.config.balance.policy == Policy::LeastConnections;
                    let active = least.then(|| self.track(i));
                    Ok(Connected {
                        endpoint: i,
                        active,
                        ..c
                    })
                }
                Ok(Err(e)) => {
                    let refused = match &e {
                        UpstreamError::Refused { status, .. } => Some(*status),
                        _ => None,
                    };
                    if refused.is_none() {
                        self.endpoints[i].handshake.inc();
                    }
                    let failed = refused.is_none_or(|s| s >= 500);
                    let outcome = if failed {
                        Outcome::ServerError
                    } else {
                        Outcome::Ok
                    };
                    self.report(i, outcome);
                    Err(e)
                }
                Err(_) => {
                    self.endpoints[i].timeout.inc();
                    self.report(i, Outcome::ServerError);
                    Err(UpstreamError::Timeout)
                }
            };
        }
        Err(UpstreamError::Unreachable(self.config.name.clone()))
    }

    /// TCP connect (+ TLS), bounded by the connect timeout; a failure is
    /// counted under its reason and returned. A full descriptor table is
    /// the gateway's state, not the endpoint's: returned uncounted.
    pub(crate) async fn open(&self, i: usize, ep: &EndpointConfig) -> Result<Io, ConnectError> {
        let opened = self.try_open(i, ep).await;
        if let Err(e) = &opened {
            tracing::debug!(endpoint = %ep.url, error = %e, "upstream connect failed");
            let m = &self.endpoints[i];
            match e {
                ConnectError::NoDescriptor => {}
                ConnectError::Refused(_) => m.refused.inc(),
                ConnectError::Timeout => m.timeout.inc(),
                ConnectError::NoTls | ConnectError::ServerName | ConnectError::Tls(_) => {
                    m.tls.inc()
                }
            }
        }
        opened
    }

    async fn try_open(&self, i: usize, ep: &EndpointConfig) -> Result<Io, ConnectError> {
        let connect = async {
            match self.addresses[i].for_connect() {
                // Resolved by `resolve`: each address in turn, starting
                // one further along each time so connections spread.
                Some(addrs) => TcpStream::connect(&addrs[..]).await,
                None => TcpStream::connect((ep.host.as_str(), ep.port)).await,
            }
        };
        let tcp = timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|e| {
                if crate::fds::table_full(&e) {
                    ConnectError::NoDescriptor
                } else {
                    ConnectError::Refused(e)
                }
            })?;
        let _ = tcp.set_nodelay(true);
        if !ep.secure {
            return Ok(Io::Tcp(tcp));
        }
        let tls = self.config.tls.as_ref().ok_or(ConnectError::NoTls)?;
        let name = ServerName::try_from(ep.host.clone()).map_err(|_| ConnectError::ServerName)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
        // Boxed: a TLS handshake is large, and this future is part of every
        // connection's handshake task, wss:// upstream or not.
        let connect = Box::pin(connector.connect(name, tcp));
        let tls = timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Tls)?;
        Ok(Io::TlsClient(Box::new(tls)))
    }
}

/// Why no connection to an endpoint could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TCP connect failed: {0}")]
    Refused(#[source] std::io::Error),
    /// No socket could be made: the gateway's descriptor table (or the
    /// system's) is full (EMFILE/ENFILE). The gateway's state, not the
    /// endpoint's.
    #[error("no descriptor left for the socket")]
    NoDescriptor,
    #[error("connect timed out")]
    Timeout,
    #[error("wss:// endpoint without a TLS client configuration")]
    NoTls,
    #[error("endpoint host is not a valid TLS server name")]
    ServerName,
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
}
