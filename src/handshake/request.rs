//! Reading a request head from the client: bounded by `max_header_bytes`
//! (→ 431) and by the caller's handshake timeout (slowloris).

use super::text::Text;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most header lines accepted; more is a 431 like too many bytes.
const MAX_HEADERS: usize = 100;

/// A parsed request head. Lives only for the handshake (or one proxied
/// request). Its text is one shared copy of the head, not a `String` per
/// piece: two allocations per request (the copy and the field list).
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: Text,
    /// Request target as sent: path and query.
    pub target: Text,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Names as sent (case kept for forwarding), values trimmed by httparse.
    pub headers: Vec<(Text, Text)>,
}

impl RequestHead {
    /// First value of a header, name compared case-insensitively.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// Every value of a header.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Parse a complete head from `buf`. `Ok(None)`: need more bytes;
    /// `Ok(Some((head, len)))`: the head took `len` bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        if has_bare_lf(&buf[..len]) {
            return Err(HeadError::Malformed);
        }
        // httparse refuses a target that is not UTF-8, names are tokens and
        // the rest is ASCII: this refuses exactly what checking each field
        // value refused.
        let text: Arc<str> = match std::str::from_utf8(&buf[..len]) {
            Ok(t) => Arc::from(t),
            Err(_) => return Err(HeadError::Malformed),
        };
        // httparse's slices point into `buf`; the same offsets into the
        // copy are the pieces.
        let at = |part: &[u8]| {
            let offset = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
            text.as_bytes()
                .get(offset..offset.wrapping_add(part.len()))
                .and_then(|p| Text::within(&text, p))
                .ok_or(HeadError::Malformed)
        };
        let mut head = RequestHead {
            method: at(req.method.unwrap_or_default().as_bytes())?,
            target: at(req.path.unwrap_or_default().as_bytes())?,
            version: req.version.unwrap_or(0),
            headers: Vec::with_capacity(req.headers.len()),
        };
        for h in req.headers.iter() {
            head.headers.push((at(h.name.as_bytes())?, at(h.value)?));
        }
        if !head.target.starts_with('/') {
            // Absolute-form and authority-form targets are for forward proxies.
            return Err(HeadError::Malformed);
        }
        Ok(Some((head, len)))
    }
}

/// A line ending without its CR: httparse accepts it, other HTTP parsers
/// in front of or behind the gateway may not, and a head two parsers split
/// differently is how requests are smuggled.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// Why no request head could be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than the limit")]
    TooLarge,
    #[error("malformed request head")]
    Malformed,
    #[error("connection closed before a complete request head")]
    Closed,
    #[error("reading the request head: {0}")]
    Io(#[from] std::io::Error),
}

/// Read until a complete head is in the buffer. Returns the head and the
/// bytes that followed it (a client may send frames right behind).
pub async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    max_bytes: usize,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(max_bytes.min(2048));
    loop {
        if buf.len() >= max_bytes {
            return Err(HeadError::TooLarge);
        }
        // Never read past the limit, so the buffer stays bounded.
        let room = (max_bytes - buf.len()).min(4096);
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = io.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(HeadError::Closed);
        }
        if let Some((head, len)) = RequestHead::parse(&buf)? {
            let rest = buf.split_off(len);
            return Ok((head, rest));
        }
    }
}
