//! One proxied request: pick an endpoint, take a pooled connection, send
//! the rebuilt request with the client's body streaming behind it, and
//! stream the response back — while watching the client, so one that goes
//! away cancels the upstream request (its connection is closed, never
//! pooled).
//!
//! Nothing is written to the client before the upstream's response head
//! is in: until then every failure is an [`HttpError`] the caller answers
//! through the connection's one refusal path.

use super::body::{self, client_side, expects_continue, ClientEvent, ClientLimits, Framing, Piece};
use super::pool::Conn;
use super::timer::ConnTimer;
use super::upstream_conn::{first_piece, forward_body, send_head};
use super::{request, HttpError, HttpRoute};
use crate::config::balance::Policy;
use crate::handshake::RequestHead;
use crate::upstream::{Affinity, ClientInfo, ConnectError, Outcome, Upstream};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

mod respond;
mod settle;
use respond::{Done, Out};

/// Most bytes asked of the upstream socket per read of a body (the
/// scratch buffer's size bounds it too).
const BODY_READ: usize = 64 * 1024;

/// A request ready to go: what the route phase and the policy decided.
pub struct Exchange<'a> {
    pub head: &'a RequestHead,
    /// Path, query and end-to-end headers for the upstream.
    pub request: request::Outgoing,
    /// The client's Host (sent upstream with `preserve_host`).
    pub host: &'a str,
    pub upstream: &'a Arc<Upstream>,
    pub route: &'a HttpRoute,
    pub client: &'a ClientInfo,
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
    /// The response side's waits run on the connection's `timer`.
    pub async fn run<R, W>(
        &self,
        reader: &mut R,
        writer: &mut W,
        buf: &mut BytesMut,
        timer: &mut ConnTimer,
    ) -> Ended
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let settings = &self.route.settings;
        let mut report = Report::default();
        let framing = match Framing::of(self.head, settings.max_body_bytes)
            .and_then(|f| expects_continue(self.head).map(|e| (f, e)))
        {
            Ok(x) => x,
            Err(e) => return Ended::Refused(e, report),
        };
        let (framing, expect) = framing;
        for attempt in 0..2 {
            let mut conn = match self.connect().await {
                Ok(c) => c,
                Err(e) => return Ended::Refused(e, report),
            };
            report.endpoint = Some(conn.endpoint);
            // `least_connections` counts a request while it is in flight,
            // as it counts a WebSocket session.
            let least = self.upstream.config.balance.policy == Policy::LeastConnections;
            let _active = least.then(|| self.upstream.track(conn.endpoint));
            let head = match self.build(&conn, framing) {
                Ok(h) => h,
                Err(e) => {
                    conn.discard();
                    return Ended::Refused(e, report);
                }
            };
            if expect && framing.has_body() && attempt == 0 {
                // The gateway streams the body itself: it says Continue
                // once an upstream connection is there to take it.
                if writer
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
                {
                    conn.discard();
                    return Ended::Gone(report);
                }
            }
            let mut state = Progress {
                bytes_in: 0,
                body_done: false,
                out: Out::new(timer),
            };
            let side = self
                .send_and_relay(&mut conn, head, framing, (reader, writer, buf), &mut state)
                .await;
            report.bytes_in = state.bytes_in;
            report.bytes_out = state.out.bytes;
            report.status = state.out.status;
            let retry = attempt == 0 && !framing.has_body();
            match self.settle(side, conn, &state, &mut report, retry) {
                Some(ended) => return ended,
                None => continue,
            }
        }
        Ended::Refused(HttpError::UpstreamUnreachable, report)
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
                Err(ConnectError::NoDescriptor) => return Err(HttpError::NoDescriptor),
                Err(_) => self.upstream.report(i, Outcome::ConnectFailed),
            }
        }
        Err(HttpError::UpstreamUnreachable)
    }

    /// The request head for the connection's endpoint (`request::head`).
    fn build(&self, conn: &Conn, framing: Framing) -> Result<Vec<u8>, HttpError> {
        let upstream = &self.upstream.config;
        request::head(&request::Parts {
            method: &self.head.method,
            request: &self.request,
            host: self.host,
            upstream,
            endpoint: &upstream.endpoints[conn.endpoint],
            framing,
        })
    }

    /// Send the request on `conn` and relay the response, while the
    /// client side pumps the body and then watches for the client going
    /// away. The body bytes read with the client's head leave with the
    /// upstream head in one write; when that is the whole body (a small
    /// POST) no channel and no split of the socket is needed.
    async fn send_and_relay<R, W>(
        &self,
        conn: &mut Conn,
        head: Vec<u8>,
        framing: Framing,
        (reader, writer, buf): (&mut R, &mut W, &mut BytesMut),
        state: &mut Progress<'_>,
    ) -> Side
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let settings = &self.route.settings;
        let (first, rest) = first_body_bytes(framing, buf);
        state.bytes_in += first.len() as u64;
        let (tx, rx) = match rest {
            Framing::Empty => (None, None),
            _ => {
                let (tx, rx) = body::channel();
                (Some(tx), Some(rx))
            }
        };
        // No body left to read: the connection can take the next request
        // whichever side of the select below finishes first (the client
        // side, which also says so, may never be polled when a fast
        // upstream answers within the first poll).
        state.body_done |= tx.is_none();
        let limits = ClientLimits {
            max_body: settings.max_body_bytes,
            idle: settings.idle_timeout,
            max_head: settings.max_head_bytes,
        };
        let client = client_side(
            reader,
            buf,
            rest,
            tx,
            limits,
            (&mut state.bytes_in, &mut state.body_done),
        );
        let upstream = self.carry(conn, head, (first, rx, rest), writer, &mut state.out);
        tokio::pin!(client, upstream);
        tokio::select! {
            // The response ended (sent, or failed).
            r = &mut upstream => Side::Upstream(r),
            // The client went away or its body was refused.
            e = &mut client => Side::Client(e),
        }
    }

    /// The upstream side of one attempt: the head leaves with the first
    /// body bytes, the rest of the body goes up while the response comes
    /// back.
    async fn carry<W: AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn,
        head: Vec<u8>,
        (first, mut rx, rest): (Bytes, Option<mpsc::Receiver<Piece>>, Framing),
        writer: &mut W,
        out: &mut Out<'_>,
    ) -> Result<Done, HttpError> {
        let endpoint = conn.endpoint;
        let chunked = rest == Framing::Chunked;
        let first = match (first.is_empty(), rx.as_mut()) {
            (true, Some(pieces)) => match first_piece(pieces, chunked).await {
                Some((bytes, ended)) => {
                    if ended {
                        rx = None;
                    }
                    bytes
                }
                // The client side reports why (a refused body is a
                // 400); the upstream never saw the request.
                None => return std::future::pending().await,
            },
            _ => first,
        };
        if send_head(&mut conn.io, head, first).await.is_err() {
            // Nothing of it was answered: as a connection the upstream
            // closed under the request.
            return Err(HttpError::Stale);
        }
        match rx {
            None => self.respond(&mut conn.io, writer, out, endpoint).await,
            // Boxed: uploads are the rare case, and this state would
            // otherwise size every exchange's future (an idle event
            // stream holds it for its whole life).
            Some(rx) => {
                let respond = self.respond_while_sending(conn, rx, chunked, writer, out);
                Box::pin(respond).await
            }
        }
    }

    /// The rest of the body goes up while the response comes back.
    async fn respond_while_sending<W: AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn,
        mut rx: mpsc::Receiver<Piece>,
        chunked: bool,
        writer: &mut W,
        out: &mut Out<'_>,
    ) -> Result<Done, HttpError> {
        let endpoint = conn.endpoint;
        let (mut up_read, mut up_write) = tokio::io::split(&mut conn.io);
        let forward = forward_body(&mut up_write, &mut rx, chunked);
        let respond = self.respond(&mut up_read, writer, out, endpoint);
        tokio::pin!(forward, respond);
        let mut sent = None;
        loop {
            tokio::select! {
                // The response ended (sent, or failed).
                r = &mut respond => {
                    // Reusable only once the whole body went up too.
                    return r.map(|d| Done {
                        reusable: d.reusable && sent == Some(true),
                        ..d
                    });
                }
                // The body went up whole, or the upstream stopped
                // taking it (an early answer may still come).
                f = &mut forward, if sent.is_none() => sent = Some(f.is_ok()),
            }
        }
    }
}

/// The body bytes that leave with the request head: those of a
/// fixed-length body already read with the client's head. The framing
/// left for the client side's pump is what is still to come.
fn first_body_bytes(framing: Framing, buf: &mut BytesMut) -> (Bytes, Framing) {
    let Framing::Length(n) = framing else {
        return (Bytes::new(), framing);
    };
    let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
    let left = n - take as u64;
    let first = buf.split_to(take).freeze();
    match left {
        0 => (first, Framing::Empty),
        _ => (first, Framing::Length(left)),
    }
}

/// What the two sides of an exchange wrote into while they ran.
struct Progress<'t> {
    bytes_in: u64,
    body_done: bool,
    out: Out<'t>,
}

enum Side {
    Upstream(Result<Done, HttpError>),
    Client(ClientEvent),
}

/// `Connection: close` from the client, or HTTP/1.0 (no keep-alive
/// offered to 1.0 clients).
fn wants_close(head: &RequestHead) -> bool {
    head.version == 0 || crate::handshake::has_token(head, "connection", "close")
}
