//! The response side of an exchange: wait for the upstream's response
//! head, write it to the client, then relay the body as it arrives —
//! through the worker's scratch buffer, so an idle event stream holds no
//! buffer — until it ends, the client goes away or the gateway drains.

use super::{wants_close, Exchange, BODY_READ};
use crate::http::response::{self, Delimit};
use crate::http::response_reader::{self, Asked, BodyReader, Step};
use crate::http::timer::ConnTimer;
use crate::http::HttpError;
use crate::io::read_via_scratch;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

impl Exchange<'_> {
    /// Wait for the response head (bounded by the request timeout), write
    /// it, then stream the body (bounded between reads by the idle
    /// timeout); both waits on the connection's `timer`.
    pub(super) async fn respond<R, W>(
        &self,
        up: &mut R,
        writer: &mut W,
        out: &mut Out<'_>,
        endpoint: usize,
    ) -> Result<Done, HttpError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let settings = &self.route.settings;
        // The gateway's affinity cookie, so the client's next request (a
        // Socket.IO poll, its upgrade) comes back to this endpoint.
        let cookie = self.upstream.affinity_cookie(&self.affinity(), endpoint);
        let asked = Asked {
            head_request: self.head.method == "HEAD",
            client_minor: self.head.version,
            close: self.close || wants_close(self.head),
            cookie: cookie.as_deref(),
        };
        // Bytes from the upstream: empty (no allocation) while it is quiet.
        let mut buf = BytesMut::new();
        let head = out
            .timer
            .within(
                settings.request_timeout,
                response_reader::read_head(up, &mut buf, &asked),
            )
            .await
            .map_err(|_| HttpError::UpstreamTimeout)??;
        out.status = head.status;
        // Only an event stream may be ended early: its end is a reconnect,
        // where any other body cut short would look complete.
        let endable = head.delimit == Delimit::Chunked && head.event_stream;
        let mut body = BodyReader::new(head.body);
        let sent =
            response::write_head(writer, head.client_head, head.delimit, &mut body, &mut buf)
                .await?;
        out.head_sent = true;
        out.bytes = sent.bytes;
        if !sent.ended {
            let _streaming = Streaming::enter(&self.route.metrics.streams);
            let drained = self
                .stream_body(
                    up,
                    writer,
                    (&mut body, &mut buf),
                    (head.delimit, endable),
                    out,
                )
                .await?;
            response::finish(writer, head.delimit)
                .await
                .map_err(|_| HttpError::ClientGone)?;
            if drained {
                return Ok(Done {
                    close: head.close,
                    reusable: false,
                });
            }
        }
        Ok(Done {
            close: head.close,
            // Nothing may follow the response on a connection to reuse.
            reusable: head.reusable && body.is_done() && buf.is_empty(),
        })
    }

    /// Relay the rest of the body as it arrives. Between reads the buffer
    /// is given back, so an idle event stream holds none: reads go
    /// through the worker's scratch buffer. True: ended by the drain.
    async fn stream_body<R, W>(
        &self,
        up: &mut R,
        writer: &mut W,
        (body, buf): (&mut BodyReader, &mut BytesMut),
        (delimit, endable): (Delimit, bool),
        out: &mut Out<'_>,
    ) -> Result<bool, HttpError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let idle = self.route.settings.idle_timeout;
        loop {
            match body.take(buf)? {
                Step::Done => return Ok(false),
                Step::Data(data) => {
                    out.bytes += data.len() as u64;
                    response::write_data(writer, delimit, data)
                        .await
                        .map_err(|_| HttpError::ClientGone)?;
                    continue;
                }
                Step::More => {}
            }
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            let timer = &mut *out.timer;
            let read = async {
                match idle {
                    Some(limit) => timer
                        .within(limit, read_via_scratch(up, buf, BODY_READ))
                        .await
                        .map_err(|_| HttpError::UpstreamTimeout),
                    None => Ok(read_via_scratch(up, buf, BODY_READ).await),
                }
            };
            let n = tokio::select! {
                // More of the body, its end, or the idle limit.
                r = read => r?,
                // Draining: an event stream ends here, between events.
                _ = self.draining.cancelled(), if endable => return Ok(true),
            };
            if matches!(n, Ok(0) | Err(_)) {
                body.at_eof()?;
            }
        }
    }
}

/// How the response side ended, when it ended well.
pub(super) struct Done {
    /// The client connection must not carry another request.
    pub(super) close: bool,
    /// The upstream connection may go back to the pool.
    pub(super) reusable: bool,
}

/// The response side's progress, and the connection's timer its waits
/// run on (here rather than one more argument at every level: each is
/// kept in the exchange's future, which an idle stream holds).
pub(super) struct Out<'t> {
    pub(super) status: u16,
    pub(super) head_sent: bool,
    pub(super) bytes: u64,
    timer: &'t mut ConnTimer,
}

impl<'t> Out<'t> {
    pub(super) fn new(timer: &'t mut ConnTimer) -> Out<'t> {
        Out {
            status: 0,
            head_sent: false,
            bytes: 0,
            timer,
        }
    }
}

/// Keeps `tidegate_http_streams_in_flight` up while a response body streams.
pub(super) struct Streaming(prometheus::IntGauge);

impl Streaming {
    pub(super) fn enter(gauge: &prometheus::IntGauge) -> Streaming {
        gauge.inc();
        Streaming(gauge.clone())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.dec();
    }
}
