//! One side of a relayed session: the socket, what arrives from it (its
//! frame scanner), what waits to go to it, and where its close handshake
//! stands.

use super::scan::{Scanner, Stop};
use crate::io::Io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// A Close of the gateway's own, waiting for a frame boundary.
#[derive(Debug, Clone, Copy)]
pub struct GatewayClose {
    pub code: u16,
    pub reason: &'static str,
    /// Hold it until the other leg has finished closing (used when this leg
    /// broke the protocol: the innocent side hears first, and whatever it
    /// still sends reaches this leg in order).
    pub after_other: bool,
}

impl GatewayClose {
    /// The Close for the side that did nothing wrong when `failed` broke the
    /// protocol, went away or stopped answering: the upstream hears 1001
    /// (its client is going away), the client 1014 (bad gateway). `reasons`
    /// is [if the client failed, if the upstream failed].
    pub fn to_other_side(failed: Side, reasons: [&'static str; 2]) -> GatewayClose {
        let (code, reason) = match failed {
            Side::Client => (1001, reasons[0]),
            Side::Upstream => (1014, reasons[1]),
        };
        GatewayClose {
            code,
            reason,
            after_other: false,
        }
    }
}

pub struct Leg {
    pub io: Io,
    pub side: Side,
    /// Frames arriving from this peer.
    pub scanner: Scanner,
    /// Where the last scan of this peer's bytes stopped early, to act on
    /// once the bytes before it are passed on.
    pub pending_stop: Option<Stop>,
    /// Bytes for this peer that its socket has not taken yet. Empty and
    /// unallocated unless the peer is slow: while it holds bytes, the other
    /// side is not read (backpressure).
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_pos: usize,
    /// TLS: bytes sit in rustls until flushed.
    need_flush: bool,
    /// The peer's read side ended (EOF or error).
    pub rx_done: bool,
    /// Nothing more is read from the peer (it broke the protocol, or its
    /// close has been seen).
    pub rx_stopped: bool,
    /// Nothing more goes to this peer: writing failed or we gave up on it.
    pub dead: bool,
    /// The peer sent a Close frame, with this code.
    pub close_in: Option<Option<u16>>,
    /// A Close frame has been queued to the peer (forwarded or our own).
    pub close_out: bool,
    pub close_wanted: Option<GatewayClose>,
    /// A keepalive ping should be inserted at the next boundary.
    pub ping_wanted: bool,
    /// Last sign of life from the peer: bytes read from it, or bytes it
    /// took off `out` after its socket had been full (a slow reader that
    /// keeps reading is alive even when its pong is stuck behind our data).
    pub last_rx: Instant,
    /// When our outstanding ping was queued.
    pub ping_sent: Option<Instant>,
}

impl Leg {
    pub fn new(io: Io, side: Side, now: Instant) -> Self {
        Leg {
            io,
            side,
            scanner: Scanner::new(side == Side::Client),
            pending_stop: None,
            out: Vec::new(),
            out_pos: 0,
            need_flush: false,
            rx_done: false,
            rx_stopped: false,
            dead: false,
            close_in: None,
            close_out: false,
            close_wanted: None,
            ping_wanted: false,
            last_rx: now,
            ping_sent: None,
        }
    }

    /// True while bytes for this peer are still buffered in the gateway.
    pub fn blocked(&self) -> bool {
        self.out_pos < self.out.len() || self.need_flush
    }

    /// Frames towards an upstream are masked (the gateway is its client).
    pub fn masks(&self) -> bool {
        self.side == Side::Upstream
    }

    /// Give up on this peer: drop whatever waits for it.
    pub fn kill(&mut self) {
        self.dead = true;
        self.rx_stopped = true;
        self.out = Vec::new();
        self.out_pos = 0;
        self.need_flush = false;
    }

    /// Write `data` now as far as the socket takes it; keep the rest.
    pub fn send(&mut self, cx: &mut Context<'_>, data: &[u8]) {
        if self.dead || data.is_empty() {
            return;
        }
        if self.blocked() {
            self.out.extend_from_slice(data);
            return;
        }
        let mut at = 0;
        while at < data.len() {
            match Pin::new(&mut self.io).poll_write(cx, &data[at..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.kill();
                    return;
                }
                Poll::Ready(Ok(n)) => at += n,
                Poll::Pending => break,
            }
        }
        if at < data.len() {
            self.out.extend_from_slice(&data[at..]);
        }
        self.need_flush = self.io.buffers_writes();
        self.flush(cx);
    }

    /// Queue bytes without writing (used before the first poll).
    pub fn queue(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
    }

    /// Push buffered bytes out. Returns true if anything moved.
    pub fn flush(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        while self.out_pos < self.out.len() && !self.dead {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_pos..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.kill(),
                Poll::Ready(Ok(n)) => {
                    self.out_pos += n;
                    moved = true;
                    self.need_flush = self.io.buffers_writes();
                }
                Poll::Pending => break,
            }
        }
        if self.out_pos >= self.out.len() && !self.out.is_empty() {
            // Drained: free the buffer, an idle connection holds none.
            self.out = Vec::new();
            self.out_pos = 0;
        }
        if self.need_flush && !self.dead && self.out.is_empty() {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.need_flush = false;
                    moved = true;
                }
                Poll::Ready(Err(_)) => self.kill(),
                Poll::Pending => {}
            }
        }
        moved
    }

    /// This leg's part of the session is over.
    /// (A peer we stopped reading because it broke the protocol is done
    /// once our Close has left: its reply is not waited for.)
    pub fn done(&self) -> bool {
        self.dead
            || (self.close_out
                && !self.blocked()
                && (self.close_in.is_some() || self.rx_done || self.rx_stopped))
    }
}
