//! Refusals: each [`Rejection`] knows its HTTP status, its extra headers and
//! the bounded label it is counted under in
//! `tidegate_handshake_rejections_total{reason}`.

use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// TLS and the request head did not complete within
    /// `limits.handshake_timeout`. Not answered: a client that trickles its
    /// head is not waited on a second time to read a response.
    HandshakeTimeout,
    /// Request head over `limits.max_header_bytes` or too many lines.
    HeaderTooLarge,
    /// Not parseable as HTTP/1.x.
    Malformed,
    HttpVersion,
    MissingHost,
    /// More than one Host, or one that is not `host[:port]`.
    BadHost,
    /// Duplicate or non-numeric `Content-Length`, or `Content-Length`
    /// with `Transfer-Encoding` (request smuggling).
    Framing,
    /// A path with no normal form (bad escape, encoded NUL, `%2F` under
    /// the `reject` policy, control bytes).
    BadPath,
    NoRoute,
    Method,
    /// A plain HTTP request on a WebSocket route.
    NotWebSocket,
    ConnectionHeader,
    Body,
    Version,
    MissingVersion,
    Key,
    OriginMissing,
    OriginDenied,
    /// A `Sec-WebSocket-Protocol` entry that is not a token.
    Protocol,
    /// The gateway is draining.
    Draining,
    /// Plain HTTP: a request body over the route's `max_body_bytes` (413).
    BodyTooLarge,
    /// Plain HTTP: an `Expect` other than `100-continue` (417).
    Expectation,
    /// Edge auth: no credential in any configured source (401,
    /// `WWW-Authenticate: Bearer error="invalid_request"`).
    AuthMissing,
    /// Edge auth: bad, expired or unknown credential (401,
    /// `error="invalid_token"`).
    AuthInvalid,
    /// Edge auth: a claim condition failed (403, `error="insufficient_scope"`).
    AuthForbidden,
    /// Forward auth answered 401 or 403; relayed.
    AuthDenied {
        status: u16,
    },
    /// Forward auth failed and the policy fails closed (503).
    AuthUnavailable,
    UpstreamUnreachable,
    /// Mux route: no mux connection to the application is up (503).
    MuxUnavailable,
    /// The gateway's own descriptor table is full (EMFILE/ENFILE), so no
    /// upstream connection could be opened: the gateway's state, not the
    /// upstream's (503, as for a client over the cap at accept).
    FdLimit,
    UpstreamTimeout,
    UpstreamBadResponse,
    /// The upstream or mux application sent a header name or value (or a
    /// sub-protocol, or a refusal's content type) that is not valid HTTP:
    /// it is not let into the client's response (502).
    UpstreamInvalidHeader,
    /// The upstream refused the upgrade: its status (and short body) go to
    /// the client as they are.
    UpstreamStatus {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::HandshakeTimeout => 408,
            Rejection::HeaderTooLarge => 431,
            Rejection::Malformed
            | Rejection::HttpVersion
            | Rejection::MissingHost
            | Rejection::BadHost
            | Rejection::Framing
            | Rejection::BadPath
            | Rejection::ConnectionHeader
            | Rejection::Body
            | Rejection::MissingVersion
            | Rejection::Key
            | Rejection::Protocol => 400,
            Rejection::NoRoute => 404,
            Rejection::Method => 405,
            Rejection::BodyTooLarge => 413,
            Rejection::Expectation => 417,
            Rejection::NotWebSocket | Rejection::Version => 426,
            Rejection::OriginMissing | Rejection::OriginDenied => 403,
            Rejection::Draining
            | Rejection::AuthUnavailable
            | Rejection::MuxUnavailable
            | Rejection::FdLimit => 503,
            Rejection::AuthMissing | Rejection::AuthInvalid => 401,
            Rejection::AuthForbidden => 403,
            Rejection::AuthDenied { status } => *status,
            Rejection::UpstreamUnreachable
            | Rejection::UpstreamBadResponse
            | Rejection::UpstreamInvalidHeader => 502,
            Rejection::UpstreamTimeout => 504,
            Rejection::UpstreamStatus { status, .. } => *status,
        }
    }

    /// Is a response written? Everything but a handshake timeout.
    pub fn is_answered(&self) -> bool {
        !matches!(self, Rejection::HandshakeTimeout)
    }

    /// The upstream's failure (no endpoint, no mux connection, timeout, a
    /// bad answer, a refusal with its own status) rather than the gateway's
    /// decision: `tidegate_connections_total{outcome="upstream_error"}`.
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            Rejection::UpstreamUnreachable
                | Rejection::MuxUnavailable
                | Rejection::UpstreamTimeout
                | Rejection::UpstreamBadResponse
                | Rejection::UpstreamInvalidHeader
                | Rejection::UpstreamStatus { .. }
        )
    }

    /// Metric label; a fixed set.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::HandshakeTimeout => "handshake_timeout",
            Rejection::HeaderTooLarge => "header_too_large",
            Rejection::Malformed => "malformed",
            Rejection::HttpVersion => "http_version",
            Rejection::MissingHost => "missing_host",
            Rejection::BadHost => "bad_host",
            Rejection::Framing => "framing",
            Rejection::BadPath => "bad_path",
            Rejection::NoRoute => "no_route",
            Rejection::Method => "method",
            Rejection::NotWebSocket => "not_websocket",
            Rejection::ConnectionHeader => "connection_header",
            Rejection::Body => "body",
            Rejection::Version => "version",
            Rejection::MissingVersion => "missing_version",
            Rejection::Key => "key",
            Rejection::OriginMissing => "origin_missing",
            Rejection::OriginDenied => "origin_denied",
            Rejection::Protocol => "protocol",
            Rejection::Draining => "draining",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::Expectation => "expectation",
            Rejection::MuxUnavailable => "mux_unavailable",
            Rejection::FdLimit => "fd_limit",
            Rejection::AuthMissing => "auth_missing",
            Rejection::AuthInvalid => "auth_invalid",
            Rejection::AuthForbidden => "auth_forbidden",
            Rejection::AuthDenied { .. } => "auth_denied",
            Rejection::AuthUnavailable => "auth_unavailable",
            Rejection::UpstreamUnreachable => "upstream_unreachable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::UpstreamBadResponse => "upstream_bad_response",
            Rejection::UpstreamInvalidHeader => "upstream_invalid_header",
            Rejection::UpstreamStatus { .. } => "upstream_status",
        }
    }

    /// The reason (and body) of the response.
    fn text(&self) -> &'static str {
        match self {
            Rejection::HandshakeTimeout => "Request Timeout",
            Rejection::HeaderTooLarge => "Request Header Fields Too Large",
            Rejection::NoRoute => "Not Found",
            Rejection::Method => "Method Not Allowed",
            Rejection::BodyTooLarge => "Content Too Large",
            Rejection::Expectation => "Expectation Failed",
            Rejection::NotWebSocket | Rejection::Version => "Upgrade Required",
            Rejection::OriginMissing | Rejection::OriginDenied => "Forbidden",
            Rejection::Draining
            | Rejection::AuthUnavailable
            | Rejection::MuxUnavailable
            | Rejection::FdLimit => "Service Unavailable",
            Rejection::AuthMissing | Rejection::AuthInvalid => "Unauthorized",
            Rejection::AuthForbidden => "Forbidden",
            Rejection::AuthDenied { status } => reason_phrase(*status),
            Rejection::UpstreamUnreachable
            | Rejection::UpstreamBadResponse
            | Rejection::UpstreamInvalidHeader => "Bad Gateway",
            Rejection::UpstreamTimeout => "Gateway Timeout",
            Rejection::UpstreamStatus { status, .. } => reason_phrase(*status),
            _ => "Bad Request",
        }
    }

    fn extra_headers(&self) -> &'static str {
        match self {
            Rejection::Method => "Allow: GET\r\n",
            Rejection::NotWebSocket => "Upgrade: websocket\r\nConnection: Upgrade\r\n",
            Rejection::Version => "Sec-WebSocket-Version: 13\r\n",
            Rejection::Draining
            | Rejection::AuthUnavailable
            | Rejection::MuxUnavailable
            | Rejection::FdLimit => "Retry-After: 1\r\n",
            Rejection::AuthMissing => "WWW-Authenticate: Bearer error=\"invalid_request\"\r\n",
            Rejection::AuthInvalid => "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n",
            Rejection::AuthForbidden => "WWW-Authenticate: Bearer error=\"insufficient_scope\"\r\n",
            Rejection::AuthDenied { status: 401 } => "WWW-Authenticate: Bearer\r\n",
            _ => "",
        }
    }

    /// The full response bytes.
    pub fn response(&self) -> Vec<u8> {
        let (content_type, body): (&str, Vec<u8>) = match self {
            Rejection::UpstreamStatus {
                content_type, body, ..
            } => (
                content_type
                    .as_deref()
                    .unwrap_or("text/plain; charset=utf-8"),
                body.clone(),
            ),
            _ => (
                "text/plain; charset=utf-8",
                format!("{}\n", self.text()).into_bytes(),
            ),
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n{}Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status(),
            self.text(),
            self.extra_headers(),
            content_type.replace(['\r', '\n'], ""),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

/// Write the refusal and flush; errors are the client's problem.
pub async fn write_rejection<S: AsyncWrite + Unpin>(io: &mut S, rejection: &Rejection) {
    let _ = io.write_all(&rejection.response()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Upstream Refused",
    }
}
