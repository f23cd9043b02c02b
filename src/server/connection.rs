//! One client connection from accept to its dispatch, in named phases:
//!
//! ```text
//! accept → TLS → read head → route → classify → policy → dispatch
//!                                    (upgrade    (origin,  (passthrough
//!                                     or HTTP)    drain,     relay, mux
//!                                                 auth)      session)
//! ```
//!
//! Each phase returns a typed result. A refusal from any of them ends in
//! [`refuse`], the one place that turns a [`Rejection`] into a response
//! and its metrics. New features add a dispatch target or a policy step,
//! never a branch inside another phase.
//!
//! This task is short-lived: once both handshakes are done it spawns the
//! session as a separate, small task and ends, so the buffers and parsed
//! headers of the handshake are freed instead of living as long as the
//! session.

mod dispatch;
mod http;
mod linger;
mod policy;

use super::limits::{ConnectionSlot, HandshakeSlot};
use super::{Gateway, RouteRuntime, State};
use crate::auth::Identity;
use crate::handshake::{
    self, read_head, HeadError, Kind, Refused, Rejection, RequestHead, Upgrade,
};
use crate::io::Io;
use crate::upstream::ClientInfo;
use prometheus::{IntCounter, IntGauge};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout_at, Instant};
use tracing::Instrument;

/// What every phase may need: the gateway, the configuration this
/// connection lives by (even if a reload swaps it meanwhile), and who the
/// client is.
struct Ctx {
    gw: Arc<Gateway>,
    state: Arc<State>,
    client: ClientInfo,
    /// When the connection was accepted (handshake duration).
    accepted: Instant,
}

impl Ctx {
    fn runtime(&self, upgrade: &Upgrade) -> &RouteRuntime {
        &self.state.runtime[&upgrade.route.name]
    }
}

/// A request that passed every check before dispatch.
struct Admitted {
    head: RequestHead,
    /// Bytes the client sent right behind its head (its first frames).
    from_client: Vec<u8>,
    upgrade: Upgrade,
    identity: Option<Identity>,
}

/// What an admitted request asks for: a WebSocket session, or a plain
/// HTTP request on a route that carries HTTP.
enum Admission {
    Upgrade(Admitted),
    Http(http::Request),
}

/// Why a connection ends before its dispatch.
enum Halt {
    /// Refused: answered and counted by [`refuse`].
    Refused(Refused),
    /// Refused, and not a WebSocket upgrade (a plain request, or a head
    /// that never parsed): counted as an HTTP request where the route
    /// carries HTTP (`http::refuse_first`).
    RefusedHttp(Refused),
    /// Nothing to answer: the client went away or sent nothing usable at
    /// the transport level.
    Gone,
}

impl From<Refused> for Halt {
    fn from(r: Refused) -> Halt {
        Halt::Refused(r)
    }
}

pub async fn handle(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tls_failures: IntCounter,
    permit: OwnedSemaphorePermit,
    (handshake, slot): (HandshakeSlot, ConnectionSlot),
) {
    let _in_progress = InProgress::enter(&gw);
    let state = gw.state();
    let accepted = Instant::now();
    let deadline = accepted + state.config.limits.handshake_timeout;
    let client = ClientInfo::new(peer, acceptor.is_some());
    let Some(mut io) = accept_tls(tcp, acceptor, deadline, &tls_failures).await else {
        return;
    };
    let cx = Ctx {
        gw,
        state,
        client,
        accepted,
    };
    let admitted = admit(&cx, &mut io, deadline).await;
    // The head is read and the policy decided: this client no longer
    // counts against the budget of handshakes in progress.
    drop(handshake);
    let admitted = match admitted {
        Ok(Admission::Upgrade(a)) => a,
        Ok(Admission::Http(request)) => {
            // The connection's HTTP requests get a task of their own and
            // this one ends, so what its phases held is freed: an idle
            // event stream keeps only the HTTP loop's state (the size
            // test in `http`), not this task's largest state too.
            let gw = Arc::clone(&cx.gw);
            let task = http::serve(cx, io, request, (permit, slot));
            spawn_in(&gw.shutdown, tracing::Span::current(), task);
            return;
        }
        Err(Halt::Gone) => return,
        Err(Halt::Refused(r)) => return refuse_and_close(&cx, io, r, false).await,
        Err(Halt::RefusedHttp(r)) => return refuse_and_close(&cx, io, r, true).await,
    };
    dispatch_upgrade(&cx, io, admitted, (permit, slot)).await
}

