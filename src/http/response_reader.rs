//! The upstream's response, read by the gateway itself (no hyper client):
//! the head parsed strictly with `httparse` from bytes read through the
//! worker's scratch buffer, interim 1xx heads skipped, the body's framing
//! decided as RFC 9112 §6.3 says — no body after HEAD, 204 or 304; a
//! `Content-Length`; `chunked`, decoded by the same strict decoder as a
//! client's request body; or everything until the upstream closes — and
//! the body handed out piece by piece as it arrives ([`BodyReader`]).
//!
//! A response two parsers could read differently is not relayed: both
//! `Content-Length` and `Transfer-Encoding`, a coding other than exactly
//! `chunked`, conflicting lengths, or bad chunk framing end the exchange
//! with a 502 (or a cut connection once the head went out), and the
//! connection is dropped, never pooled.

use super::chunked::Decoder;
use super::response::{self, Delimit};
use super::HttpError;
use crate::io::read_via_scratch;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncRead;

/// Most bytes of a response head (status line and fields, up to the
/// blank line); a larger one is a 502 (`upstream_bad_response`).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Most header fields in a response head.
const MAX_FIELDS: usize = 128;

/// How the upstream delimits its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// What the request asked for, which shapes the response's framing.
pub struct Asked<'a> {
    /// A HEAD request: no body follows whatever the head says.
    pub head_request: bool,
    /// The client's HTTP/1.x minor version.
    pub client_minor: u8,
    /// The client connection closes after this response.
    pub close: bool,
    /// The gateway's affinity cookie, if the route sets one.
    pub cookie: Option<&'a str>,
}

/// A parsed final response head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    /// The head as the client gets it (rebuilt, with the gateway's framing).
    pub client_head: Vec<u8>,
    pub body: BodyFraming,
    pub delimit: Delimit,
    /// The client connection must not carry another request.
    pub close: bool,
    /// The upstream lets the connection carry another request once this
    /// body is read to its end.
    pub reusable: bool,
    /// `Content-Type: text/event-stream`.
    pub event_stream: bool,
}

/// Read the final response head from `r` (`buf` keeps the bytes after it:
/// the start of the body). An upstream that closes or fails before the
/// first byte gives [`HttpError::Stale`] (on a reused connection the
/// request may be retried); a head over [`MAX_RESPONSE_HEAD`], a bad one,
/// or a close in the middle of one gives `UpstreamBadResponse`.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    asked: &Asked<'_>,
) -> Result<Head, HttpError> {
    let mut got_any = !buf.is_empty();
    loop {
        if !buf.is_empty() {
            match parse(buf, asked)? {
                Parsed::Partial if buf.len() >= MAX_RESPONSE_HEAD => {
                    return Err(HttpError::UpstreamBadResponse)
                }
                Parsed::Partial => {}
                Parsed::Interim(len) => {
                    buf.advance(len);
                    continue;
                }
                Parsed::Final(len, head) => {
                    buf.advance(len);
                    return Ok(head);
                }
            }
        }
        match read_via_scratch(r, buf, MAX_RESPONSE_HEAD - buf.len()).await {
            Ok(0) | Err(_) if !got_any => return Err(HttpError::Stale),
            Ok(0) | Err(_) => return Err(HttpError::UpstreamBadResponse),
            Ok(_) => got_any = true,
        }
    }
}

enum Parsed {
    Partial,
    /// A 1xx other than 101, this many bytes long: skipped.
    Interim(usize),
    Final(usize, Head),
}

fn parse(buf: &[u8], asked: &Asked<'_>) -> Result<Parsed, HttpError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut fields);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => return Err(HttpError::UpstreamBadResponse),
    };
    let status = res.code.ok_or(HttpError::UpstreamBadResponse)?;
    match status {
        // No upgrade was asked for.
        101 => return Err(HttpError::UpstreamBadResponse),
        100..=199 => return Ok(Parsed::Interim(len)),
        200..=999 => {}
        _ => return Err(HttpError::UpstreamBadResponse),
    }
    let facts = Facts::of(res.headers)?;
    let no_body = asked.head_request || status == 204 || status == 304;
    let body = match (no_body, facts.chunked, facts.length) {
        (true, _, _) => BodyFraming::None,
        (false, true, _) => BodyFraming::Chunked,
        (false, false, Some(n)) => BodyFraming::Length(n),
        (false, false, None) => BodyFraming::Close,
    };
    let length = match body {
        BodyFraming::Length(n) => Some(n),
        _ => None,
    };
    let delimit = Delimit::choose(asked.head_request, status, length, asked.client_minor);
    let close = asked.close || delimit == Delimit::Close;
    let client_head = response::head(status, res.headers, delimit, close, asked.cookie);
    let head = Head {
        status,
        client_head,
        body,
        delimit,
        close,
        reusable: res.version == Some(1) && !facts.close && body != BodyFraming::Close,
        event_stream: facts.event_stream,
    };
    Ok(Parsed::Final(len, head))
}

