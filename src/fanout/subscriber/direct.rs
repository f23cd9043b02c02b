//! Direct delivery: a delivery is meant to cost one send. When the
//! session's task is idle with nothing on its way to the client (it says
//! so with [`Subscriber::set_clear`]), its queue is empty, its client is
//! plain TCP and the publish runs on the session's own worker thread, the
//! publisher writes the shared frame to the client's socket itself — no
//! queue entry, no wake-up, no poll of the session. Same thread means the
//! session's task cannot be writing at that moment; everything else
//! (another worker, TLS, a socket that is full, a session mid-message)
//! takes the queue. The session's own writes check [`Subscriber::take_rest`]
//! first: the tail of a frame the socket took only in part.

use super::{wake_unlocked, Delivery, State, Subscriber};
use crate::fanout::SharedFrame;
use bytes::Bytes;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::ThreadId;

/// The client's socket as the publisher writes to it: a duplicate of the
/// session's descriptor (the same socket, already non-blocking), used only
/// on `thread`, where the session's task lives. Shared (`Arc`) so that a
/// batched send keeps the descriptor open until the kernel has written it,
/// even if the session leaves meanwhile.
pub(super) struct Sink {
    pub(super) socket: Arc<std::net::TcpStream>,
    pub(super) thread: ThreadId,
    /// The descriptor's place outside the clients' share (`crate::fds`).
    _extra: crate::fds::Extra,
}

/// What [`Subscriber::offer`] decided.
pub(in crate::fanout) enum Offer {
    /// Delivered (or refused, or queued) already.
    Done(Delivery),
    /// The frame may go to this socket directly; the caller writes it and
    /// reports the result through [`Subscriber::finish_direct`].
    Direct(Arc<std::net::TcpStream>),
}

impl Subscriber {
    /// Let publishes on this thread write to `client` directly (plain TCP
    /// only; a TLS session's bytes go through its rustls state). The
    /// duplicate descriptor is given back when the session leaves. If it
    /// cannot be made (none left over by the connection cap, or the
    /// descriptor limit), delivery goes through the queue.
    pub fn attach(&self, client: &crate::io::Io) {
        crate::fanout::worker::settle(self);
        let crate::io::Io::Tcp(tcp) = client else {
            return;
        };
        // On a work-stealing runtime a task moves between threads: the
        // session could be writing on another thread while a publish
        // writes here. Only a current-thread worker keeps them apart.
        let current = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !current || self.lock().sink.is_some() {
            return;
        }
        // Only from the descriptors the connection cap leaves over.
        let Some(extra) = crate::fds::EXTRA.take() else {
            self.hub.metrics.no_descriptor.inc();
            return;
        };
        let Ok(fd) = std::os::fd::AsFd::as_fd(tcp).try_clone_to_owned() else {
            return;
        };
        let mut s = self.lock();
        if !s.left {
            s.sink = Some(Sink {
                socket: Arc::new(std::net::TcpStream::from(fd)),
                thread: std::thread::current().id(),
                _extra: extra,
            });
        }
    }

    /// The session's task says whether a frame may be written to its
    /// client directly now (see `clear`).
    pub fn set_clear(&self, clear: bool) {
        self.clear.store(clear, Ordering::Relaxed);
    }

    /// The tail of a directly sent frame, which the session must write
    /// before anything else; and the tally of frames sent directly since
    /// the last call.
    pub fn take_rest(&self) -> (Option<Bytes>, u64) {
        let mut s = self.lock();
        (s.rest.take(), std::mem::take(&mut s.sent))
    }

    /// The socket a frame may be written to directly now, if the module
    /// header's conditions hold.
    fn direct_sink<'s>(&self, s: &'s State, here: ThreadId) -> Option<&'s Sink> {
        if !s.queue.is_empty() || s.rest.is_some() || !self.clear.load(Ordering::Relaxed) {
            return None;
        }
        s.sink.as_ref().filter(|k| k.thread == here)
    }

    /// Account for a direct write of `frame` that returned `written`:
    /// `Some(true)` all of it, `Some(false)` part (the rest is kept for the
    /// session, which must be woken), `None` nothing (queue it).
    fn wrote(
        &self,
        s: &mut State,
        frame: &SharedFrame,
        written: std::io::Result<usize>,
    ) -> Option<bool> {
        let wire = frame.wire();
        match written {
            Ok(n) if n == wire.len() => {
                s.sent += 1;
                Some(true)
            }
            Ok(n) if n > 0 && n < wire.len() => {
                s.sent += 1;
                s.rest = Some(wire.slice(n..));
                self.clear.store(false, Ordering::Relaxed);
                Some(false)
            }
            // Full (or failing: the session's own write will find out).
            _ => {
                self.clear.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// Deliver a frame (the publisher's side, on thread `here`): written
    /// directly when the session allows it, else queued and the session
    /// woken. Never blocks beyond this short lock and a non-blocking send;
    /// a full queue gets the policy.
    pub fn deliver(&self, frame: &SharedFrame, here: ThreadId) -> Delivery {
        let s = self.lock();
        if s.overflowed || s.left {
            return Delivery::Refused;
        }
        let Some(sink) = self.direct_sink(&s, here) else {
            return self.enqueue(s, frame);
        };
        let written = (&*sink.socket).write(frame.wire());
        self.direct_result(s, frame, written)
    }

    /// The same decision as [`Subscriber::deliver`], for a caller that
    /// batches the direct sends: everything but the write itself is done
    /// here; a `Direct` socket is to be written and the result handed to
    /// [`Subscriber::finish_direct`] before anything else runs on this
    /// thread (the session's task included), so the bytes keep their
    /// place in the client's stream.
    pub(in crate::fanout) fn offer(&self, frame: &SharedFrame, here: ThreadId) -> Offer {
        let s = self.lock();
        if s.overflowed || s.left {
            return Offer::Done(Delivery::Refused);
        }
        match self.direct_sink(&s, here) {
            Some(sink) => Offer::Direct(Arc::clone(&sink.socket)),
            None => Offer::Done(self.enqueue(s, frame)),
        }
    }

    /// The result of writing `frame` to the socket [`Subscriber::offer`]
    /// gave: as [`Subscriber::deliver`] would have handled it.
    pub(in crate::fanout) fn finish_direct(
        &self,
        frame: &SharedFrame,
        written: std::io::Result<usize>,
    ) -> Delivery {
        let s = self.lock();
        if s.left {
            // Gone meanwhile: its queue and rest are dropped anyway.
            return Delivery::Refused;
        }
        self.direct_result(s, frame, written)
    }

    fn direct_result(
        &self,
        mut s: MutexGuard<'_, State>,
        frame: &SharedFrame,
        written: std::io::Result<usize>,
    ) -> Delivery {
        match self.wrote(&mut s, frame, written) {
            Some(true) => Delivery::Sent,
            Some(false) => {
                wake_unlocked(s);
                Delivery::Sent
            }
            None => self.enqueue(s, frame),
        }
    }
}
