//! A read buffer that exists only while it holds bytes.
//!
//! The edge relay reads frame headers a few bytes at a time, so it reads
//! through a small buffer (one system call brings a header and a small
//! payload). A `BufReader` would keep that buffer for the session's life;
//! an idle session would hold it on both sides. Here it is allocated for a
//! read and freed when the read came back empty-handed (`Pending`) or its
//! bytes are all taken, so an idle session holds none (issue #16's idle
//! memory target). The cost is one small allocation per read that waits.

use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

pin_project! {
    pub struct LazyBuf<R> {
        #[pin]
        inner: R,
        // Bytes read and not taken yet; no allocation when empty.
        buf: Vec<u8>,
        // How much of `buf` is taken.
        pos: usize,
        // Bytes per read.
        cap: usize,
    }
}

impl<R> LazyBuf<R> {
    pub fn new(cap: usize, inner: R) -> Self {
        LazyBuf {
            inner,
            buf: Vec::new(),
            pos: 0,
            cap,
        }
    }
}

/// Move what fits from `buf[*pos..]` into `out`; free `buf` once taken.
fn take(buf: &mut Vec<u8>, pos: &mut usize, out: &mut ReadBuf<'_>) {
    let n = out.remaining().min(buf.len() - *pos);
    out.put_slice(&buf[*pos..*pos + n]);
    *pos += n;
    if *pos == buf.len() {
        *buf = Vec::new();
        *pos = 0;
    }
}

impl<R: AsyncRead> LazyBuf<R> {
    /// Ready once a read would not wait: bytes are in the buffer, or the
    /// stream ended or failed (the next read says which). Nothing is
    /// taken, so a caller may stop waiting here without losing a byte —
    /// what lets an edge session wait for the upstream's next frame and
    /// a published message at once. A wait that comes back `Pending`
    /// holds no buffer, as a read does.
    pub fn poll_fill(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if *this.pos < this.buf.len() {
            return Poll::Ready(());
        }
        let mut buf = vec![0u8; *this.cap];
        let mut rb = ReadBuf::new(&mut buf);
        match this.inner.poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            // An error comes again from the next read of the socket.
            Poll::Ready(Err(_)) => Poll::Ready(()),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                buf.truncate(n);
                if n > 0 {
                    *this.buf = buf;
                    *this.pos = 0;
                }
                Poll::Ready(())
            }
        }
    }
}

impl<R: AsyncRead> AsyncRead for LazyBuf<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if *this.pos < this.buf.len() {
            take(this.buf, this.pos, out);
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= *this.cap {
            // A large read needs no buffer in between.
            return this.inner.poll_read(cx, out);
        }
        let mut buf = vec![0u8; *this.cap];
        let mut rb = ReadBuf::new(&mut buf);
        // Pending or an error: `buf` is freed on the way out.
        std::task::ready!(this.inner.poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n > 0 {
            // (At the end of the stream nothing is kept.)
            buf.truncate(n);
            *this.buf = buf;
            *this.pos = 0;
            take(this.buf, this.pos, out);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::LazyBuf;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_in_small_and_large_pieces_and_keeps_nothing_after() {
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut r = LazyBuf::new(512, &data[..]);
        let mut got = vec![0u8; 3];
        r.read_exact(&mut got).await.expect("3 bytes");
        let mut rest = vec![0u8; 4997];
        r.read_exact(&mut rest).await.expect("the rest");
        got.extend_from_slice(&rest);
        assert_eq!(got, data);
        assert_eq!(r.buf.capacity(), 0, "no buffer once drained");
        assert_eq!(r.read(&mut [0u8; 8]).await.expect("eof"), 0);
    }

    #[tokio::test]
    async fn a_fill_keeps_the_bytes_for_the_next_read() {
        let data = b"hello".to_vec();
        let mut r = LazyBuf::new(512, &data[..]);
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut r).poll_fill(cx)).await;
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut r).poll_fill(cx)).await;
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, data);
        assert_eq!(r.buf.capacity(), 0, "no buffer once drained");
    }
}
