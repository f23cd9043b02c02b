//! The response side of one proxied request: wait for the upstream's
//! head, write it to the client (with the gateway's affinity cookie), then
//! stream the body back, bounded between chunks by the idle timeout; an
//! event stream ends cleanly when the gateway drains.

use super::super::response::{self, Delimit};
use super::super::HttpError;
use super::Exchange;
use crate::handshake::RequestHead;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::Response;
use std::future::Future;
use tokio::io::AsyncWrite;
use tokio::time::timeout;

impl Exchange<'_> {
    /// Wait for the response head (bounded by the request timeout), write
    /// it, then stream the body (bounded between chunks by the idle
    /// timeout). `Ok(close)`: the whole response was written; `close` says
    /// the client connection must not carry another request.
    pub(super) async fn respond<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        response: impl Future<Output = hyper::Result<Response<Incoming>>>,
        out: &mut Out,
        endpoint: usize,
    ) -> Result<bool, HttpError> {
        let settings = &self.route.settings;
        let mut response = match timeout(settings.request_timeout, response).await {
            Err(_) => return Err(HttpError::UpstreamTimeout),
            Ok(Err(e)) => return Err(HttpError::upstream(&e)),
            Ok(Ok(r)) => r,
        };
        // The gateway's affinity cookie, so the client's next request (a
        // Socket.IO poll, its upgrade) comes back to this endpoint.
        let cookie = self.upstream.affinity_cookie(&self.affinity(), endpoint);
        if let Some(value) = cookie.and_then(|c| hyper::header::HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .append(hyper::header::SET_COOKIE, value);
        }
        let status = response.status();
        if status.is_informational() {
            // hyper skips 1xx but a 101: no upgrade was asked for.
            return Err(HttpError::UpstreamBadResponse);
        }
        out.status = status.as_u16();
        let head_request = self.head.method == "HEAD";
        let length = response.body().size_hint().exact();
        let delimit = Delimit::choose(head_request, status, length, self.head.version);
        let close = self.close || wants_close(self.head) || delimit == Delimit::Close;
        let head = response::head(status, response.headers(), delimit, close);
        // Only an event stream may be ended early: its end is a reconnect,
        // where any other body cut short would look complete.
        let endable = delimit == Delimit::Chunked && is_event_stream(response.headers());
        let mut body = response.into_body();
        let sent = response::write_head(writer, head, delimit, &mut body).await?;
        out.head_sent = true;
        out.bytes = sent.bytes;
        if sent.ended {
            return Ok(close);
        }
        let _streaming = Streaming::enter(&self.route.metrics.streams);
        loop {
            let next = async {
                match settings.idle_timeout {
                    Some(limit) => timeout(limit, body.frame())
                        .await
                        .map_err(|_| HttpError::UpstreamTimeout),
                    None => Ok(body.frame().await),
                }
            };
            let frame = tokio::select! {
                // The next piece of the body, its end, or the idle limit.
                f = next => f?,
                // Draining: an event stream ends here, between events.
                _ = self.draining.cancelled(), if endable => None,
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| HttpError::upstream(&e))?;
            // Trailers are dropped (the last chunk goes without them).
            if let Ok(data) = frame.into_data() {
                out.bytes += data.len() as u64;
                response::write_data(writer, delimit, data)
                    .await
                    .map_err(|_| HttpError::ClientGone)?;
            }
        }
        response::finish(writer, delimit)
            .await
            .map_err(|_| HttpError::ClientGone)?;
        Ok(close)
    }
}

/// The response side's progress.
#[derive(Default)]
pub(super) struct Out {
    pub(super) status: u16,
    pub(super) head_sent: bool,
    pub(super) bytes: u64,
}

/// `Connection: close` from the client, or HTTP/1.0 (no keep-alive
/// offered to 1.0 clients).
fn wants_close(head: &RequestHead) -> bool {
    head.version == 0 || crate::handshake::has_token(head, "connection", "close")
}

/// `Content-Type: text/event-stream` (Server-Sent Events).
fn is_event_stream(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// Keeps `tidegate_http_streams_in_flight` up while a response body streams.
struct Streaming(prometheus::IntGauge);

impl Streaming {
    fn enter(gauge: &prometheus::IntGauge) -> Streaming {
        gauge.inc();
        Streaming(gauge.clone())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.dec();
    }
}
