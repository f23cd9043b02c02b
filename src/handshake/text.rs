//! A piece of a request head's text: one shared copy of the head (one
//! allocation per request) and the range of it a method, target, field
//! name or value is, instead of a `String` of its own for each.
//!
//! Reads as a `&str` (`Deref`); a clone shares the head.

use std::ops::Range;
use std::sync::Arc;

/// Text of a parsed request head.
#[derive(Clone)]
pub struct Text {
    /// The whole head (request line and fields), valid UTF-8.
    head: Arc<str>,
    /// Where this piece is in `head`; on character boundaries. `u32`s
    /// keep a `Text` as small as the `String` it replaces (a head is
    /// bounded by `max_header_bytes`, far below 4 GiB).
    range: Range<u32>,
}

impl Text {
    /// The piece `part` of `head`; `part` must point into `head` (it is
    /// found by address, as `httparse` hands out slices of its input).
    /// `None` if it does not, or does not fall on character boundaries.
    pub(super) fn within(head: &Arc<str>, part: &[u8]) -> Option<Text> {
        let start = (part.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        head.get(start..end)?;
        Some(Text {
            head: Arc::clone(head),
            range: u32::try_from(start).ok()?..u32::try_from(end).ok()?,
        })
    }

    pub fn as_str(&self) -> &str {
        // Checked on construction: in bounds and on boundaries.
        let (start, end) = (self.range.start as usize, self.range.end as usize);
        self.head.get(start..end).unwrap_or_default()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::from("")
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        // A head is bounded far below 4 GiB; a longer string made here
        // (none is) would read truncated or empty, never panic.
        let end = u32::try_from(s.len()).unwrap_or(u32::MAX);
        Text {
            head: Arc::from(s),
            range: 0..end,
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::from(s.as_str())
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_found_by_address_and_checked() {
        let head: Arc<str> = Arc::from("GET /é HTTP/1.1\r\n");
        let bytes = head.as_bytes();
        let target = Text::within(&head, &bytes[4..7]).expect("in the head");
        assert_eq!(target, "/é");
        assert_eq!(target.len(), 3);
        // Inside a character, or outside the head: refused, not a panic.
        assert!(Text::within(&head, &bytes[5..6]).is_none());
        let other = b"GET";
        assert!(Text::within(&head, other).is_none());
        assert_eq!(Text::from("x").to_string(), "x");
        // As small as the String it replaces.
        assert_eq!(std::mem::size_of::<Text>(), std::mem::size_of::<String>());
    }
}
