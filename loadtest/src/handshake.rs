//! The HTTP/1.1 upgrade, both sides, written by hand.
//!
//! The client side is on the measured path of the `connect` and `idle`
//! scenarios, so it is one formatted request, one read loop into a small
//! buffer, and `httparse` over the head — no HTTP client stack in between.
//! The server side serves the bundled `echo-server`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::target::Target;

/// Upper bound on a response or request head; anything longer is refused.
pub const MAX_HEAD: usize = 8 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade failed.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("i/o during handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection during the handshake")]
    Eof,
    #[error("HTTP head longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("malformed HTTP head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("expected 101 Switching Protocols, got {0}")]
    Status(u16),
    #[error("missing or wrong {0} header")]
    Header(&'static str),
}

impl HandshakeError {
    /// Bounded label for error tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Io(_) => "handshake_io",
            Self::Eof => "handshake_eof",
            Self::TooLong | Self::Parse(_) => "handshake_malformed",
            Self::Status(_) => "handshake_status",
            Self::Header(_) => "handshake_header",
        }
    }
}

/// A fresh random `Sec-WebSocket-Key`.
pub fn generate_key() -> String {
    B64.encode(rand::random::<[u8; 16]>())
}

/// The `Sec-WebSocket-Accept` value a server must answer `key` with.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    B64.encode(h.finalize())
}

/// The upgrade request for `target` with `key`.
pub fn client_request(target: &Target, key: &str) -> String {
    // What browsers offer; the client never sends a compressed frame (held
    // connections only answer pings), so it needs no inflater.
    let offer = if target.offer_deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
        target.path,
        target.host_header()
    )
}

/// Reads one HTTP head into `buf`; returns its length. Bytes after the head
/// (a frame the peer sent straight away) stay in `buf` after that index.
async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, HandshakeError> {
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(scan_from + i + 4);
        }
        if buf.len() > MAX_HEAD {
            return Err(HandshakeError::TooLong);
        }
    }
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Checks a server's answer to a request sent with `key`.
pub fn check_response(head: &[u8], key: &str) -> Result<(), HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    if res.parse(head)?.is_partial() {
        return Err(HandshakeError::TooLong);
    }
    let code = res.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::Status(code));
    }
    if !has_token(header(res.headers, "upgrade"), "websocket") {
        return Err(HandshakeError::Header("Upgrade"));
    }
    let accept = header(res.headers, "sec-websocket-accept");
    if accept != Some(accept_key(key).as_bytes()) {
        return Err(HandshakeError::Header("Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// Runs the client side of the upgrade on `s`. Returns any bytes that came
/// after the response head, which belong to the frame stream.
pub async fn client<S>(s: &mut S, target: &Target) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = generate_key();
    s.write_all(client_request(target, &key).as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let head_len = read_head(s, &mut buf).await?;
    check_response(&buf[..head_len], &key)?;
    Ok(buf.split_off(head_len))
}

/// Checks an upgrade request; returns the 101 response to send.
pub fn server_response(head: &[u8]) -> Result<String, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head)?.is_partial() {
        return Err(HandshakeError::TooLong);
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::Header("method"));
    }
    if !has_token(header(req.headers, "upgrade"), "websocket") {
        return Err(HandshakeError::Header("Upgrade"));
    }
    if header(req.headers, "sec-websocket-version") != Some(b"13") {
        return Err(HandshakeError::Header("Sec-WebSocket-Version"));
    }
    let key = header(req.headers, "sec-websocket-key")
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or(HandshakeError::Header("Sec-WebSocket-Key"))?;
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key.trim())
    ))
}

/// Runs the server side of the upgrade; on a bad request answers 400 and
/// returns the error. Returns bytes that followed the request head.
pub async fn server<S>(s: &mut S) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let head_len = read_head(s, &mut buf).await?;
    match server_response(&buf[..head_len]) {
        Ok(resp) => {
            s.write_all(resp.as_bytes()).await?;
            Ok(buf.split_off(head_len))
        }
        Err(e) => {
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn request_and_response_agree() {
        let target: Target = "ws://127.0.0.1:9001/echo".parse().unwrap();
        let key = generate_key();
        let req = client_request(&target, &key);
        assert!(req.starts_with("GET /echo HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"));
        let resp = server_response(req.as_bytes()).unwrap();
        check_response(resp.as_bytes(), &key).unwrap();
        // A response made for another key is refused.
        let other = server_response(client_request(&target, &generate_key()).as_bytes()).unwrap();
        assert!(matches!(
            check_response(other.as_bytes(), &key),
            Err(HandshakeError::Header("Sec-WebSocket-Accept"))
        ));
    }

    #[test]
    fn refuses_non_101() {
        let r = check_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "k");
        assert!(matches!(r, Err(HandshakeError::Status(404))));
        let r = server_response(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(r, Err(HandshakeError::Header("Upgrade"))));
    }
}
