//! Direct writes to an idle client socket: the one place that decides when
//! someone other than a session's own task may write a frame to that
//! session's client, and keeps what such a write leaves behind.
//!
//! A frame for a client normally goes into the session's queue and wakes
//! its task, which polls, writes and goes back to sleep — for a small frame
//! that wake-up and poll cost about as much as the send itself. Two
//! producers can skip them: a fan-out publish (`crate::fanout::Subscriber`)
//! and a mux connection reader handing over an application's MESSAGE
//! (`crate::mux::inbox`). Both go through a [`Direct`], one per session, so
//! their writes and their rules are the same and a session that receives
//! from both has one state for them.
//!
//! The rules, each needed for the byte stream to stay whole:
//! - the session's task says it is idle with nothing on its way to the
//!   client ([`Direct::set_clear`]: not inside a message, nothing queued
//!   or half-written, no Close) and clears that as soon as it is polled or
//!   handed work;
//! - the client is plain TCP (a TLS session's bytes go through its rustls
//!   state, which only the task owns) and the writer runs on the session's
//!   own worker thread, of a current-thread runtime — so the session's task
//!   cannot be writing at that moment;
//! - the frame (header and payload) goes out in one non-blocking write; a
//!   socket that takes none of it leaves the frame to the queue, one that
//!   takes part of it leaves the tail here ([`Direct::take_rest`]), which
//!   the session writes before anything else.
//!
//! The socket is a duplicate of the session's descriptor (the same socket,
//! already non-blocking). It never costs a client its place: it comes
//! from the connection cap's own share (a mux client when the cap counts
//! two descriptors per client) or from descriptors the cap does not need
//! ([`crate::fds::direct_slot`]), else there is no direct path for that
//! session; it is given back when the session ends ([`Direct::close`]).

use bytes::{Bytes, BytesMut};
use std::io::{IoSlice, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

/// What was written directly and not yet counted by the session: the
/// session adds it to its route's counters (per-session tallies, flushed by
/// the session as the data path's metrics rule asks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Published (fan-out) frames.
    pub published: u64,
    /// Whole application messages (mux).
    pub messages: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.published += other.published;
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

/// The result of offering a frame to [`Direct::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All of it is on the socket.
    Sent,
    /// Part of it is; the tail waits in [`Direct::take_rest`] and the
    /// caller must wake the session.
    Partly,
    /// Nothing was written: queue it as usual.
    Refused,
}

#[derive(Default)]
struct State {
    /// `None`: no direct writes (TLS, another runtime flavour, no spare
    /// descriptor, or the session is over).
    sink: Option<Sink>,
    /// The part of a frame the socket did not take.
    rest: Option<Bytes>,
    sent: Sent,
}

/// The client's socket as others write to it, on `thread` only.
struct Sink {
    socket: std::net::TcpStream,
    thread: ThreadId,
    /// One descriptor of the budget, given back with the socket.
    _slot: crate::fds::DirectSlot,
}

/// One session's direct-write handle (see the module header).
pub struct Direct {
    state: Mutex<State>,
    /// The session's task is idle with nothing on its way to the client.
    clear: AtomicBool,
}

