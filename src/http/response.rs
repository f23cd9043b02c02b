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

use super::response_reader::{BodyReader, Step};
use super::HttpError;
use crate::io::write_all_buf;
use crate::upstream::is_handshake_or_hop_header;
use bytes::{Buf, Bytes, BytesMut};
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
    pub fn choose(head_request: bool, status: u16, length: Option<u64>, minor: u8) -> Delimit {
        if head_request || status == 204 || status == 304 {
            return Delimit::None;
        }
        match (length, minor) {
            (Some(n), _) => Delimit::Length(n),
            (None, 1) => Delimit::Chunked,
            (None, _) => Delimit::Close,
        }
    }
}

/// The client's response head: the upstream's status and end-to-end
/// fields (names lower-cased), the gateway's framing, and its affinity
/// cookie when it has one to set.
pub fn head(
    status: u16,
    fields: &[httparse::Header<'_>],
    delimit: Delimit,
    close: bool,
    cookie: Option<&str>,
) -> Vec<u8> {
    // Sized for a typical head: built in place, one allocation, no
    // formatting machinery on the per-request path.
    let mut out = Vec::with_capacity(256);
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(Decimal::default().of(u64::from(status)));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    // Most responses carry no `Connection` field: then no field is named
    // by one, and the per-field search below is skipped.
    let any_connection = fields
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    let named = |n: &str| {
        any_connection
            && fields
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(n))
    };
    for h in fields {
        let n = h.name;
        // A HEAD or 304 response keeps the upstream's length: it describes
        // the representation, no body follows.
        let keep_length = delimit == Delimit::None && n.eq_ignore_ascii_case("content-length");
        if (is_handshake_or_hop_header(n) && !keep_length) || named(n) {
            continue;
        }
        out.extend(n.bytes().map(|b| b.to_ascii_lowercase()));
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // Checked as any field value: it must not split the head.
    if let Some(c) = cookie.filter(|c| c.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))) {
        out.extend_from_slice(b"set-cookie: ");
        out.extend_from_slice(c.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match delimit {
        Delimit::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(Decimal::default().of(n));
            out.extend_from_slice(b"\r\n");
        }
        Delimit::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Delimit::None | Delimit::Close => {}
    }
    if close || delimit == Delimit::Close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A decimal number written on the stack (status codes, lengths).
#[derive(Default)]
struct Decimal([u8; 20]);

impl Decimal {
    fn of(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return &self.0[i..];
            }
        }
    }
}

/// What [`write_head`] sent of the body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub bytes: u64,
    /// The whole body (and its last chunk) went with the head.
    pub ended: bool,
}

/// Write the head followed by the body bytes already read with it,
/// without waiting for more (an event stream's head must not wait for its
/// first event): pieces up to [`COPY_BEHIND_HEAD`] are appended to the
/// head, a larger one rides in the same vectored write. Bad framing here
/// is still an error before anything reached the client.
pub async fn write_head<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut head: Vec<u8>,
    delimit: Delimit,
    body: &mut BodyReader,
    buf: &mut BytesMut,
) -> Result<Sent, HttpError> {
    let mut sent = Sent::default();
    let mut large = None;
    loop {
        let n = match body.next_piece(buf)? {
            Step::More => break,
            Step::Done => {
                sent.ended = true;
                if delimit == Delimit::Chunked {
                    head.extend_from_slice(b"0\r\n\r\n");
                }
                break;
            }
            Step::Data(n) => n,
        };
        sent.bytes += n as u64;
        if n > COPY_BEHIND_HEAD {
            large = Some(buf.split_to(n).freeze());
            break;
        }
        // Copied straight from the read buffer: no `Bytes` per piece.
        if n > 0 {
            frame_into(&mut head, delimit, &buf[..n]);
        }
        buf.advance(n);
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
    // The head is written from its own vector: no `Bytes` made of it.
    let mut all = head.as_slice().chain(large).chain(tail);
    write_all_buf(w, &mut all)
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
        write_all_buf(w, &mut all).await?;
    } else {
        w.write_all(&data).await?;
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
        let h = |name, value: &'static str| httparse::Header {
            name,
            value: value.as_bytes(),
        };
        let fields = [
            h("Content-Type", "text/plain"),
            h("Connection", "X-Private, keep-alive"),
            h("x-private", "1"),
            h("keep-alive", "timeout=5"),
            h("transfer-encoding", "chunked"),
            h("trailer", "x-t"),
        ];
        let text = String::from_utf8(head(200, &fields, Delimit::Chunked, false, Some("tg=1")))
            .expect("ascii head");
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nset-cookie: tg=1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn chunk_size_lines_are_lower_hex() {
        let mut s = SizeLine::default();
        assert_eq!(s.of(0), b"0\r\n");
        assert_eq!(s.of(13), b"d\r\n");
        assert_eq!(s.of(0x10000), b"10000\r\n");
        assert_eq!(s.of(usize::MAX), b"ffffffffffffffff\r\n");
        let mut d = Decimal::default();
        assert_eq!(d.of(0), b"0");
        assert_eq!(d.of(204), b"204");
        assert_eq!(d.of(u64::MAX), b"18446744073709551615");
        let mut out = Vec::new();
        frame_into(&mut out, Delimit::Chunked, b"hello");
        frame_into(&mut out, Delimit::Length(2), b"hi");
        assert_eq!(out, b"5\r\nhello\r\nhi");
    }

    #[test]
    fn framing_follows_method_status_and_version() {
        let ok = 200;
        assert_eq!(Delimit::choose(true, ok, Some(5), 1), Delimit::None);
        assert_eq!(Delimit::choose(false, 304, None, 1), Delimit::None);
        assert_eq!(Delimit::choose(false, ok, Some(5), 0), Delimit::Length(5));
        assert_eq!(Delimit::choose(false, ok, None, 1), Delimit::Chunked);
        assert_eq!(Delimit::choose(false, ok, None, 0), Delimit::Close);
    }
}
