//! The response as the client gets it: a head rebuilt from the upstream's
//! parsed one (status, end-to-end headers; hop-by-hop ones and any the
//! upstream's `Connection` names are dropped) with the gateway's own
//! framing, then the body written chunk by chunk as it arrives — an SSE
//! event or a chunk of a streamed response leaves as soon as the upstream
//! wrote it. Trailers are dropped (docs/configuration.md, "HTTP").
//!
//! The head leaves together with whatever of the body is already in
//! ([`write_head`]): a small response is one write to the client, as
//! behind nginx, not a head and a body in two system calls.

use super::HttpError;
use crate::upstream::is_handshake_or_hop_header;
use bytes::{Buf, Bytes};
use hyper::body::{Body, Incoming};
use hyper::header::HeaderMap;
use hyper::StatusCode;
use std::fmt::Write;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Body pieces up to this size that are in when the head is ready are
/// copied behind it; a larger one goes from its own buffer in the same
/// vectored write (a copy would cost more than the call it saves).
const COPY_BEHIND_HEAD: usize = 4096;

/// How the body is delimited towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimit {
    /// No body may follow (HEAD, 204, 304).
    None,
    /// `Content-Length` as the upstream sent it.
    Length(u64),
    /// Chunked, re-framed by the gateway (HTTP/1.1 clients).
    Chunked,
    /// Until the connection closes (HTTP/1.0 client, unknown length).
    Close,
}

impl Delimit {
    /// How a response of `status` with `length` (known from the upstream's
    /// framing) goes to a client speaking HTTP/1.`minor`.
    pub fn choose(
        head_request: bool,
        status: StatusCode,
        length: Option<u64>,
        minor: u8,
    ) -> Delimit {
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Delimit::None;
        }
        match (length, minor) {
            (Some(n), _) => Delimit::Length(n),
            (None, 1) => Delimit::Chunked,
            (None, _) => Delimit::Close,
        }
    }
}

/// The client's response head.
pub fn head(status: StatusCode, headers: &HeaderMap, delimit: Delimit, close: bool) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let reason = status.canonical_reason().unwrap_or("Status");
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_u16());
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = out.into_bytes();
    for (name, value) in headers {
        let n = name.as_str();
        // A HEAD or 304 response keeps the upstream's length: it describes
        // the representation, no body follows.
        let keep_length = n == "content-length" && delimit == Delimit::None;
        if (is_handshake_or_hop_header(n) && !keep_length) || named.iter().any(|c| c == n) {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match delimit {
        Delimit::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Delimit::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Delimit::None | Delimit::Close => {}
    }
    if close || delimit == Delimit::Close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// What [`write_head`] sent of the body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub bytes: u64,
    /// The whole body (and its last chunk) went with the head.
    pub ended: bool,
}

/// Write the head followed by the body pieces hyper already holds, without
/// waiting for more (an event stream's head must not wait for its first
/// event): pieces up to [`COPY_BEHIND_HEAD`] are appended to the head, a
/// larger one rides in the same vectored write. An upstream error here is
/// still an error before anything reached the client.
pub async fn write_head<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut head: Vec<u8>,
    delimit: Delimit,
    body: &mut Incoming,
) -> Result<Sent, HttpError> {
    let mut sent = Sent::default();
    let mut large = None;
    loop {
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx)));
        let frame = match polled.await {
            Poll::Pending => break,
            Poll::Ready(None) => {
                sent.ended = true;
                if delimit == Delimit::Chunked {
                    head.extend_from_slice(b"0\r\n\r\n");
                }
                break;
            }
            Poll::Ready(Some(frame)) => frame.map_err(|e| HttpError::upstream(&e))?,
        };
        // Trailers are dropped.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        sent.bytes += data.len() as u64;
        if data.is_empty() {
            continue;
        }
        if data.len() > COPY_BEHIND_HEAD {
            large = Some(data);
            break;
        }
        frame_into(&mut head, delimit, &data);
    }
    let large = large.unwrap_or_default();
    let mut size = SizeLine::default();
    let tail: &[u8] = match (delimit, large.is_empty()) {
        (Delimit::Chunked, false) => {
            head.extend_from_slice(size.of(large.len()));
            b"\r\n"
        }
        _ => b"",
    };
    let mut all = Bytes::from(head).chain(large).chain(tail);
    w.write_all_buf(&mut all)
        .await
        .map_err(|_| HttpError::ClientGone)?;
    w.flush().await.map_err(|_| HttpError::ClientGone)?;
    Ok(sent)
}

