//! The `Sec-WebSocket-Extensions` grammar for permessage-deflate (RFC 7692
//! §7): parse an element's parameters, keep the client's valid offers,
//! and check an answer against what was offered.
//!
//! Pure and allocation-light: it runs once per handshake, never per
//! message.

use crate::handshake::is_token;
use std::fmt::{self, Write};

/// The extension's name in the header.
pub const NAME: &str = "permessage-deflate";

/// Smallest and largest LZ77 window, as base-2 logarithms (§7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;
pub const MAX_WINDOW_BITS: u8 = 15;

/// `client_max_window_bits` in an offer may come without a value ("I can
/// take any size you name"); in an answer it always has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowBits {
    /// Present without a value.
    Any,
    /// Present with this value (8..=15).
    Bits(u8),
}

/// The parameters of one permessage-deflate element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// Largest window the server may compress with.
    pub server_max_window_bits: Option<u8>,
    /// Largest window the client may compress with.
    pub client_max_window_bits: Option<WindowBits>,
}

impl Params {
    /// Parse one element's text (`permessage-deflate; a; b=9`). `None`:
    /// another extension or an invalid parameter (§7.1: such an offer is
    /// declined; such an answer fails the connection).
    pub fn parse(element: &str) -> Option<Params> {
        let mut parts = element.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case(NAME) {
            return None;
        }
        let mut p = Params::default();
        for part in parts {
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
                None => (part, None),
            };
            match (name.to_ascii_lowercase().as_str(), value) {
                ("server_no_context_takeover", None) if !p.server_no_context_takeover => {
                    p.server_no_context_takeover = true
                }
                ("client_no_context_takeover", None) if !p.client_no_context_takeover => {
                    p.client_no_context_takeover = true
                }
                ("server_max_window_bits", Some(v)) if p.server_max_window_bits.is_none() => {
                    p.server_max_window_bits = Some(window_bits(v)?)
                }
                ("client_max_window_bits", v) if p.client_max_window_bits.is_none() => {
                    p.client_max_window_bits = Some(match v {
                        None => WindowBits::Any,
                        Some(v) => WindowBits::Bits(window_bits(v)?),
                    })
                }
                // Unknown, duplicated, or a value where none belongs (or
                // the reverse).
                _ => return None,
            }
        }
        Some(p)
    }

    /// Could a server accept `offer` with these parameters as its answer
    /// (§7.1.1, §7.1.2)?
    pub fn answers(&self, offer: &Params) -> bool {
        if offer.server_no_context_takeover && !self.server_no_context_takeover {
            return false;
        }
        match (offer.server_max_window_bits, self.server_max_window_bits) {
            (Some(_), None) => return false,
            (Some(asked), Some(given)) if given > asked => return false,
            _ => {}
        }
        match (offer.client_max_window_bits, self.client_max_window_bits) {
            (_, None) => true,
            // An answer must give a value (§7.1.2.2)…
            (_, Some(WindowBits::Any)) => false,
            // …and only if the client said it can take one.
            (None, Some(_)) => false,
            (Some(WindowBits::Any), Some(WindowBits::Bits(_))) => true,
            (Some(WindowBits::Bits(asked)), Some(WindowBits::Bits(given))) => given <= asked,
        }
    }
}

impl fmt::Display for Params {
    /// The canonical element text, as forwarded or answered.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if let Some(b) = self.server_max_window_bits {
            write!(f, "; server_max_window_bits={b}")?;
        }
        match self.client_max_window_bits {
            Some(WindowBits::Any) => f.write_str("; client_max_window_bits")?,
            Some(WindowBits::Bits(b)) => write!(f, "; client_max_window_bits={b}")?,
            None => {}
        }
        Ok(())
    }
}

/// A value may be a token or a quoted string (§7.1: `"10"` is valid).
fn unquote(v: &str) -> Option<&str> {
    let v = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    is_token(v).then_some(v)
}

/// 1*DIGIT within 8..=15, no leading zero (§7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&n)
        .then_some(n)
}

/// Every element of every `Sec-WebSocket-Extensions` value, in order.
fn elements<'a>(values: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// The client's valid permessage-deflate offers, in its order of
/// preference; other extensions and invalid offers are left out, because
/// the relay could not carry what they would negotiate.
pub fn client_offers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Params> {
    elements(values).filter_map(Params::parse).collect()
}

/// The header value to send upstream for `offers`; `None` when empty.
pub fn forwardable_offer(offers: &[Params]) -> Option<String> {
    let mut out = String::new();
    for (i, p) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{p}");
    }
    (!offers.is_empty()).then_some(out)
}

/// Why an upstream's `Sec-WebSocket-Extensions` answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum AnswerError {
    NotOffered,
    Several,
    InvalidParams,
    Inconsistent,
}

impl AnswerError {
    /// For the upstream's bad-response error (and its log line).
    pub fn reason(self) -> &'static str {
        match self {
            AnswerError::NotOffered => "extension negotiated that was not offered",
            AnswerError::Several => "more than one extension negotiated",
            AnswerError::InvalidParams => "invalid permessage-deflate parameters",
            AnswerError::Inconsistent => "permessage-deflate parameters that answer no offer",
        }
    }
}

/// Check the upstream's answer (all its `Sec-WebSocket-Extensions`
/// values) against what was offered. `Ok(None)`: nothing negotiated.
pub fn check_answer<'a>(
    values: impl IntoIterator<Item = &'a str>,
    offers: &[Params],
) -> Result<Option<Params>, AnswerError> {
    let mut answer = elements(values);
    let Some(first) = answer.next() else {
        return Ok(None);
    };
    if answer.next().is_some() {
        return Err(AnswerError::Several);
    }
    let name = first.split(';').next().unwrap_or_default().trim();
    if offers.is_empty() || !name.eq_ignore_ascii_case(NAME) {
        return Err(AnswerError::NotOffered);
    }
    let params = Params::parse(first).ok_or(AnswerError::InvalidParams)?;
    if !offers.iter().any(|o| params.answers(o)) {
        return Err(AnswerError::Inconsistent);
    }
    Ok(Some(params))
}

#[cfg(test)]
mod tests;