/// Spawn a connection's task in `span` — the per-connection span with
/// the client's address — when the log filter records it. A disabled span
/// (the default `info` filter: the span is `debug`) is not attached at
/// all: an `Instrumented` task enters and leaves its span on every poll,
/// and an HTTP connection's task is polled several times per request.
/// The log lines are the same either way: events of a disabled span carry
/// none of its fields.
pub(super) fn spawn_in<F>(shutdown: &crate::shutdown::Shutdown, span: tracing::Span, task: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match span.is_disabled() {
        true => shutdown.spawn(task),
        false => shutdown.spawn(task.instrument(span)),
    }
}

/// Phase: dispatch of an admitted upgrade (the first request of the
/// connection, or a later one after plain HTTP requests).
async fn dispatch_upgrade(
    cx: &Ctx,
    io: Io,
    admitted: Admitted,
    held: (OwnedSemaphorePermit, ConnectionSlot),
) {
    let target = match dispatch::connect(cx, &admitted).await {
        Ok(t) => t,
        Err(r) => return refuse_and_close(cx, io, r, false).await,
    };
    dispatch::switch(cx, io, admitted, target, held).await;
}

/// Refuse the connection's first request (`http`: not an upgrade,
/// counted as an HTTP request where its route carries HTTP), then close.
async fn refuse_and_close(cx: &Ctx, mut io: Io, r: Refused, http: bool) {
    match http {
        true => http::refuse_first(cx, &mut io, r).await,
        false => refuse(cx, &mut io, r).await,
    }
    close_after_refusal(io).await
}

/// Phase: TLS (on a TLS listener), bounded by the handshake deadline.
async fn accept_tls(
    tcp: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    deadline: Instant,
    failures: &IntCounter,
) -> Option<Io> {
    let Some(acceptor) = acceptor else {
        return Some(Io::Tcp(tcp));
    };
    // Boxed, like the other branches not every connection takes: the
    // task's future is as large as its largest state, and it is moved into
    // the task when spawned.
    match timeout_at(deadline, Box::pin(acceptor.accept(tcp))).await {
        Ok(Ok(s)) => Some(Io::TlsServer(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            failures.inc();
            None
        }
        Err(_) => {
            failures.inc();
            None
        }
    }
}

/// Phases read head → route → classify → policy.
async fn admit(cx: &Ctx, io: &mut Io, deadline: Instant) -> Result<Admission, Halt> {
    let (head, from_client) = read_request_head(cx, io, deadline).await?;
    let plain = !handshake::has_token(&head, "upgrade", "websocket");
    admit_head(cx, head, from_client)
        .await
        .map_err(|r| match plain {
            true => Halt::RefusedHttp(r),
            false => Halt::Refused(r),
        })
}

/// Phases route → classify → policy for a head that has been read (the
/// first of a connection, or a later one of a keep-alive connection).
async fn admit_head(
    cx: &Ctx,
    head: RequestHead,
    from_client: Vec<u8>,
) -> Result<Admission, Refused> {
    let routed = handshake::route(&head, &cx.state.routes).map_err(Refused::unrouted)?;
    let route = Arc::clone(&routed.route);
    let (mut target, plain) = match handshake::classify(&head, routed) {
        Ok(Kind::Upgrade(u)) => (u, false),
        Ok(Kind::Http(target)) => {
            if route.http.is_none() {
                let rejection = handshake::plain_http_rejection(&head);
                return Err(Refused::on(&route, rejection));
            }
            (target, true)
        }
        Err(r) => return Err(Refused::on(&route, r)),
    };
    let identity = policy::check(cx, &head, &mut target)
        .await
        .map_err(|r| Refused::on(&route, r))?;
    if plain {
        return Ok(Admission::Http(http::Request {
            head,
            target,
            identity,
            from_client,
        }));
    }
    Ok(Admission::Upgrade(Admitted {
        head,
        from_client,
        upgrade: target,
        identity,
    }))
}

/// Phase: the request head, bounded in bytes and time (slowloris).
async fn read_request_head(
    cx: &Ctx,
    io: &mut Io,
    deadline: Instant,
) -> Result<(RequestHead, Vec<u8>), Halt> {
    let limit = cx.state.config.limits.max_header_bytes;
    let refused = |r| Halt::RefusedHttp(Refused::unrouted(r));
    match timeout_at(deadline, read_head(io, limit)).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(HeadError::TooLarge)) => Err(refused(Rejection::HeaderTooLarge)),
        Ok(Err(HeadError::Malformed)) => Err(refused(Rejection::Malformed)),
        Ok(Err(HeadError::Closed | HeadError::Io(_))) => Err(Halt::Gone),
        Err(_) => Err(refused(Rejection::HandshakeTimeout)),
    }
}