/// What the gateway needs from the response's fields.
#[derive(Default)]
struct Facts {
    length: Option<u64>,
    chunked: bool,
    /// `Connection: close`.
    close: bool,
    event_stream: bool,
}

impl Facts {
    fn of(fields: &[httparse::Header<'_>]) -> Result<Facts, HttpError> {
        let bad = HttpError::UpstreamBadResponse;
        let mut f = Facts::default();
        let mut codings = 0;
        for h in fields {
            let value = std::str::from_utf8(h.value).map_err(|_| HttpError::UpstreamBadResponse);
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = value?.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad);
                }
                let n: u64 = v.parse().map_err(|_| HttpError::UpstreamBadResponse)?;
                if f.length.is_some_and(|m| m != n) {
                    return Err(bad);
                }
                f.length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                codings += 1;
                f.chunked = value?.trim().eq_ignore_ascii_case("chunked");
            } else if h.name.eq_ignore_ascii_case("connection") {
                f.close |= value?
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"));
            } else if h.name.eq_ignore_ascii_case("content-type") {
                f.event_stream = value?
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"));
            }
        }
        // Only exactly one `chunked`, and never with a length: what a
        // smuggling attempt would send.
        if codings > 1 || (codings == 1 && (!f.chunked || f.length.is_some())) {
            return Err(bad);
        }
        Ok(f)
    }
}

/// The next piece of a response body, from the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<D = Bytes> {
    Data(D),
    /// Nothing more in the buffer: read.
    More,
    /// The body ended.
    Done,
}

/// Takes a body out of the bytes read from the upstream, in its framing.
pub struct BodyReader {
    state: Reading,
}

enum Reading {
    Length(u64),
    Chunked(Decoder),
    Close,
    Done,
}

impl BodyReader {
    pub fn new(framing: BodyFraming) -> BodyReader {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => Reading::Done,
            BodyFraming::Length(n) => Reading::Length(n),
            BodyFraming::Chunked => Reading::Chunked(Decoder::default()),
            BodyFraming::Close => Reading::Close,
        };
        BodyReader { state }
    }

    /// Body bytes from the front of `buf` (a piece of chunk data is
    /// handed out without its framing), or what is needed next.
    pub fn take(&mut self, buf: &mut BytesMut) -> Result<Step, HttpError> {
        Ok(match self.next_piece(buf)? {
            Step::Data(n) => Step::Data(buf.split_to(n).freeze()),
            Step::More => Step::More,
            Step::Done => Step::Done,
        })
    }

    /// As [`take`](Self::take), without splitting the piece off:
    /// `Data(n)` means the body's next `n` bytes are the front of `buf`
    /// (the framing before them already dropped), and the caller takes
    /// exactly those `n` bytes off `buf` before the next call. A piece
    /// the caller copies anyway then costs no `Bytes` (and, the first
    /// time, no shared allocation of the buffer).
    pub fn next_piece(&mut self, buf: &mut BytesMut) -> Result<Step<usize>, HttpError> {
        match &mut self.state {
            Reading::Done => Ok(Step::Done),
            _ if buf.is_empty() => Ok(Step::More),
            Reading::Close => Ok(Step::Data(buf.len())),
            Reading::Length(left) => {
                let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                if *left == 0 {
                    self.state = Reading::Done;
                }
                Ok(Step::Data(take))
            }
            Reading::Chunked(decoder) => loop {
                let p = decoder
                    .decode(buf)
                    .map_err(|_| HttpError::UpstreamBadResponse)?;
                if let Some(range) = p.data {
                    // Chunk data ends where the decoder stopped.
                    debug_assert_eq!(range.end, p.consumed);
                    buf.advance(range.start);
                    return Ok(Step::Data(range.len()));
                }
                buf.advance(p.consumed);
                if p.done {
                    self.state = Reading::Done;
                    return Ok(Step::Done);
                }
                if p.consumed == 0 || buf.is_empty() {
                    return Ok(Step::More);
                }
            },
        }
    }

    /// The upstream closed: the end of a body delimited by the close,
    /// a truncated response otherwise.
    pub fn at_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            Reading::Close | Reading::Done => {
                self.state = Reading::Done;
                Ok(())
            }
            _ => Err(HttpError::UpstreamBadResponse),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, Reading::Done)
    }
}

#[cfg(test)]
mod tests;
