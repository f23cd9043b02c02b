//! The client socket: frames queued for it and written with one vectored
//! write (gathered into one plain send when small, `io::poll_write_gathered`),
//! reads through the per-thread arena, and what the client's frames
//! mean for the session (data to the application, ping, close, violation).

use super::{
    MuxSession, Queues, ToClient, ARENA, ARENA_MIN, PIECES, PIECES_KEPT, READ_CHUNK, WRITE_BATCH,
};
use crate::access::Closer;
use crate::frame::{encode_header, HeaderBytes, Opcode, Violation};
use crate::mux::client::Piece;
use crate::mux::wire;
use crate::mux::{detach, QUEUED_FRAME_COST};
use bytes::{Bytes, BytesMut};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tidegate_mux::codec::{Close, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

impl MuxSession {
    pub(super) fn queue_client(&mut self, fin: bool, opcode: Opcode, payload: Bytes) {
        let header = encode_header(fin, opcode, payload.len(), None);
        self.queue_client_frame(header, payload);
    }

    /// Queue a frame whose header is made (edge compression sets RSV1).
    pub(super) fn queue_client_frame(&mut self, header: HeaderBytes, payload: Bytes) {
        let stalled = self.q.as_ref().is_some_and(|q| q.out_stalled);
        let payload = if stalled { detach(payload) } else { payload };
        let is_close = header.as_slice()[0] & 0x0F == u8::from(Opcode::Close);
        let t = ToClient { header, payload };
        self.route.mux_metrics.queued_bytes.add(t.cost() as i64);
        let q = self.queues();
        if is_close {
            // Nothing may follow the Close: a waiting pong goes first.
            if let Some(payload) = q.pong.take() {
                let header = encode_header(true, Opcode::Pong, payload.len(), None);
                q.out.push_back(ToClient { header, payload });
                q.pong_in_out = true;
            }
        }
        q.out_bytes += t.cost();
        q.out.push_back(t);
    }

    /// Answer a client ping: replaces an answer still waiting, so pings
    /// from a client that does not read cost one pong, not one each.
    pub(super) fn queue_pong(&mut self, payload: Bytes) {
        let cost = (payload.len() + QUEUED_FRAME_COST) as i64;
        let q = self.queues();
        // A slice of the client read arena; it waits if the client does
        // not read.
        let payload = if q.out_stalled {
            detach(payload)
        } else {
            payload
        };
        let old = q
            .pong
            .replace(payload)
            .map_or(0, |p| (p.len() + QUEUED_FRAME_COST) as i64);
        q.out_bytes = (q.out_bytes as i64 + cost - old) as usize;
        self.route.mux_metrics.queued_bytes.add(cost - old);
    }

    /// Move the waiting pong into `out` — next after the frame being
    /// written (a control frame may go between fragments) — unless one is
    /// there already.
    fn schedule_pong(q: &mut Queues) {
        if q.pong_in_out {
            return;
        }
        if let Some(payload) = q.pong.take() {
            let at = usize::from(q.written > 0).min(q.out.len());
            let header = encode_header(true, Opcode::Pong, payload.len(), None);
            q.out.insert(at, ToClient { header, payload });
            q.pong_in_out = true;
        }
    }

    /// Queue a Close for the client (once) and start the close deadline.
    pub(super) fn close_client(&mut self, code: u16, reason: &str, now: Instant) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        self.route.metrics.close("gateway", Some(code));
        self.queue_client(true, Opcode::Close, wire::close_payload(code, reason));
        self.deadline_close
            .get_or_insert(now + self.route.close_timeout);
    }

    pub(super) fn flush_client(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        let mut progress = false;
        let Some(q) = self.q.as_mut() else {
            return Ok(false);
        };
        loop {
            Self::schedule_pong(q);
            if q.out.is_empty() {
                break;
            }
            // On the stack: a write allocates nothing.
            let mut slices = [IoSlice::new(&[]); 2 * WRITE_BATCH];
            let mut count = 0;
            let mut skip = q.written;
            for t in q.out.iter().take(WRITE_BATCH) {
                for part in [t.header.as_slice(), &t.payload[..]] {
                    if skip >= part.len() {
                        skip -= part.len();
                    } else {
                        slices[count] = IoSlice::new(&part[skip..]);
                        count += 1;
                        skip = 0;
                    }
                }
            }
            let slices = &slices[..count];
            let n = match crate::io::poll_write_gathered(&mut self.client, cx, slices) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(n)) => n,
            };
            progress = true;
            q.written += n;
            while let Some(front) = q.out.front() {
                let len = front.header.as_slice().len() + front.payload.len();
                if q.written < len {
                    break;
                }
                q.written -= len;
                let cost = front.cost();
                q.pong_in_out &= !front.is_pong();
                q.out_bytes -= cost;
                self.route.mux_metrics.queued_bytes.sub(cost as i64);
                q.out.pop_front();
            }
        }
        if q.out.is_empty() {
            if q.out_stalled {
                q.out_stalled = false;
                self.inbox.set_stalled(false);
            }
        } else if !q.out_stalled {
            // The client's socket is full: what waits from here on, here
            // or in the inbox, must not hold the application's read
            // buffers.
            q.out_stalled = true;
            self.inbox.set_stalled(true);
            for t in q.out.iter_mut() {
                t.payload = detach(std::mem::take(&mut t.payload));
            }
            q.pong = q.pong.take().map(detach);
        }
        if self.client.buffers_writes() {
            if let Poll::Ready(Err(_)) = Pin::new(&mut self.client).poll_flush(cx) {
                return Err(());
            }
        }
        Ok(progress)
    }

    // ------------------------------------------------------------ from the client

    pub(super) fn read_client(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<bool> {
        let read = ARENA.with(|cell| {
            let mut arena = cell.borrow_mut();
            if arena.len() < ARENA_MIN {
                *arena = BytesMut::zeroed(READ_CHUNK);
            }
            let mut rb = ReadBuf::new(&mut arena[..]);
            match Pin::new(&mut self.client).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    let n = rb.filled().len();
                    Poll::Ready(Some(arena.split_to(n)))
                }
                Poll::Ready(_) => Poll::Ready(None),
            }
        });
        match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(chunk)) => {
                self.on_client_bytes(chunk, now);
                Poll::Ready(true)
            }
            Poll::Ready(None) => {
                // The client is gone without (or after) its Close.
                self.log_close(Closer::Client, None, "client went away");
                self.client_done = true;
                if !self.close_sent {
                    self.close_sent = true;
                    self.deadline_close = Some(now);
                }
                self.close_app(1006, "client connection lost");
                Poll::Ready(true)
            }
        }
    }

    pub(super) fn on_client_bytes(&mut self, chunk: BytesMut, now: Instant) {
        self.last_rx = now;
        self.ping_sent = false;
        let mut pieces = PIECES.take();
        let result = self.reader.feed(chunk, self.route.limits, &mut pieces);
        for p in pieces.drain(..) {
            self.on_client_piece(p, now);
        }
        // A read of thousands of tiny frames does not keep its list.
        if pieces.capacity() <= PIECES_KEPT {
            PIECES.set(pieces);
        }
        let messages = std::mem::take(&mut self.reader.messages);
        if messages > 0 {
            self.data_seen(now);
            self.route.metrics.messages_c2u.inc_by(messages);
            if let Some(a) = &mut self.access {
                a.from_client(messages, 0);
            }
        }
        if let Err(v) = result {
            self.violation(v, now);
        }
    }

    pub(super) fn on_piece(&mut self, piece: Piece, now: Instant) {
        if self.client_done {
            return;
        }
        match piece {
            Piece::Data {
                kind, fin, payload, ..
            } => {
                if self.close_sent || self.app_done {
                    return; // closing: data is discarded
                }
                self.route.metrics.bytes_c2u.inc_by(payload.len() as u64);
                if let Some(a) = &mut self.access {
                    a.from_client(0, payload.len() as u64);
                }
                // An empty slice would still keep the whole read arena
                // alive while it waits in a queue.
                let payload = if payload.is_empty() {
                    Bytes::new()
                } else {
                    payload
                };
                self.queue_app(Frame::message(self.id, kind, fin, payload));
            }
            Piece::Ping(p) => {
                if !self.close_sent {
                    self.queue_pong(p);
                }
            }
            Piece::Pong => {}
            Piece::Close(code, reason) => {
                self.client_done = true;
                self.client_close_counted = true;
                self.route.metrics.close("client", code);
                self.log_close(Closer::Client, code, "client closed");
                let echo = match code {
                    Some(c) => wire::close_payload(c, &reason),
                    None => Bytes::new(),
                };
                if !self.close_sent {
                    self.close_sent = true;
                    self.queue_client(true, Opcode::Close, echo);
                }
                self.deadline_close
                    .get_or_insert(now + self.route.close_timeout);
                match code {
                    Some(c) => self.close_app(c, &reason),
                    // No status: an empty CLOSE body means the same.
                    None => {
                        if !self.app_done {
                            self.app_done = true;
                            let f = Frame::close(self.id, &Close::default());
                            self.queue_app(f);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn violation(&mut self, v: Violation, now: Instant) {
        self.client_done = true;
        self.log_close(Closer::Client, None, "client violation");
        self.close_client(v.close_code(), v.reason(), now);
        self.close_app(v.close_code(), v.reason());
    }
}
