//! Dispatch target: plain HTTP. The connection's requests one after the
//! other (keep-alive, pipelining kept in order): each later head is read
//! by the same strict reader as the first and passes the same phases —
//! route, classify, policy — before [`Exchange`] proxies it. A WebSocket
//! upgrade arriving as a later request leaves this loop and takes the
//! upgrade path like a first one.
//!
//! The connection ends when either side asks, when a request is refused
//! (its refusal says `Connection: close`), after `http.keepalive_timeout`
//! idle, or at drain (between requests; a request in flight finishes).

use super::linger::linger;
use super::{admit_head, dispatch_upgrade, refuse_as, Admission, Admitted, Counted, Ctx, Refused};
use crate::access;
use crate::auth::Identity;
use crate::handshake::{Rejection, RequestHead, Upgrade};
use crate::http::exchange::{Ended, Exchange, Report};
use crate::http::request::Outgoing;
use crate::http::timer::ConnTimer;
use crate::io::{read_via_scratch, Io};
use crate::server::limits::ConnectionSlot;
use bytes::{Buf, BytesMut};
use std::future::Future;
use tokio::io::{AsyncRead, ReadHalf, WriteHalf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// An admitted plain HTTP request.
pub(super) struct Request {
    pub head: RequestHead,
    /// Route, Host and normalised path (no key, no sub-protocols).
    pub target: Upgrade,
    pub identity: Option<Identity>,
    /// Bytes read past the head: its body, maybe a next request.
    pub from_client: Vec<u8>,
}

/// What follows a request on the connection. Small: it is kept across
/// the last steps of the connection's future (a boxed `Admitted`, a
/// `Request` written in place), so it does not add to that future's size.
enum Next {
    /// The next request, written over the last one.
    Http,
    Upgrade(Box<Admitted>),
    /// Refused: answered, then the connection closes.
    Refused(Refused),
    /// Closed, idle too long, draining, or a head that never completed.
    Gone,
}

/// Serve the connection's plain HTTP requests, starting with `request`,
/// as the connection's task: a later request that is a WebSocket upgrade
/// is dispatched from here. Every step but the exchange is boxed: this
/// future lives as long as the connection, at the size of its largest
/// state.
// Not an `async fn` on purpose (below).
#[allow(clippy::manual_async_fn)]
pub(super) fn serve(
    cx: Ctx,
    io: Io,
    mut request: Request,
    held: (OwnedSemaphorePermit, ConnectionSlot),
) -> impl Future<Output = ()> {
    // Not an `async fn`: that would keep each argument twice in the future
    // (once as passed, once rebound), and `request` alone is 400 bytes.
    async move {
        let (mut reader, mut writer) = tokio::io::split(io);
        let mut buf = BytesMut::from(&std::mem::take(&mut request.from_client)[..]);
        // Every wait of this loop and of its exchanges, re-armed per wait.
        let mut timer = ConnTimer::new();
        loop {
            let io = (&mut reader, &mut writer, &mut buf);
            let keep = one(&cx, &request, io, &mut timer).await;
            if !keep {
                Box::pin(linger(&mut reader, &mut writer)).await;
                return;
            }
            match next(&cx, (&mut reader, &mut buf), &mut request, &mut timer).await {
                Next::Http => {}
                Next::Upgrade(mut a) => {
                    a.from_client = buf.to_vec();
                    let io = reader.unsplit(writer);
                    return Box::pin(dispatch_upgrade(&cx, io, *a, held)).await;
                }
                Next::Refused(r) => {
                    count_refusal(&cx, &r, 0.0);
                    Box::pin(async {
                        refuse_as(&cx, &mut writer, r, Counted::HttpRequest).await;
                        linger(&mut reader, &mut writer).await;
                    })
                    .await;
                    return;
                }
                Next::Gone => return,
            }
        }
    }
}

/// Proxy one request; true if the connection may carry another.
async fn one(
    cx: &Ctx,
    request: &Request,
    (reader, writer, buf): (&mut ReadHalf<Io>, &mut WriteHalf<Io>, &mut BytesMut),
    timer: &mut ConnTimer,
) -> bool {
    let started = Instant::now();
    let rt = cx.runtime(&request.target);
    let Some(http) = rt.http.as_ref() else {
        // Admission lets plain HTTP in only on routes that carry it.
        return false;
    };
    let exchange = Exchange {
        head: &request.head,
        request: Outgoing::new(
            &request.head,
            &request.target,
            &rt.upstream.config,
            cx.client,
            request.identity.as_ref(),
        ),
        host: &request.target.host,
        upstream: &rt.upstream,
        route: http,
        client: &cx.client,
        close: cx.gw.shutdown.is_draining(),
        draining: cx.gw.shutdown.draining(),
    };
    let (report, keep) = match exchange.run(reader, writer, buf, timer).await {
        Ended::Answered(report) => {
            let keep = report.keep_alive;
            (report, keep)
        }
        Ended::Gone(report) => (report, false),
        Ended::Refused(e, mut report) => {
            tracing::debug!(route = %rt.config.name, error = %e, "HTTP request refused");
            let rejection = e.rejection();
            report.status = rejection.status();
            let refused = Refused::on(&request.target.route, rejection);
            Box::pin(refuse_as(cx, writer, refused, Counted::HttpRequest)).await;
            (report, false)
        }
    };
    let m = &http.metrics;
    let elapsed = started.elapsed();
    m.request(report.status, elapsed.as_secs_f64());
    m.bytes_in.inc_by(report.bytes_in);
    m.bytes_out.inc_by(report.bytes_out);
    log_access(cx, request, &report, elapsed);
    keep
}

/// A request refused before its exchange, in the HTTP metrics: those of
/// its route when it carries HTTP, route `-` when none matched (a head
/// that did not parse, was too large or too slow). False when not
/// counted (a route without HTTP: the refusal is a connection's).
fn count_refusal(cx: &Ctx, r: &Refused, seconds: f64) -> bool {
    let metrics = match &r.route {
        None => Some(&cx.state.unrouted_http),
        Some(route) => cx
            .state
            .runtime
            .get(&route.name)
            .and_then(|rt| rt.http.as_ref())
            .map(|http| &http.metrics),
    };
    if let Some(m) = metrics {
        m.request(r.rejection.status(), seconds);
    }
    metrics.is_some()
}

/// Refuse the first request of a connection, one that is not a WebSocket
/// upgrade: an HTTP request refused (`tidegate_http_requests_total`) as
/// a later one on the connection would be, or a connection refused on a
/// route that carries no HTTP.
pub(super) async fn refuse_first(cx: &Ctx, io: &mut Io, r: Refused) {
    let seconds = cx.accepted.elapsed().as_secs_f64();
    let counted = match count_refusal(cx, &r, seconds) {
        true => Counted::HttpRequest,
        false => Counted::Connection,
    };
    refuse_as(cx, io, r, counted).await
}

/// The access-log line of one request.
fn log_access(cx: &Ctx, request: &Request, report: &Report, elapsed: std::time::Duration) {
    let rt = cx.runtime(&request.target);
    let endpoint = report
        .endpoint
        .and_then(|i| rt.upstream.config.endpoints.get(i))
        .map_or("-", |ep| ep.url.as_str());
    access::http_request(
        &access::HttpLine {
            route: &rt.config.name,
            client: cx.client.addr,
            subject: request.identity.as_ref().and_then(|i| i.subject.as_deref()),
            endpoint,
            method: &request.head.method,
            path: request.head.path(),
            status: report.status,
            bytes_from_client: report.bytes_in,
            bytes_to_client: report.bytes_out,
            duration: elapsed,
        },
        rt.config.access_sample,
    );
}

/// Wait for the next request (bounded idle, ended by drain), read its
/// head with the same reader and limits as the first, and admit it.
async fn next(
    cx: &Ctx,
    (reader, buf): (&mut ReadHalf<Io>, &mut BytesMut),
    request: &mut Request,
    timer: &mut ConnTimer,
) -> Next {
    let config = &cx.state.config;
    let max = config.limits.max_header_bytes;
    if buf.is_empty() {
        // An idle keep-alive connection holds no read buffer.
        *buf = BytesMut::new();
        let idle = timer.within(
            config.http.keepalive_timeout,
            read_via_scratch(reader, buf, max),
        );
        tokio::select! {
            // Drain closes idle keep-alive connections at once.
            _ = cx.gw.shutdown.draining().cancelled() => return Next::Gone,
            // The first byte of the next request, EOF, or the idle limit.
            r = idle => match r {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Next::Gone,
            },
        }
    }
    let limit = config.limits.handshake_timeout;
    let head = match timer.within(limit, read_head(reader, buf, max)).await {
        Ok(Ok(head)) => head,
        Ok(Err(Some(r))) => return Next::Refused(Refused::unrouted(r)),
        Ok(Err(None)) => return Next::Gone,
        Err(_) => return Next::Gone,
    };
    match admit_head(cx, head, Vec::new()).await {
        Ok(Admission::Http(r)) => {
            *request = r;
            Next::Http
        }
        Ok(Admission::Upgrade(a)) => Next::Upgrade(Box::new(a)),
        Err(r) => Next::Refused(r),
    }
}

/// A head from `buf` and further reads, consumed from `buf`. `Err(None)`:
/// the client closed.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<RequestHead, Option<Rejection>> {
    loop {
        match RequestHead::parse(&buf[..buf.len().min(max)]) {
            Ok(Some((head, len))) => {
                buf.advance(len);
                return Ok(head);
            }
            Ok(None) if buf.len() >= max => return Err(Some(Rejection::HeaderTooLarge)),
            Ok(None) => {}
            Err(crate::handshake::HeadError::TooLarge) => {
                return Err(Some(Rejection::HeaderTooLarge))
            }
            Err(_) => return Err(Some(Rejection::Malformed)),
        }
        match read_via_scratch(reader, buf, max - buf.len()).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
