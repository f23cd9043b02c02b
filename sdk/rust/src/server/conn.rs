//! One mux connection from the gateway: the reader task that decodes each
//! binary WebSocket message into mux frames (docs/mux-protocol.md §2) and
//! dispatches them, and the writer task (see `outbox`).
//!
//! The reader never waits for the application: OPENs go to the server's
//! accept queue (full → REJECT 503), messages to bounded per-session
//! queues (full → that session is closed with 1008). A protocol error by
//! the gateway closes the connection with WebSocket Close 1002 (§7).
//! When the connection ends, its sessions wait for a RESUMED OPEN for the
//! resume grace, then finish with `Closed(1006)` (§6).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{FragmentCollectorRead, OpCode, WebSocket, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use super::incoming::Incoming;
use super::outbox::{self, Outbox};
use super::session::{Delivery, Event, SessionId, SessionShared};
use super::{table, ServerShared};
use crate::codec::{
    self, Close, CodecError, Frame, FrameType, OpenBody, HEADER_LEN, KIND_CONTINUATION, KIND_TEXT,
};

/// Fewest entries at which the session map is pruned.
const MIN_PRUNE: usize = 64;

/// A session as this connection's reader knows it.
struct Local {
    /// The session (it may have moved to another connection since).
    shared: Arc<SessionShared>,
    /// A message whose last fragment has not arrived: its kind and bytes.
    partial: Option<(u8, BytesMut)>,
}

/// The reader's state.
struct Reader {
    /// This connection's process-wide unique number (sessions record which
    /// connection they are on).
    conn: u64,
    /// `X-Tidegate-Instance` of the gateway: half of every session key.
    instance: Arc<str>,
    /// Frames to the gateway.
    outbox: Arc<Outbox>,
    /// Sessions opened or resumed on this connection.
    sessions: HashMap<u32, Local>,
    /// Configuration and the accept queue.
    server: Arc<ServerShared>,
    /// Size of `sessions` at which entries of sessions that finished or
    /// moved are dropped (the gateway sends nothing more for an id it
    /// closed, so such entries are not removed by traffic).
    prune_at: usize,
}

/// Serve one upgraded mux connection until it ends.
pub(crate) async fn run(
    server: Arc<ServerShared>,
    conn: u64,
    instance: Arc<str>,
    peer: SocketAddr,
    ws: WebSocket<TokioIo<Upgraded>>,
) {
    let span = tracing::info_span!("mux", %peer, conn, instance = %instance);
    async move {
        let config = server.config.clone();
        let (read, write) = ws.split(tokio::io::split);
        let outbox = Arc::new(Outbox::new(config.connection_queue_bytes));
        server.register(conn, outbox.clone());
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox::write_loop(&outbox, write).await }.in_current_span())
        };
        let mut read = read;
        read.set_auto_close(false);
        read.set_auto_pong(false);
        // One WebSocket message holds at most a batch, or one frame alone.
        read.set_max_message_size(config.max_frame_bytes as usize + HEADER_LEN + 1);
        let mut reader = Reader {
            conn,
            instance,
            outbox: outbox.clone(),
            sessions: HashMap::new(),
            server: server.clone(),
            prune_at: MIN_PRUNE,
        };
        tracing::debug!("mux connection open");
        reader.read_loop(FragmentCollectorRead::new(read)).await;
        outbox.end();
        let _ = writer.await;
        server.unregister(conn);
        reader.detach_all();
        tracing::debug!("mux connection closed");
    }
    .instrument(span)
    .await
}

/// The obligated-send hook of fastwebsockets; unused (auto close and auto
/// pong are off: the reader answers through the outbox).
fn no_send(_: fastwebsockets::Frame<'_>) -> std::future::Ready<Result<(), Infallible>> {
    std::future::ready(Ok(()))
}

impl Reader {
    async fn read_loop(
        &mut self,
        mut ws: FragmentCollectorRead<tokio::io::ReadHalf<TokioIo<Upgraded>>>,
    ) {
        loop {
            let frame = match ws.read_frame(&mut no_send).await {
                Ok(f) => f,
                Err(e) => {
                    if let Some(code) = ws_error_code(&e) {
                        self.outbox.shut(code, "");
                    }
                    tracing::debug!(error = %e, "mux connection read ended");
                    return;
                }
            };
            match frame.opcode {
                OpCode::Binary => {
                    let msg = match frame.payload {
                        fastwebsockets::Payload::Bytes(b) => b.freeze(),
                        other => Bytes::from(Vec::from(other)),
                    };
                    if let Err(e) = self.on_message(msg) {
                        tracing::warn!(error = %e, "gateway broke the mux protocol");
                        self.outbox.shut(1002, e.label());
                        return;
                    }
                }
                OpCode::Text => {
                    self.outbox.shut(1002, CodecError::TextMessage.label());
                    return;
                }
                OpCode::Close => {
                    // Answer with the gateway's code (RFC 6455 §5.5.1).
                    match Close::decode(&frame.payload) {
                        Ok(c) => self.outbox.shut(c.code.unwrap_or(1000), ""),
                        Err(_) => self.outbox.shut(1002, ""),
                    }
                    return;
                }
                OpCode::Ping => self.outbox.ws_pong(Bytes::from(Vec::from(frame.payload))),
                OpCode::Pong | OpCode::Continuation => {}
            }
        }
    }

