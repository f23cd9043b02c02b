//! One byte-stream type for every socket the relay touches: plain TCP, a TLS
//! server session (client leg on a TLS listener) or a TLS client session
//! (`wss://` upstream). TLS streams are boxed so the common plain case stays
//! small in the per-connection state.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub enum Io {
    Tcp(TcpStream),
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    /// TLS buffers writes inside rustls; they need a flush to reach the
    /// socket. Plain TCP writes go straight to the kernel.
    pub fn buffers_writes(&self) -> bool {
        !matches!(self, Io::Tcp(_))
    }

    pub fn is_tls(&self) -> bool {
        self.buffers_writes()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Io::TlsServer($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Io::TlsClient($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::TlsServer(s) => s.is_write_vectored(),
            Io::TlsClient(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// The next connection on `listener`, or `None` once `stop` is cancelled.
///
/// When the descriptor table is full (EMFILE/ENFILE) a waiting client is
/// not left in the backlog: the spare descriptor (`crate::fds`) is given
/// back, one client is accepted with it and handed to `refuse` (which
/// answers it; it is closed when `refuse` returns), and the spare is taken
/// again. Without a spare, and on other accept errors, the loop logs and
/// retries after a short pause instead of spinning. Shared by the
/// gateway's listeners, the admin listener and the echo server.
pub async fn accept_until(
    listener: &TcpListener,
    stop: &CancellationToken,
    what: &str,
    refuse: impl Fn(TcpStream),
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            // Stop: the caller closes the listening socket.
            _ = stop.cancelled() => return None,
            // A client connected, or accept failed.
            r = listener.accept() => r,
        };
        match accepted {
            Ok(x) => return Some(x),
            Err(e) if crate::fds::table_full(&e) && crate::fds::release_spare() => {
                // One descriptor is free now: answer the client at the head
                // of the backlog with it (Pending: nobody is waiting).
                let next = std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
                if let Poll::Ready(Ok((tcp, peer))) = next {
                    tracing::debug!(listener = what, client = %peer, "descriptor table full: client refused");
                    refuse(tcp);
                }
                crate::fds::keep_spare();
            }
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                crate::fds::keep_spare();
            }
        }
    }
}

/// Read at most `room` bytes into `buf` through the worker thread's
/// scratch buffer (the relay's): a connection waiting for its next
/// request holds no read buffer of its own, yet a whole request head
/// arrives in one system call (reading into an empty `BytesMut` would
/// take 64 bytes, then the rest in a second call). `Ok(0)`: EOF.
pub async fn read_via_scratch<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut bytes::BytesMut,
    room: usize,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        crate::relay::SCRATCH_BUF.with(|cell| {
            // Borrowed within this one poll only, never across an await.
            let mut scratch = cell.borrow_mut();
            let len = room.min(scratch.len());
            let mut rb = ReadBuf::new(&mut scratch[..len]);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(rb.filled());
                    Poll::Ready(Ok(rb.filled().len()))
                }
            }
        })
    })
    .await
}

