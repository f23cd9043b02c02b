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
        buf.truncate(n);
        *this.buf = buf;
        *this.pos = 0;
        if n > 0 {
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
}
