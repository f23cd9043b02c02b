//! One byte-stream type for every socket the relay touches: plain TCP, a TLS
//! server session (client leg on a TLS listener) or a TLS client session
//! (`wss://` upstream). TLS streams are boxed so the common plain case stays
//! small in the per-connection state.

pub mod direct;

use std::io;
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