/// Write all of `buf`, as `AsyncWriteExt::write_all_buf` does, but a
/// single contiguous slice goes out as a plain write (`sendto` on TCP)
/// instead of a vectored write of one vector: tokio's `write_all_buf`
/// always takes the vectored path when the socket supports it, and the
/// kernel's `writev` (`vfs_writev`, the copy of the vector array) costs
/// more per call than `sendto` — the HTTP proxy writes one slice per
/// small response and per request head (docs/performance.md, HTTP
/// proxying, sixth round). Several slices still leave in one `writev`.
pub async fn write_all_buf<W, B>(w: &mut W, buf: &mut B) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    B: bytes::Buf,
{
    use tokio::io::AsyncWriteExt;
    while buf.has_remaining() {
        let chunk = buf.chunk();
        if chunk.len() == buf.remaining() {
            let n = chunk.len();
            w.write_all(chunk).await?;
            buf.advance(n);
            return Ok(());
        }
        if w.write_buf(buf).await? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Slices totalling at most this many bytes are gathered into one buffer
/// on the stack by [`poll_write_gathered`]: copying them costs a few dozen
/// nanoseconds, the kernel's vectored path about 0.7 µs more per call than
/// a plain send on this project's test machine (docs/performance.md, HTTP
/// proxying, sixth round).
pub const GATHER_MAX: usize = 512;

/// `poll_write_vectored`, except that several slices of `GATHER_MAX`
/// bytes or fewer in all are copied into one stack buffer and written with
/// a plain write (`sendto` on TCP) — a small frame's header and payload
/// leave in one send. Returns what the write returned: bytes from the start
/// of `slices`, possibly fewer than all.
pub fn poll_write_gathered<W: AsyncWrite + Unpin>(
    w: &mut W,
    cx: &mut Context<'_>,
    slices: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let total: usize = slices.iter().map(|s| s.len()).sum();
    if slices.len() > 1 && total <= GATHER_MAX {
        let mut buf = [0u8; GATHER_MAX];
        let mut at = 0;
        for s in slices {
            buf[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        return Pin::new(w).poll_write(cx, &buf[..total]);
    }
    Pin::new(w).poll_write_vectored(cx, slices)
}

#[cfg(test)]
mod tests {
    use super::{poll_write_gathered, write_all_buf, GATHER_MAX};
    use bytes::Buf;
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::AsyncWrite;

    /// A vectored writer (as a TCP socket is) that takes at most `max`
    /// bytes per call and records which kind of write each call was.
    struct Recorder {
        max: usize,
        out: Vec<u8>,
        calls: Vec<&'static str>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            self.calls.push("write");
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
            }
            self.calls.push("writev");
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn recorder(max: usize) -> Recorder {
        Recorder {
            max,
            out: Vec::new(),
            calls: Vec::new(),
        }
    }

    #[tokio::test]
    async fn one_slice_is_a_plain_write_several_are_one_vectored_write() {
        // A head with its small body copied behind it: one slice.
        let mut w = recorder(usize::MAX);
        let mut one = b"HTTP/1.1 200 OK\r\n\r\n".as_slice().chain(&b""[..]);
        write_all_buf(&mut w, &mut one).await.expect("written");
        assert_eq!(w.calls, ["write"]);
        assert_eq!(w.out, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(!one.has_remaining());

        let mut w = recorder(usize::MAX);
        let mut two = b"head".as_slice().chain(&b"body"[..]);
        write_all_buf(&mut w, &mut two).await.expect("written");
        assert_eq!(w.calls, ["writev"]);
        assert_eq!(w.out, b"headbody");
    }

    #[tokio::test]
    async fn short_writes_continue_where_they_stopped() {
        let mut w = recorder(5);
        let mut all = b"head".as_slice().chain(&b"body"[..]);
        write_all_buf(&mut w, &mut all).await.expect("written");
        assert_eq!(w.out, b"headbody");
        // Vectored while two slices are left, then a plain write of the
        // rest of the last one.
        assert_eq!(w.calls, ["writev", "write"]);
    }

    #[test]
    fn small_slices_are_gathered_into_one_plain_write() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let frame = [io::IoSlice::new(b"\x81\x05"), io::IoSlice::new(b"hello")];
        let mut w = recorder(usize::MAX);
        let n = poll_write_gathered(&mut w, &mut cx, &frame);
        assert!(matches!(n, Poll::Ready(Ok(7))));
        assert_eq!(
            (w.calls.as_slice(), w.out.as_slice()),
            (["write"].as_slice(), b"\x81\x05hello".as_slice())
        );

        // Over the bound: one vectored write, as before.
        let big = vec![7u8; GATHER_MAX];
        let frame = [
            io::IoSlice::new(b"\x82\x7e\x02\x00"),
            io::IoSlice::new(&big),
        ];
        let mut w = recorder(usize::MAX);
        let n = poll_write_gathered(&mut w, &mut cx, &frame);
        assert!(matches!(n, Poll::Ready(Ok(k)) if k == GATHER_MAX + 4));
        assert_eq!(w.calls, ["writev"]);

        // A short write reports how far it got, from the first slice.
        let frame = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")];
        let mut w = recorder(3);
        assert!(matches!(
            poll_write_gathered(&mut w, &mut cx, &frame),
            Poll::Ready(Ok(3))
        ));
        assert_eq!(w.out, b"abc");
    }
}
