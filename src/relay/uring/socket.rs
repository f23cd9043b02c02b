//! A socket owned by the worker's ring, as the relay sees it: an
//! `AsyncRead`/`AsyncWrite` whose reads take bytes the multishot receive
//! already put in provided buffers, and whose writes queue a send for the
//! driver's next `io_uring_enter`. So the relay's session logic (scanner,
//! close handshakes, timers, backpressure) is the epoll relay's, unchanged.
//!
//! A write returns Ready once its bytes are queued, until `SEND_BOUND`
//! bytes wait for the kernel: then Pending, and the session keeps the rest
//! in its leg's buffer and stops reading the other side, as it does when a
//! TCP socket is full.

use super::driver::{Driver, SEND_BOUND};
use super::with_driver;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket in a slot of this thread's ring. Only used on the worker
/// thread that adopted it (thread-per-core: a session never migrates).
pub struct Socket {
    slot: u32,
}

impl Socket {
    pub(super) fn new(slot: u32) -> Socket {
        Socket { slot }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Driver, u32) -> R) -> Option<R> {
        with_driver(|d| f(d, self.slot))
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "io_uring socket off its worker",
    )
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = self.with(|d, slot| {
            let n = d.read(slot, buf.initialize_unfilled());
            if n > 0 {
                buf.advance(n);
                d.rearm_if_needed(slot);
                return Poll::Ready(Ok(()));
            }
            let s = d.slot(slot);
            if s.eof {
                return Poll::Ready(Ok(()));
            }
            if s.rx_failed {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if !s.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.reader = Some(cx.waker().clone());
            }
            d.rearm_if_needed(slot);
            Poll::Pending
        });
        r.unwrap_or_else(|| Poll::Ready(Err(gone())))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.with(|d, slot| {
            let s = d.slot(slot);
            if s.tx_failed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if s.unsent() >= SEND_BOUND {
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            d.write(slot, data);
            Poll::Ready(Ok(data.len()))
        });
        r.unwrap_or_else(|| Poll::Ready(Err(gone())))
    }

    /// Ready once every queued byte has gone to the kernel.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = self.with(|d, slot| {
            let s = d.slot(slot);
            if s.tx_failed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if s.sending() {
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        });
        r.unwrap_or_else(|| Poll::Ready(Err(gone())))
    }

    /// Flush, then half-close: the FIN follows the last queued byte.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        let r = self.with(|d, slot| d.shutdown_write(slot));
        r.unwrap_or_else(|| Err(gone())).into()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.with(|d, slot| d.release(slot));
    }
}
