//! Plain HTTP/1.1 proxying on the gateway's routes, beside WebSocket: the
//! dispatch target for a request that is not an upgrade.
//!
//! The gateway reads every request head itself (the strict reader of
//! `handshake`, for the first request of a connection and every later
//! one), so each request passes the same front door and the same
//! smuggling checks. It is the upstream's HTTP/1.1 client itself too, with
//! no hyper client in between: [`request`] rebuilds the head sent
//! upstream, [`upstream_conn`] holds a connection as the bare socket
//! (pooled by [`pool`], bounded, with an idle timeout) and writes the head
//! with the first body bytes in one write, [`response_reader`] parses the
//! response head strictly and takes the body out in its framing. Bodies
//! stream both ways, never buffered: [`body`] pumps the client's body
//! (fixed length or strictly decoded chunks, [`chunked`]) to the upstream,
//! [`response`] writes the upstream's body to the client as each piece
//! arrives. Every read of a waiting leg goes through the worker's scratch
//! buffer, so an idle event stream or long-poll holds no read buffer and
//! no task of its own (docs/performance.md, "HTTP proxying").
//! [`exchange`] runs one request; the keep-alive loop lives in
//! `server::connection::http`.

pub mod body;
pub mod chunked;
pub mod exchange;
pub mod pool;
pub mod request;
pub mod response;
pub mod response_reader;
pub mod timer;
pub mod upstream_conn;

use crate::config::HttpRouteConfig;
use crate::handshake::Rejection;
use crate::metrics::HttpMetrics;
use std::sync::Arc;
use std::time::Duration;

/// Why a request was not (fully) proxied. Each knows what the client is
/// told ([`HttpError::rejection`], with its metric label).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("transfer coding other than chunked, or on HTTP/1.0")]
    Framing,
    #[error("bad chunked body: {0}")]
    Chunked(#[from] chunked::ChunkError),
    #[error("request body over the limit")]
    BodyTooLarge,
    #[error("an expectation other than 100-continue")]
    Expectation,
    #[error("request head that cannot be sent upstream")]
    Malformed,
    #[error("client sent no body bytes within the idle timeout")]
    ClientTimeout,
    #[error("client went away")]
    ClientGone,
    #[error("no endpoint could be reached")]
    UpstreamUnreachable,
    #[error("no descriptor left for an upstream connection (EMFILE/ENFILE)")]
    NoDescriptor,
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream sent no usable response")]
    UpstreamBadResponse,
    /// The upstream stopped taking the body (it answered early or failed).
    #[error("upstream stopped reading the request body")]
    UpstreamGone,
    /// The pooled connection was closed by the upstream before the request
    /// went out: worth one retry on a new connection.
    #[error("pooled upstream connection was closed")]
    Stale,
}

impl HttpError {
    /// A request that failed this way on a reused connection never
    /// reached the application and may be sent again.
    pub fn retryable(&self) -> bool {
        matches!(self, HttpError::Stale)
    }

    /// What the client is told, through the connection's refusal path.
    pub fn rejection(&self) -> Rejection {
        match self {
            HttpError::Framing | HttpError::Chunked(_) => Rejection::Framing,
            HttpError::BodyTooLarge => Rejection::BodyTooLarge,
            HttpError::Expectation => Rejection::Expectation,
            HttpError::Malformed => Rejection::Malformed,
            HttpError::ClientTimeout => Rejection::HandshakeTimeout,
            HttpError::ClientGone | HttpError::UpstreamGone | HttpError::UpstreamBadResponse => {
                Rejection::UpstreamBadResponse
            }
            HttpError::Stale => Rejection::UpstreamBadResponse,
            HttpError::UpstreamUnreachable => Rejection::UpstreamUnreachable,
            HttpError::NoDescriptor => Rejection::FdLimit,
            HttpError::UpstreamTimeout => Rejection::UpstreamTimeout,
        }
    }
}

/// What a route's HTTP requests need at run time, resolved once.
pub struct HttpRoute {
    pub settings: Settings,
    /// The keep-alive pool of the route's upstream (shared by the routes
    /// of one upstream).
    pub pool: Arc<pool::Pool>,
    pub metrics: HttpMetrics,
}

/// The route's HTTP limits and timers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// From the request sent to the response head.
    pub request_timeout: Duration,
    /// Longest silence between body chunks, either way; `None`: no limit.
    pub idle_timeout: Option<Duration>,
    pub max_body_bytes: u64,
    /// Bytes of a pipelined next request kept while one is answered
    /// (`limits.max_header_bytes`).
    pub max_head_bytes: usize,
}

impl Settings {
    pub fn new(route: &HttpRouteConfig, max_head_bytes: usize) -> Settings {
        Settings {
            request_timeout: route.request_timeout,
            idle_timeout: route.idle_timeout,
            max_body_bytes: route.max_body_bytes,
            max_head_bytes,
        }
    }
}
