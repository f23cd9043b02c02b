//! `[runtime] relay_io = "io_uring"` (issue #20, an experiment behind the
//! switch): established passthrough sessions with plain TCP on both legs
//! leave tokio's epoll for an io_uring of their worker thread. The
//! handshakes stay on tokio; the session is the same `relay::Session`
//! future with the same scanner, close handling, timers, drain and
//! metrics — only its two sockets change (`Socket`): bytes arrive by a
//! multishot receive into the worker's provided-buffer ring and leave by
//! sends that the worker's driver task submits together, one
//! `io_uring_enter` per pass for all of its sessions.
//!
//! Only with `layout = "thread_per_core"` (validated): a ring belongs to
//! one thread and so do its sessions. If a worker cannot set up its ring
//! (io_uring disabled, too old a kernel, locked memory), it says so once,
//! counts it in `tidegate_relay_io_fallbacks_total` and relays on epoll.
#![allow(unsafe_code)]

mod driver;
mod socket;

pub use socket::Socket;

use crate::io::Io;
use driver::{Driver, Step};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;

/// This thread's ring, set up when its first session is adopted.
enum State {
    Untried,
    /// Setting up failed: this worker relays on epoll.
    Off,
    On(Box<Driver>),
}

thread_local! {
    static RING: RefCell<State> = const { RefCell::new(State::Untried) };
}

/// Run `f` on this thread's driver; `None` if it has none (or is busy,
/// which the single-threaded use here never makes it).
fn with_driver<R>(f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    RING.with(|r| match &mut *r.try_borrow_mut().ok()? {
        State::On(d) => Some(f(d)),
        _ => None,
    })
}

/// Hand a session's sockets to this worker's ring if both legs are plain
/// TCP; otherwise, or if the worker has no ring, they stay as they are.
/// `fallbacks` counts a worker whose ring could not be set up. Must run
/// on the worker's runtime. An error: a socket could not leave tokio's
/// epoll, and the session is lost.
pub fn adopt(legs: (Io, Io), fallbacks: &prometheus::IntCounter) -> io::Result<(Io, Io)> {
    let (Io::Tcp(client), Io::Tcp(upstream)) = legs else {
        return Ok(legs);
    };
    if !ready(fallbacks) {
        return Ok((Io::Tcp(client), Io::Tcp(upstream)));
    }
    let client = into_ring(client)?;
    let upstream = into_ring(upstream)?;
    Ok((client, upstream))
}

/// Take a socket off tokio's epoll into a slot of the ring.
fn into_ring(tcp: tokio::net::TcpStream) -> io::Result<Io> {
    let std = tcp.into_std()?;
    // The ring makes its own non-blocking attempts and waits by polling.
    std.set_nonblocking(false)?;
    match with_driver(|d| d.insert(std)) {
        Some(slot) => Ok(Io::Uring(Socket::new(slot))),
        None => Err(io::Error::other("io_uring driver busy")),
    }
}

/// True once this thread has a ring (set up on first use).
fn ready(fallbacks: &prometheus::IntCounter) -> bool {
    RING.with(|r| {
        let mut state = r.borrow_mut();
        if let State::Untried = *state {
            *state = match start() {
                Ok(d) => State::On(d),
                Err(e) => {
                    tracing::warn!(error = %e, "relay_io = \"io_uring\": cannot set up io_uring on this worker; relaying on epoll");
                    fallbacks.inc();
                    State::Off
                }
            };
        }
        matches!(*state, State::On(_))
    })
}

/// Create the ring, its eventfd and the driver task.
fn start() -> io::Result<Box<Driver>> {
    // SAFETY: eventfd takes no pointers; the result is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let driver = Driver::new(&eventfd)?;
    // SAFETY: the `AsyncFd` owns the descriptor, which stays open until
    // it is dropped.
    let signal = unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    tokio::spawn(Drive { signal });
    Ok(Box::new(driver))
}

/// The driver task: passes over the ring until nothing is queued, then
/// sleeps on the ring's eventfd.
struct Drive {
    signal: AsyncFd<OwnedFd>,
}

/// Passes per poll before the task yields to the sessions it woke.
const PASSES: usize = 4;

impl Future for Drive {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..PASSES {
            match with_driver(|d| d.step(cx.waker())) {
                None => return Poll::Ready(()),
                Some(Step::Yield) => {
                    // Sessions woken by completions run first and queue
                    // their sends; the next pass submits them together.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(Step::Idle) => {}
            }
            match self.signal.poll_read_ready(cx) {
                // The eventfd is not read: tokio's epoll is edge-triggered
                // and every signal of the ring is a new edge, so clearing
                // tokio's readiness is enough (one system call less).
                Poll::Ready(Ok(mut guard)) => {
                    if std::env::var_os("TG_URING_READ").is_some() {
                        let mut b = [0u8; 8];
                        // SAFETY: test only
                        unsafe {
                            libc::read(
                                std::os::fd::AsRawFd::as_raw_fd(self.signal.get_ref()),
                                b.as_mut_ptr() as *mut _,
                                8,
                            )
                        };
                    }
                    guard.clear_ready()
                }
                Poll::Ready(Err(e)) => {
                    tracing::warn!(error = %e, "io_uring eventfd failed");
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