/// Refuse the request: the one place a [`Rejection`] becomes a response
/// and metrics (`tidegate_handshake_rejections_total{route, reason}`, and
/// on a route `tidegate_connections_total{outcome}`: `upstream_error` for
/// the upstream's failures, `rejected` for the gateway's decisions).
async fn refuse<W: AsyncWrite + Unpin>(cx: &Ctx, io: &mut W, refused: Refused) {
    refuse_as(cx, io, refused, Counted::Connection).await
}

/// What a refusal counts against besides its reason.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// `tidegate_connections_total{outcome}`: a refused upgrade or first
    /// request of a connection.
    Connection,
    /// A plain HTTP request: counted by the HTTP metrics (its caller).
    HttpRequest,
}

/// [`refuse`], for a refusal counted as `counted`.
async fn refuse_as<W: AsyncWrite + Unpin>(
    cx: &Ctx,
    io: &mut W,
    refused: Refused,
    counted: Counted,
) {
    let Refused { rejection, route } = refused;
    let route = route.as_ref().map(|r| r.name.as_str());
    cx.gw
        .metrics
        .handshake_rejections
        .with_label_values(&[route.unwrap_or("-"), rejection.label()])
        .inc();
    let runtime = route.and_then(|r| cx.state.runtime.get(r));
    if let Some(rt) = runtime.filter(|_| counted == Counted::Connection) {
        match rejection.is_upstream() {
            true => rt.metrics.upstream_error.inc(),
            false => rt.metrics.rejected.inc(),
        }
    }
    tracing::debug!(
        route = route.unwrap_or("-"),
        reason = rejection.label(),
        "handshake refused"
    );
    if rejection.is_answered() {
        // Bounded: a client that does not read its refusal does not hold
        // the connection slot.
        let limit = Instant::now() + cx.state.config.limits.handshake_timeout;
        let _ = timeout_at(limit, handshake::write_rejection(io, &rejection)).await;
    }
}

/// Close a refused connection without a reset that could destroy the
/// refusal (`linger`).
async fn close_after_refusal(io: Io) {
    let (mut reader, mut writer) = tokio::io::split(io);
    linger::linger(&mut reader, &mut writer).await;
}

/// Keeps `tidegate_handshakes_in_progress` up while the handshake task runs.
struct InProgress(IntGauge);

impl InProgress {
    fn enter(gw: &Gateway) -> InProgress {
        let gauge = gw.metrics.handshakes_in_progress.clone();
        gauge.inc();
        InProgress(gauge)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}