/// Append one small piece of the body in the client's framing.
fn frame_into(out: &mut Vec<u8>, delimit: Delimit, data: &[u8]) {
    if delimit == Delimit::Chunked {
        out.extend_from_slice(SizeLine::default().of(data.len()));
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// A chunk-size line (`{len:x}\r\n`) built on the stack.
#[derive(Default)]
struct SizeLine([u8; 18]);

impl SizeLine {
    fn of(&mut self, len: usize) -> &[u8] {
        let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, b) in self.0[..digits].iter_mut().enumerate() {
            let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
            *b = b"0123456789abcdef"[nibble];
        }
        self.0[digits..digits + 2].copy_from_slice(b"\r\n");
        &self.0[..digits + 2]
    }
}

/// Write one piece of the body in the client's framing and flush it (so a
/// TLS client gets it now, not when a record fills).
pub async fn write_data<W: AsyncWrite + Unpin>(
    w: &mut W,
    delimit: Delimit,
    data: Bytes,
) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if delimit == Delimit::Chunked {
        let mut size = SizeLine::default();
        let mut all = size.of(data.len()).chain(data).chain(&b"\r\n"[..]);
        w.write_all_buf(&mut all).await?;
    } else {
        let mut data = data;
        w.write_all_buf(&mut data).await?;
    }
    w.flush().await
}

/// End the body: the last chunk for a chunked one (no trailers).
pub async fn finish<W: AsyncWrite + Unpin>(w: &mut W, delimit: Delimit) -> std::io::Result<()> {
    if delimit == Delimit::Chunked {
        w.write_all(b"0\r\n\r\n").await?;
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().expect("valid"));
        h.insert(
            "connection",
            "x-private, keep-alive".parse().expect("valid"),
        );
        h.insert("x-private", "1".parse().expect("valid"));
        h.insert("keep-alive", "timeout=5".parse().expect("valid"));
        h.insert("transfer-encoding", "chunked".parse().expect("valid"));
        h.insert("trailer", "x-t".parse().expect("valid"));
        let text = String::from_utf8(head(StatusCode::OK, &h, Delimit::Chunked, false))
            .expect("ascii head");
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn chunk_size_lines_are_lower_hex() {
        let mut s = SizeLine::default();
        assert_eq!(s.of(0), b"0\r\n");
        assert_eq!(s.of(13), b"d\r\n");
        assert_eq!(s.of(0x10000), b"10000\r\n");
        assert_eq!(s.of(usize::MAX), b"ffffffffffffffff\r\n");
        let mut out = Vec::new();
        frame_into(&mut out, Delimit::Chunked, b"hello");
        frame_into(&mut out, Delimit::Length(2), b"hi");
        assert_eq!(out, b"5\r\nhello\r\nhi");
    }

    #[test]
    fn framing_follows_method_status_and_version() {
        let ok = StatusCode::OK;
        assert_eq!(Delimit::choose(true, ok, Some(5), 1), Delimit::None);
        assert_eq!(
            Delimit::choose(false, StatusCode::NOT_MODIFIED, None, 1),
            Delimit::None
        );
        assert_eq!(Delimit::choose(false, ok, Some(5), 0), Delimit::Length(5));
        assert_eq!(Delimit::choose(false, ok, None, 1), Delimit::Chunked);
        assert_eq!(Delimit::choose(false, ok, None, 0), Delimit::Close);
    }
}
