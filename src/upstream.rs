//! The upstream leg of the handshake: pick an endpoint (round robin, retry
//! on another one when a connect fails), connect (TCP, TLS for `wss://`),
//! send the client's upgrade request with forwarding headers, and read the
//! upstream's answer. Only a 101 that matches the request lets the client
//! have its own 101; any other status is relayed to the client.

mod balance;
mod request;
mod response;

pub use balance::{Affinity, Outcome};

/// The path rewrite, for the fuzz target `path` (docs/fuzzing.md).
#[doc(hidden)]
pub use request::strip_route_prefix;
pub use request::{is_handshake_or_hop_header, switching_protocols, ClientInfo, UpstreamRequest};
pub(crate) use response::handshake;
/// The response-head checks without a socket, for the fuzz target
/// `upstream_response` (docs/fuzzing.md).
#[doc(hidden)]
pub use response::{parse_head, refusal_fields, switch, Head, Switch};

use crate::config::{EndpointConfig, UpstreamConfig};
use crate::handshake::Rejection;
use crate::io::Io;
use crate::metrics::Metrics;
use prometheus::{Histogram, IntCounter};
use rustls_pki_types::ServerName;
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

struct EndpointMetrics {
    refused: IntCounter,
    timeout: IntCounter,
    tls: IntCounter,
    handshake: IntCounter,
}

/// A configured upstream with its round-robin cursor and metric handles.
pub struct Upstream {
    pub config: Arc<UpstreamConfig>,
    next: AtomicUsize,
    connect_duration: Histogram,
    endpoints: Vec<EndpointMetrics>,
}

impl Upstream {
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
        Upstream {
            connect_duration: metrics
                .upstream_connect_duration
                .with_label_values(&[&config.name]),
            config,
            next: AtomicUsize::new(0),
            endpoints,
        }
    }

    /// Connect to an endpoint and complete the upstream handshake.
    /// `request` is built per endpoint by `build`; `path` is what it asks
    /// for behind the endpoint's base path (named in a refusal's log line).
    pub async fn connect(
        &self,
        key: &str,
        offered: (&[String], &[crate::deflate::Params]),
        path: &str,
        build: impl Fn(&EndpointConfig) -> Vec<u8>,
    ) -> Result<Connected, UpstreamError> {
        let n = self.config.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..n {
            let i = (start + attempt) % n;
            let ep = &self.config.endpoints[i];
            let began = Instant::now();
            let Ok(io) = self.open(i, ep).await else {
                continue;
            };
            let result = timeout(
                self.config.handshake_timeout,
                handshake(io, (ep, path), &build(ep), key, offered),
            )
            .await;
            self.connect_duration.observe(began.elapsed().as_secs_f64());
            return match result {
                Ok(Ok(c)) => Ok(Connected { endpoint: i, ..c }),
                Ok(Err(e)) => {
                    if !matches!(e, UpstreamError::Refused { .. }) {
                        self.endpoints[i].handshake.inc();
                    }
                    Err(e)
                }
                Err(_) => {
                    self.endpoints[i].timeout.inc();
                    Err(UpstreamError::Timeout)
                }
            };
        }
        Err(UpstreamError::Unreachable(self.config.name.clone()))
    }

    /// TCP connect (+ TLS), bounded by the connect timeout; a failure is
    /// counted under its reason and returned.
    pub(crate) async fn open(&self, i: usize, ep: &EndpointConfig) -> Result<Io, ConnectError> {
        let opened = self.try_open(ep).await;
        if let Err(e) = &opened {
            tracing::debug!(endpoint = %ep.url, error = %e, "upstream connect failed");
            let m = &self.endpoints[i];
            match e {
                ConnectError::Refused(_) => m.refused.inc(),
                ConnectError::Timeout => m.timeout.inc(),
                ConnectError::NoTls | ConnectError::ServerName | ConnectError::Tls(_) => {
                    m.tls.inc()
                }
            }
        }
        opened
    }

    async fn try_open(&self, ep: &EndpointConfig) -> Result<Io, ConnectError> {
        let connect = TcpStream::connect((ep.host.as_str(), ep.port));
        let tcp = timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Refused)?;
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
    #[error("connect timed out")]
    Timeout,
    #[error("wss:// endpoint without a TLS client configuration")]
    NoTls,
    #[error("endpoint host is not a valid TLS server name")]
    ServerName,
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
}