impl Direct {
    /// A handle writing to `client`, if its rules can ever hold: plain TCP,
    /// on a current-thread runtime, and a descriptor to spare (the session
    /// holds `held` already: see [`crate::fds::direct_slot`]). Called on
    /// the session's own thread.
    pub fn attach(client: &super::Io, held: u64) -> Option<Arc<Direct>> {
        let super::Io::Tcp(tcp) = client else {
            return None;
        };
        // On a work-stealing runtime a task moves between threads: the
        // session could be writing on another thread while a producer
        // writes here. Only a current-thread worker keeps them apart.
        let current = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !current {
            return None;
        }
        let slot = crate::fds::direct_slot(held)?;
        let fd = std::os::fd::AsFd::as_fd(tcp).try_clone_to_owned().ok()?;
        let sink = Sink {
            socket: std::net::TcpStream::from(fd),
            thread: std::thread::current().id(),
            _slot: slot,
        };
        Some(Arc::new(Direct {
            state: Mutex::new(State {
                sink: Some(sink),
                ..State::default()
            }),
            clear: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic but a write; the state stays
        // consistent either way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's task says whether a frame may be written to its
    /// client directly now.
    pub fn set_clear(&self, clear: bool) {
        self.clear.store(clear, Ordering::Relaxed);
    }

    /// Is the session idle and clear (a cheap check before building a
    /// frame)?
    pub fn is_clear(&self) -> bool {
        self.clear.load(Ordering::Relaxed)
    }

    /// The tail of a frame written in part, which the session must write
    /// before anything else; and what was written since the last call.
    pub fn take_rest(&self) -> (Option<Bytes>, Sent) {
        let mut s = self.lock();
        (s.rest.take(), std::mem::take(&mut s.sent))
    }

    /// Write `head` + `body` (one frame) to the client now, if the module
    /// header's rules hold on thread `here`; `tally` is what the frame
    /// counts for once it is (even partly) on the socket. The caller holds
    /// whatever lock orders its own queue against this write, and has
    /// checked that queue is empty.
    pub fn send(&self, head: &[u8], body: &Bytes, here: ThreadId, tally: Sent) -> Outcome {
        if !self.is_clear() {
            return Outcome::Refused;
        }
        let mut s = self.lock();
        if s.rest.is_some() {
            return Outcome::Refused;
        }
        let Some(sink) = s.sink.as_ref().filter(|k| k.thread == here) else {
            return Outcome::Refused;
        };
        let total = head.len() + body.len();
        let written = if head.is_empty() {
            (&sink.socket).write(body)
        } else {
            (&sink.socket).write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
        };
        match written {
            Ok(n) if n == total => {
                s.sent.add(tally);
                Outcome::Sent
            }
            Ok(n) if n > 0 => {
                s.sent.add(tally);
                s.rest = Some(tail(head, body, n));
                self.set_clear(false);
                Outcome::Partly
            }
            // Full (or failing: the session's own write will find out).
            _ => {
                self.set_clear(false);
                Outcome::Refused
            }
        }
    }

    /// The session is over: no more direct writes; the duplicate
    /// descriptor is closed now, whoever still holds the handle.
    pub fn close(&self) {
        self.set_clear(false);
        let mut s = self.lock();
        s.sink = None;
        s.rest = None;
    }
}

/// What is left of `head` + `body` after `n` bytes were written. A tail
/// inside the header (the socket took fewer bytes than a header: almost
/// never) is copied together with the body.
fn tail(head: &[u8], body: &Bytes, n: usize) -> Bytes {
    if n >= head.len() {
        return body.slice(n - head.len()..);
    }
    let mut b = BytesMut::with_capacity(head.len() - n + body.len());
    b.extend_from_slice(&head[n..]);
    b.extend_from_slice(body);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_starts_where_the_socket_stopped() {
        let body = Bytes::from_static(b"payload");
        assert_eq!(&tail(b"hd", &body, 4)[..], b"yload");
        assert_eq!(&tail(b"hd", &body, 2)[..], b"payload");
        assert_eq!(&tail(b"hd", &body, 1)[..], b"dpayload");
        assert_eq!(&tail(b"", &body, 3)[..], b"load");
    }

    /// Written in part: the tail is kept, the handle stops taking frames
    /// until the session has taken it, and the tally counts the frame.
    #[tokio::test(flavor = "current_thread")]
    async fn a_partial_write_keeps_the_tail_for_the_session() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_peer, _) = listener.accept().await.unwrap();
        let io = super::super::Io::Tcp(client);
        let d = Direct::attach(&io, 1).expect("plain TCP on a current-thread runtime");
        let here = std::thread::current().id();
        let body = Bytes::from(vec![1u8; 32 << 20]);
        let one = Sent {
            messages: 1,
            bytes: body.len() as u64,
            ..Sent::default()
        };
        assert_eq!(
            d.send(b"h", &body, here, one),
            Outcome::Refused,
            "not clear"
        );
        d.set_clear(true);
        assert_eq!(d.send(b"h", &body, here, one), Outcome::Partly);
        assert!(!d.is_clear(), "a partial write ends the clear state");
        d.set_clear(true);
        assert_eq!(
            d.send(b"h", &body, here, one),
            Outcome::Refused,
            "tail first"
        );
        let (rest, sent) = d.take_rest();
        let rest = rest.expect("the tail");
        assert!(!rest.is_empty() && rest.len() < body.len());
        assert_eq!(sent, one);
        d.close();
        assert_eq!(d.send(b"h", &body, here, one), Outcome::Refused, "closed");
    }
}
