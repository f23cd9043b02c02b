//! The upstream's answer to the upgrade request: read its head (bounded),
//! accept only a 101 that matches what was asked (RFC 6455 §4.1), and turn
//! any other status into a refusal relayed to the client with a short body.

use super::{Connected, UpstreamError, MAX_RELAYED_BODY, MAX_RESPONSE_HEAD};
use crate::config::EndpointConfig;
use crate::deflate::params::{check_answer, Params};
use crate::handshake::{accept_key, field, Rejection};
use crate::io::Io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A parsed response head: status, headers, and how many bytes it took.
#[doc(hidden)]
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub len: usize,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, want: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(want))
    }
}

/// What a 101 gives the client's 101: the chosen sub-protocol and the
/// upstream's end-to-end headers.
#[doc(hidden)]
#[derive(Debug)]
pub struct Switch {
    pub protocol: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Send the request, read and check the response. `requested`: the
/// endpoint and the path behind its base path, for a refusal's message.
pub(crate) async fn handshake(
    mut io: Io,
    requested: (&EndpointConfig, &str),
    request: &[u8],
    key: &str,
    (offered, deflate_offers): (&[String], &[Params]),
) -> Result<Connected, UpstreamError> {
    let lost = |_| UpstreamError::BadResponse("connection lost while sending the request");
    io.write_all(request).await.map_err(lost)?;
    io.flush().await.map_err(lost)?;
    let (head, mut buf) = read_head(&mut io).await?;
    let leftover = buf.split_off(head.len);
    if head.status != 101 {
        let (ep, path) = requested;
        let url = ep.url_of(&[ep.base_path.as_str(), path].concat());
        return Err(refusal(io, &head, url, leftover).await);
    }
    let deflate = check_answer(head.all("sec-websocket-extensions"), deflate_offers)
        .map_err(|e| UpstreamError::BadResponse(e.reason()))?;
    let Switch { protocol, headers } = switch(head, key, offered)?;
    Ok(Connected {
        io,
        leftover,
        protocol,
        deflate,
        headers,
        endpoint: 0,
        active: None,
    })
}

/// Read until a complete head, at most [`MAX_RESPONSE_HEAD`] bytes (plus
/// one read). Returns the head and every byte read (the head and what
/// followed it).
async fn read_head(io: &mut Io) -> Result<(Head, Vec<u8>), UpstreamError> {
    // Read straight into the buffer (no array in the future: it lives in
    // every connection's handshake task).
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|_| UpstreamError::BadResponse("connection lost before a response"))?;
        if n == 0 {
            return Err(UpstreamError::BadResponse(
                "connection closed before a response",
            ));
        }
        if let Some(head) = parse_head(&buf)? {
            return Ok((head, buf));
        }
    }
}

/// The head at the start of `buf`; `Ok(None)`: not complete yet and still
/// under [`MAX_RESPONSE_HEAD`], so read more. Pure, for the fuzz target
/// `upstream_response` (docs/fuzzing.md).
#[doc(hidden)]
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, UpstreamError> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let headers = resp
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).into_owned();
                    (h.name.to_string(), value)
                })
                .collect();
            let status = resp.code.unwrap_or(0);
            Ok(Some(Head {
                status,
                headers,
                len,
            }))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => Ok(None),
        _ => Err(UpstreamError::BadResponse("unparseable response head")),
    }
}

/// A 101 head checked ([`check_switch`]) and its headers made fit for the
/// client's 101: handshake and hop-by-hop headers dropped, the rest
/// trimmed and validated as RFC 9110 fields. Pure, for the fuzz target.
#[doc(hidden)]
pub fn switch(head: Head, key: &str, offered: &[String]) -> Result<Switch, UpstreamError> {
    let protocol = check_switch(&head, key, offered)?;
    let headers: Vec<(String, String)> = head
        .headers
        .into_iter()
        .filter(|(n, _)| !super::request::is_handshake_or_hop_header(n))
        .map(|(n, v)| (n, v.trim().to_string()))
        .collect();
    // These go into the client's 101 as they are.
    if !field::headers_ok(&headers) {
        return Err(UpstreamError::InvalidHeader("101 header"));
    }
    Ok(Switch { protocol, headers })
}

/// A 101 must switch to WebSocket with the right accept value and choose
/// only an offered sub-protocol, which it returns (its extension answer is
/// `deflate::check_answer`'s business).
fn check_switch(
    head: &Head,
    key: &str,
    offered: &[String],
) -> Result<Option<String>, UpstreamError> {
    if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
        return Err(UpstreamError::BadResponse("101 without Upgrade: websocket"));
    }
    if head.get("sec-websocket-accept") != Some(accept_key(key).as_str()) {
        return Err(UpstreamError::BadResponse("wrong Sec-WebSocket-Accept"));
    }
    let protocol = head
        .get("sec-websocket-protocol")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    if protocol.as_ref().is_some_and(|p| !offered.contains(p)) {
        return Err(UpstreamError::BadResponse(
            "sub-protocol chosen that was not offered",
        ));
    }
    Ok(protocol)
}

/// The upstream answered with a status: relay it, with a short body.
async fn refusal(mut io: Io, head: &Head, url: String, mut body: Vec<u8>) -> UpstreamError {
    let (want, content_type) = match refusal_fields(head) {
        Ok(fields) => fields,
        Err(e) => return e,
    };
    body.reserve(want.saturating_sub(body.len()));
    while body.len() < want {
        match io.read_buf(&mut body).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    body.truncate(want);
    UpstreamError::Refused {
        status: head.status,
        url,
        rejection: Rejection::UpstreamStatus {
            status: head.status,
            content_type,
            body,
        },
    }
}

/// What of a refusal reaches the client, besides its status: the body
/// length to read (at most [`MAX_RELAYED_BODY`]) and a valid
/// `Content-Type`. Pure, for the fuzz target.
#[doc(hidden)]
pub fn refusal_fields(head: &Head) -> Result<(usize, Option<String>), UpstreamError> {
    if !(200..=599).contains(&head.status) {
        return Err(UpstreamError::BadResponse("invalid status"));
    }
    let want = head
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_RELAYED_BODY);
    let content_type = head.get("content-type").map(str::to_string);
    if content_type
        .as_deref()
        .is_some_and(|v| !field::is_field_value(v))
    {
        return Err(UpstreamError::InvalidHeader("refusal content-type"));
    }
    Ok((want, content_type))
}
