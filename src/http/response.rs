//! The response as the client gets it: a head rebuilt from the upstream's
//! parsed one (status, end-to-end headers; hop-by-hop ones and any the
//! upstream's `Connection` names are dropped) with the gateway's own
//! framing, then the body written chunk by chunk as it arrives — an SSE
//! event or a chunk of a streamed response leaves as soon as the upstream
//! wrote it. Trailers are dropped (docs/configuration.md, "HTTP").

use crate::upstream::is_handshake_or_hop_header;
use bytes::{Buf, Bytes};
use hyper::header::HeaderMap;
use hyper::StatusCode;
use std::fmt::Write;
use tokio::io::{AsyncWrite, AsyncWriteExt};

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
        let size = Bytes::from(format!("{:x}\r\n", data.len()));
        let mut all = size.chain(data).chain(&b"\r\n"[..]);
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
