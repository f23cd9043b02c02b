//! One proxied request: pick an endpoint, take a pooled connection, send
//! the rebuilt request with the client's body streaming behind it, and
//! stream the response back — while watching the client, so one that goes
//! away cancels the upstream request (its connection is closed, never
//! pooled).
//!
//! Nothing is written to the client before the upstream's response head
//! is in: until then every failure is an [`HttpError`] the caller answers
//! through the connection's one refusal path. The response side — head,
//! then the body streamed back — is in `respond`.

mod respond;

use super::body::{client_side, expects_continue, ClientBody, ClientEvent, ClientLimits, Framing};
use super::pool::Conn;
use super::{HttpError, HttpRoute};
use crate::config::balance::Policy;
use crate::handshake::RequestHead;
use crate::upstream::{Affinity, ClientInfo, Outcome, Upstream, UpstreamRequest};
use bytes::BytesMut;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use respond::Out;
use std::mem::take;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A request ready to go: what the route phase and the policy decided.
pub struct Exchange<'a> {
    pub head: &'a RequestHead,
    /// Path, query and end-to-end headers for the upstream.
    pub request: UpstreamRequest,
    /// The client's Host (sent upstream with `preserve_host`).
    pub host: &'a str,
    pub upstream: &'a Arc<Upstream>,
    pub route: &'a HttpRoute,
    pub client: ClientInfo,
    /// The gateway wants the client connection closed after this request
    /// (draining, or the client asked).
    pub close: bool,
    /// Cancelled when the gateway starts draining: an event stream then
    /// ends cleanly, so its client reconnects elsewhere.
    pub draining: &'a tokio_util::sync::CancellationToken,
}

/// What a completed exchange did, for metrics and the access log.
#[derive(Debug, Default)]
pub struct Report {
    pub status: u16,
    /// Body bytes from the client, and to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Index of the endpoint that answered.
    pub endpoint: Option<usize>,
    /// The client connection can carry another request.
    pub keep_alive: bool,
}

/// How an exchange ended.
pub enum Ended {
    /// The response was sent (completely, or as far as the client or the
    /// upstream let it: `keep_alive` is false then).
    Answered(Report),
    /// Refused before anything was written: the caller answers `error`.
    Refused(HttpError, Report),
    /// The client went away; nothing more to write.
    Gone(Report),
}

