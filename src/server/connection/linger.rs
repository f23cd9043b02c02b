//! Closing after a refusal without losing the refusal: the client may
//! still be sending (the body of a refused request, a pipelined request),
//! and closing a socket with unread bytes makes the kernel send a reset,
//! which can destroy the response before the client has read it. So the
//! gateway half-closes (its FIN follows the response) and reads what the
//! client still sends, discarding it, until the client closes too — a
//! "lingering close" (RFC 9112 §9.6), bounded in time and bytes so that a
//! client that keeps sending cannot hold the connection.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

/// The longest a lingering close lasts.
pub const LINGER_MAX: Duration = Duration::from_secs(2);

/// Silence from the client that ends the linger early: it has sent what
/// it had.
pub const LINGER_QUIET: Duration = Duration::from_millis(250);

/// The most bytes read and discarded while lingering.
pub const LINGER_BYTES: usize = 64 * 1024;

/// Read size while lingering (heap, only for connections that linger).
const CHUNK: usize = 4 * 1024;

/// Half-close `writer`, then discard what arrives on `reader` until the
/// client closes, goes quiet for [`LINGER_QUIET`], has sent
/// [`LINGER_BYTES`], or [`LINGER_MAX`] has passed.
pub async fn linger<R, W>(reader: &mut R, writer: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = Instant::now() + LINGER_MAX;
    if timeout_at(deadline, writer.shutdown()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut read = 0;
    while read < LINGER_BYTES {
        let quiet = timeout(LINGER_QUIET, reader.read(&mut buf));
        match timeout_at(deadline, quiet).await {
            Ok(Ok(Ok(n))) if n > 0 => read += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn reads_what_the_client_still_sends_then_ends_at_its_close() {
        let (mut ours, mut theirs) = duplex(1024);
        theirs
            .write_all(b"the rest of a refused body")
            .await
            .unwrap();
        let client = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap(); // our FIN
            drop(theirs); // then the client closes
            got
        });
        let (mut r, mut w) = tokio::io::split(&mut ours);
        linger(&mut r, &mut w).await;
        assert!(client.await.unwrap().is_empty(), "nothing but the FIN");
    }

    #[tokio::test]
    async fn a_client_that_keeps_sending_is_cut_off_by_the_byte_bound() {
        let (mut ours, mut theirs) = duplex(64 * 1024);
        let sender = tokio::spawn(async move {
            let chunk = [b'x'; 1024];
            while theirs.write_all(&chunk).await.is_ok() {}
        });
        let (mut r, mut w) = tokio::io::split(&mut ours);
        let started = Instant::now();
        linger(&mut r, &mut w).await;
        assert!(started.elapsed() <= LINGER_MAX);
        drop(ours);
        sender.await.unwrap();
    }
}
