//! The upstream leg of the handshake: pick an endpoint (round robin, retry
//! on another one when a connect fails), connect (TCP, TLS for `wss://`),
//! send the client's upgrade request with forwarding headers, and read the
//! upstream's answer. Only a 101 that matches the request lets the client
//! have its own 101; any other status is relayed to the client.

mod request;

pub use request::{build_request, switching_protocols, ClientInfo};

use crate::config::{EndpointConfig, UpstreamConfig};
use crate::handshake::{accept_key, Rejection};
use crate::io::Io;
use crate::metrics::Metrics;
use prometheus::{Histogram, IntCounter};
use rustls_pki_types::ServerName;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Largest body of a refusal relayed to the client.
const MAX_RELAYED_BODY: usize = 64 * 1024;

/// Why no upstream session could be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no endpoint of upstream {0} could be reached")]
    Unreachable(String),
    #[error("upstream did not answer the upgrade in time")]
    Timeout,
    #[error("upstream sent an invalid handshake response: {0}")]
    BadResponse(&'static str),
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
            UpstreamError::Refused { rejection, .. } => rejection,
        }
    }
}

/// An accepted upstream WebSocket connection.
pub struct Connected {
    pub io: Io,
    /// Bytes the upstream sent right behind its 101.
    pub leftover: Vec<u8>,
    /// The sub-protocol the upstream chose.
    pub protocol: Option<String>,
    /// End-to-end headers of the upstream's 101, for the client.
    pub headers: Vec<(String, String)>,
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
    /// `request` is built per endpoint by `build`.
    pub async fn connect(
        &self,
        key: &str,
        offered: &[String],
        build: impl Fn(&EndpointConfig) -> Vec<u8>,
    ) -> Result<Connected, UpstreamError> {
        let n = self.config.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..n {
            let i = (start + attempt) % n;
            let ep = &self.config.endpoints[i];
            let began = Instant::now();
            let Some(io) = self.open(i, ep).await else {
                continue;
            };
            let result = timeout(
                self.config.handshake_timeout,
                handshake(io, ep, &build(ep), key, offered),
            )
            .await;
            self.connect_duration.observe(began.elapsed().as_secs_f64());
            return match result {
                Ok(Ok(c)) => Ok(c),
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

    /// TCP connect (+ TLS), bounded by the connect timeout.
    pub(crate) async fn open(&self, i: usize, ep: &EndpointConfig) -> Option<Io> {
        let m = &self.endpoints[i];
        let tcp = match timeout(
            self.config.connect_timeout,
            TcpStream::connect((ep.host.as_str(), ep.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %ep.url, error = %e, "upstream connect failed");
                m.refused.inc();
                return None;
            }
            Err(_) => {
                m.timeout.inc();
                return None;
            }
        };
        let _ = tcp.set_nodelay(true);
        if !ep.secure {
            return Some(Io::Tcp(tcp));
        }
        let tls = self.config.tls.as_ref()?;
        let Ok(name) = ServerName::try_from(ep.host.clone()) else {
            m.tls.inc();
            return None;
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
        // Boxed: a TLS handshake is large, and this future is part of every
        // connection's handshake task, wss:// upstream or not.
        let connect = Box::pin(connector.connect(name, tcp));
        match timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(s)) => Some(Io::TlsClient(Box::new(s))),
            Ok(Err(e)) => {
                tracing::debug!(endpoint = %ep.url, error = %e, "upstream TLS handshake failed");
                m.tls.inc();
                None
            }
            Err(_) => {
                m.timeout.inc();
                None
            }
        }
    }
}

/// Send the request, read and check the response.
pub(crate) async fn handshake(
    mut io: Io,
    ep: &EndpointConfig,
    request: &[u8],
    key: &str,
    offered: &[String],
) -> Result<Connected, UpstreamError> {
    io.write_all(request)
        .await
        .map_err(|_| UpstreamError::BadResponse("connection lost while sending the request"))?;
    io.flush()
        .await
        .map_err(|_| UpstreamError::BadResponse("connection lost while sending the request"))?;
    // Read straight into the buffer (no array in the future: it lives in
    // every connection's handshake task).
    let mut buf = Vec::with_capacity(4096);
    let (status, headers, head_len) = loop {
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|_| UpstreamError::BadResponse("connection lost before a response"))?;
        if n == 0 {
            return Err(UpstreamError::BadResponse(
                "connection closed before a response",
            ));
        }
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (resp.code.unwrap_or(0), headers, len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
            _ => return Err(UpstreamError::BadResponse("unparseable response head")),
        }
    };
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if status != 101 {
        let url = ep.url_of(request_path(request));
        return Err(refusal(io, status, url, &headers, buf.split_off(head_len)).await);
    }
    let token = |name: &str, want: &str| {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(want))
    };
    if !token("upgrade", "websocket") || !token("connection", "upgrade") {
        return Err(UpstreamError::BadResponse("101 without Upgrade: websocket"));
    }
    if get("sec-websocket-accept") != Some(accept_key(key).as_str()) {
        return Err(UpstreamError::BadResponse("wrong Sec-WebSocket-Accept"));
    }
    if get("sec-websocket-extensions").is_some_and(|v| !v.is_empty()) {
        return Err(UpstreamError::BadResponse(
            "extension negotiated that was not offered",
        ));
    }
    let protocol = get("sec-websocket-protocol")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    if let Some(p) = &protocol {
        if !offered.iter().any(|o| o == p) {
            return Err(UpstreamError::BadResponse(
                "sub-protocol chosen that was not offered",
            ));
        }
    }
    let headers = headers
        .into_iter()
        .filter(|(n, _)| !request::is_handshake_or_hop_header(n))
        .collect();
    Ok(Connected {
        io,
        leftover: buf.split_off(head_len),
        protocol,
        headers,
    })
}

/// The path of the request line `GET <path>[?query] HTTP/1.1` this module
/// was given to send. Read back from the bytes because the callers build
/// the request; the query is left out, as it may carry a token.
fn request_path(request: &[u8]) -> &str {
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    std::str::from_utf8(path).unwrap_or("?")
}

/// The upstream answered with a status: relay it, with a short body.
async fn refusal(
    mut io: Io,
    status: u16,
    url: String,
    headers: &[(String, String)],
    mut body: Vec<u8>,
) -> UpstreamError {
    if !(200..=599).contains(&status) {
        return UpstreamError::BadResponse("invalid status");
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let want = get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_RELAYED_BODY);
    body.reserve(want.saturating_sub(body.len()));
    while body.len() < want {
        match io.read_buf(&mut body).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    body.truncate(want);
    UpstreamError::Refused {
        status,
        url,
        rejection: Rejection::UpstreamStatus {
            status,
            content_type: get("content-type"),
            body,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::request_path;

    #[test]
    fn request_path_leaves_out_the_query() {
        let r = b"GET /ws/ws?token=secret HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(request_path(r), "/ws/ws");
        assert_eq!(request_path(b"GET / HTTP/1.1\r\n\r\n"), "/");
        assert_eq!(request_path(b""), "");
    }
}