impl Exchange<'_> {
    /// Run the exchange over the client's halves; `buf` holds bytes read
    /// past the head (body, or a next request) and keeps what is left.
    pub async fn run<R, W>(self, reader: &mut R, writer: &mut W, buf: &mut BytesMut) -> Ended
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut report = Report::default();
        let (framing, expect) = match self.framing() {
            Ok(x) => x,
            Err(e) => return Ended::Refused(e, report),
        };
        let mut io = ClientIo {
            reader,
            writer,
            buf,
        };
        for attempt in 0..2 {
            let step = self
                .attempt(&mut io, framing, expect, attempt, &mut report)
                .await;
            match step {
                Step::Ended(ended) => return ended,
                Step::Retry => continue,
            }
        }
        Ended::Refused(HttpError::UpstreamUnreachable, report)
    }

    /// How the request body is delimited, and whether the client expects
    /// `100 Continue` before sending it.
    fn framing(&self) -> Result<(Framing, bool), HttpError> {
        let framing = Framing::of(self.head, self.route.settings.max_body_bytes)?;
        Ok((framing, expects_continue(self.head)?))
    }

    /// One try on one upstream connection: connect, send the request with
    /// the body behind it, carry the response, then decide what the try
    /// came to. `report` is kept up to date for the caller.
    async fn attempt<R, W>(
        &self,
        io: &mut ClientIo<'_, R, W>,
        framing: Framing,
        expect: bool,
        attempt: u32,
        report: &mut Report,
    ) -> Step
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => return Step::Ended(Ended::Refused(e, take(report))),
        };
        report.endpoint = Some(conn.endpoint);
        // `least_connections` counts a request while it is in flight,
        // as it counts a WebSocket session.
        let least = self.upstream.config.balance.policy == Policy::LeastConnections;
        let _active = least.then(|| self.upstream.track(conn.endpoint));
        let request = match self.build(&conn, framing) {
            Ok(r) => r,
            Err(e) => {
                conn.discard();
                return Step::Ended(Ended::Refused(e, take(report)));
            }
        };
        if expect && framing.has_body() && attempt == 0 {
            // The gateway streams the body itself: it says Continue
            // once an upstream connection is there to take it.
            if io
                .writer
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                conn.discard();
                return Step::Ended(Ended::Gone(take(report)));
            }
        }
        let mut state = Progress::default();
        let side = self
            .carry(io, framing, request, &mut conn, &mut state)
            .await;
        report.bytes_in = state.bytes_in;
        report.bytes_out = state.out.bytes;
        report.status = state.out.status;
        self.settle(side, conn, &state, framing, attempt, report)
    }

    /// Send the request on `conn` and run its two sides at once: the
    /// client's body going up, the response coming down. Returns the side
    /// that ended first.
    async fn carry<R, W>(
        &self,
        io: &mut ClientIo<'_, R, W>,
        framing: Framing,
        request: Request<()>,
        conn: &mut Conn,
        state: &mut Progress,
    ) -> Side
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let settings = &self.route.settings;
        let (body, tx) = ClientBody::new(framing);
        let response = conn.sender.send_request(request.map(|()| body));
        let limits = ClientLimits {
            max_body: settings.max_body_bytes,
            idle: settings.idle_timeout,
            max_head: settings.max_head_bytes,
        };
        let client = client_side(
            &mut *io.reader,
            &mut *io.buf,
            framing,
            tx,
            limits,
            (&mut state.bytes_in, &mut state.body_done),
        );
        let upstream = self.respond(&mut *io.writer, response, &mut state.out, conn.endpoint);
        tokio::pin!(client, upstream);
        tokio::select! {
            // The response ended (sent, or failed).
            r = &mut upstream => Side::Upstream(r),
            // The client went away or its body was refused.
            e = &mut client => Side::Client(e),
        }
    }

    /// What a try came to, given the side that ended it: the connection
    /// goes back to the pool or is closed, the endpoint's outcome is
    /// reported, and a request that is safe to send again is retried.
    fn settle(
        &self,
        side: Side,
        conn: Conn,
        state: &Progress,
        framing: Framing,
        attempt: u32,
        report: &mut Report,
    ) -> Step {
        // Answered when the client already has a response head, else
        // refused through the caller's refusal path.
        let answered_or = |e: HttpError, report: &mut Report| match state.out.head_sent {
            true => Ended::Answered(take(report)),
            false => Ended::Refused(e, take(report)),
        };
        let ended = match side {
            Side::Upstream(Ok(close)) => {
                self.upstream
                    .report(conn.endpoint, outcome_of(report.status));
                report.keep_alive = state.body_done && !close;
                match state.body_done {
                    true => self.route.pool.put(conn),
                    false => conn.discard(),
                }
                Ended::Answered(take(report))
            }
            Side::Upstream(Err(HttpError::ClientGone)) | Side::Client(ClientEvent::Gone) => {
                conn.discard();
                Ended::Gone(take(report))
            }
            Side::Upstream(Err(e)) => {
                // Safe to send again: the upstream closed a pooled
                // connection before answering (its keep-alive ran out
                // as the request went), nothing reached the client,
                // and sending it twice cannot do anything once would
                // not (idempotent method, no body).
                let retry = conn.reused
                    && e.retryable()
                    && attempt == 0
                    && state.out.status == 0
                    && !framing.has_body()
                    && is_idempotent(&self.head.method);
                conn.discard();
                if retry {
                    return Step::Retry;
                }
                self.upstream
                    .report(report.endpoint.unwrap_or(0), Outcome::ServerError);
                answered_or(e, report)
            }
            Side::Client(ClientEvent::Refused(e)) => {
                conn.discard();
                answered_or(e, report)
            }
        };
        Step::Ended(ended)
    }

    /// What the balancer may key on: the path as sent upstream, as for
    /// WebSocket upgrades.
    fn affinity(&self) -> Affinity<'_> {
        Affinity {
            client: self.client.addr.ip(),
            path: &self.request.path,
            query: self.head.query(),
            headers: self.head,
        }
    }

    /// A connection to the first endpoint the balancer offers that takes one.
    async fn connect(&self) -> Result<Conn, HttpError> {
        for i in self.upstream.candidates(&self.affinity()) {
            match self.route.pool.checkout(self.upstream, i).await {
                Ok(conn) => return Ok(conn),
                Err(_) => self.upstream.report(i, Outcome::ConnectFailed),
            }
        }
        Err(HttpError::UpstreamUnreachable)
    }

    /// The request head for the connection's endpoint, rebuilt from the
    /// parsed one: method, the endpoint's base path + the route's path +
    /// the query, Host, the end-to-end and forwarding headers, and the
    /// body's length when it is known (else hyper sends it chunked).
    fn build(&self, conn: &Conn, framing: Framing) -> Result<Request<()>, HttpError> {
        let upstream = &self.upstream.config;
        let ep = &upstream.endpoints[conn.endpoint];
        let method =
            Method::from_bytes(self.head.method.as_bytes()).map_err(|_| HttpError::Malformed)?;
        let mut uri = format!("{}{}", ep.base_path, self.request.path);
        if !self.request.query.is_empty() {
            uri.push('?');
            uri.push_str(&self.request.query);
        }
        let host = match upstream.preserve_host {
            true => self.host,
            false => ep.authority.as_str(),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        let headers = builder.headers_mut().ok_or(HttpError::Malformed)?;
        let mut add = |name: &str, value: &str| -> Result<(), HttpError> {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpError::Malformed)?;
            let value = HeaderValue::from_str(value).map_err(|_| HttpError::Malformed)?;
            headers.append(name, value);
            Ok(())
        };
        add("host", host)?;
        for (name, value) in self.request.headers.iter().chain(&upstream.add_headers) {
            // The gateway answers expectations itself.
            if !name.eq_ignore_ascii_case("expect") {
                add(name, value)?;
            }
        }
        if let Framing::Length(n) = framing {
            add("content-length", &n.to_string())?;
        }
        builder.body(()).map_err(|_| HttpError::Malformed)
    }
}

/// What the two sides of an exchange wrote into while they ran.
#[derive(Default)]
struct Progress {
    bytes_in: u64,
    body_done: bool,
    out: Out,
}

/// The client connection's halves, and the bytes read past the request
/// head (its body, or the next request), kept across a retry.
struct ClientIo<'c, R, W> {
    reader: &'c mut R,
    writer: &'c mut W,
    buf: &'c mut BytesMut,
}

/// The side of an exchange that ended first.
enum Side {
    Upstream(Result<bool, HttpError>),
    Client(ClientEvent),
}

/// What one try came to.
enum Step {
    Ended(Ended),
    /// The request goes again on a fresh connection.
    Retry,
}

/// RFC 9110 §9.2.2: a request that may be sent twice.
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

fn outcome_of(status: u16) -> Outcome {
    match status {
        500..=599 => Outcome::ServerError,
        _ => Outcome::Ok,
    }
}