    /// Every mux frame of one WebSocket message, in order.
    fn on_message(&mut self, msg: Bytes) -> Result<(), CodecError> {
        for frame in codec::decode(msg, self.server.config.max_frame_bytes) {
            let frame = frame?;
            match frame.kind {
                FrameType::Open => self.on_open(&frame)?,
                FrameType::Message => self.on_data(frame),
                FrameType::Close => {
                    let close = Close::decode(&frame.body)?;
                    if let Some(local) = self.sessions.remove(&frame.session) {
                        local.shared.remote_close(self.conn, close);
                    }
                }
                FrameType::Ping => {
                    self.outbox.push_control(Frame::pong(frame.body));
                }
                FrameType::Pong => {}
                FrameType::Accept
                | FrameType::Reject
                | FrameType::Goaway
                | FrameType::Subscribe
                | FrameType::Unsubscribe
                | FrameType::Publish => return Err(CodecError::WrongDirection(frame.kind)),
            }
        }
        Ok(())
    }

    fn on_open(&mut self, frame: &Frame) -> Result<(), CodecError> {
        let open: OpenBody = frame.json()?;
        let id = SessionId {
            instance: self.instance.clone(),
            id: frame.session,
        };
        if frame.resumed() {
            if let Some(shared) = table::get(&id) {
                if shared.reattach(self.conn, &self.outbox) {
                    tracing::debug!(session = frame.session, "session resumed");
                    self.sessions.insert(
                        frame.session,
                        Local {
                            shared,
                            partial: None,
                        },
                    );
                    return Ok(());
                }
            }
        }
        if let Some(old) = self.sessions.get(&frame.session) {
            if old.shared.attached_to(self.conn) {
                // Ids are not reused while a session lives (§3): a second
                // OPEN for a live id is ignored rather than trusted.
                tracing::warn!(session = frame.session, "OPEN for a live session ignored");
                return Ok(());
            }
        }
        if self.sessions.len() >= self.prune_at {
            let conn = self.conn;
            self.sessions.retain(|_, l| l.shared.attached_to(conn));
            // Amortised: the next prune is after as many inserts again.
            self.prune_at = (self.sessions.len() * 2).max(MIN_PRUNE);
        }
        let cfg = &self.server.config;
        let (shared, events) = SessionShared::new(
            id,
            self.conn,
            self.outbox.clone(),
            cfg.session_queue_messages,
            cfg.session_queue_bytes,
        );
        self.sessions.insert(
            frame.session,
            Local {
                shared: shared.clone(),
                partial: None,
            },
        );
        let incoming = Incoming::new(open, frame.resumed(), shared, events);
        // Full or no application: the Incoming comes back and is dropped,
        // which answers REJECT 503.
        if let Err(e) = self.server.incoming.try_send(incoming) {
            tracing::warn!(session = frame.session, "accept queue full: OPEN rejected");
            drop(e);
        }
        Ok(())
    }

    /// A MESSAGE: join fragments, hand whole messages to the session.
    fn on_data(&mut self, frame: Frame) {
        let Some(local) = self.sessions.get_mut(&frame.session) else {
            return; // unknown id: ignored (§3)
        };
        let kind = frame.message_kind();
        let fin = frame.fin();
        let max = self.server.config.max_message_bytes;
        // The codec let only continuation, text and binary through.
        let whole = match (kind == KIND_CONTINUATION, local.partial.take()) {
            (true, None) | (false, Some(_)) => Err(Close::new(1002, "fragment out of order")),
            (true, Some((k, mut buf))) => {
                if buf.len() + frame.body.len() > max {
                    Err(Close::new(1009, "message too big"))
                } else {
                    buf.extend_from_slice(&frame.body);
                    Ok((k, buf.freeze()))
                }
            }
            (false, None) if frame.body.len() > max => Err(Close::new(1009, "message too big")),
            (false, None) => Ok((kind, frame.body)),
        };
        let (k, body) = match whole {
            Ok(w) => w,
            Err(close) => {
                let local = self
                    .sessions
                    .remove(&frame.session)
                    .expect("looked up above");
                local.shared.fail(self.conn, close);
                return;
            }
        };
        if !fin {
            local.partial = Some((k, BytesMut::from(&body[..])));
            return;
        }
        let event = if k == KIND_TEXT {
            match String::from_utf8(body.to_vec()) {
                Ok(t) => Event::Text(t),
                Err(_) => {
                    let local = self
                        .sessions
                        .remove(&frame.session)
                        .expect("looked up above");
                    local
                        .shared
                        .fail(self.conn, Close::new(1007, "invalid UTF-8"));
                    return;
                }
            }
        } else {
            Event::Binary(body)
        };
        match local.shared.deliver(self.conn, event) {
            Delivery::Queued => {}
            Delivery::Gone | Delivery::SlowConsumer => {
                self.sessions.remove(&frame.session);
            }
        }
    }

    /// The connection ended: accepted sessions wait for a resume.
    fn detach_all(&mut self) {
        let waiting: Vec<Arc<SessionShared>> = self
            .sessions
            .drain()
            .filter_map(|(_, l)| l.shared.detach(self.conn).then_some(l.shared))
            .collect();
        if waiting.is_empty() {
            return;
        }
        let grace = self.server.resume_grace();
        let conn = self.conn;
        tracing::debug!(sessions = waiting.len(), ?grace, "sessions wait for resume");
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for s in waiting {
                s.expire(conn);
            }
        });
    }
}

/// The WebSocket Close code owed for a read error (none for I/O errors and
/// a peer that just went away).
fn ws_error_code(e: &WebSocketError) -> Option<u16> {
    match e {
        WebSocketError::ConnectionClosed
        | WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_) => None,
        WebSocketError::FrameTooLarge => Some(1009),
        WebSocketError::InvalidUTF8 => Some(1007),
        _ => Some(1002),
    }
}
