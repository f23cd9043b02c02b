//! The NATS side of a channel: its subject, and the headers a published
//! message carries between instances. One place owns these wire rules so
//! publisher and receiver cannot drift apart.

use async_nats::HeaderMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The publishing instance's id (diagnostics, and a backstop for echo
/// suppression: the connection is opened with `no_echo`).
pub const INSTANCE: &str = "Tidegate-Instance";
/// `text` or `binary`: the WebSocket opcode subscribers get.
pub const KIND: &str = "Tidegate-Kind";
/// Microseconds since the Unix epoch when the publish was accepted
/// (cross-instance latency; assumes synchronised clocks between hosts).
pub const PUBLISHED: &str = "Tidegate-Published";

/// The subject of `channel` under `prefix` (which ends in `.`).
///
/// Channel names may contain `.` (a NATS token separator), so a name whose
/// dots would make an empty token (`a..b`, `.a`, `a.`) is written with `~`
/// for every `.` instead: `~` is not a valid channel character, so the two
/// forms never collide, and ordinary dotted names keep their hierarchy
/// (NATS permissions like `tidegate.fanout.room.>` work on them).
pub fn subject(prefix: &str, channel: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + channel.len());
    s.push_str(prefix);
    if channel.split('.').any(str::is_empty) {
        s.extend(channel.chars().map(|c| if c == '.' { '~' } else { c }));
    } else {
        s.push_str(channel);
    }
    s
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The headers of one outgoing message.
pub fn headers(instance: &str, text: bool, published_micros: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(INSTANCE, instance);
    h.insert(KIND, if text { "text" } else { "binary" });
    h.insert(PUBLISHED, published_micros.to_string().as_str());
    h
}

/// What the receiver reads back from a message's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// Published by this very instance (should not happen with `no_echo`).
    pub own: bool,
    pub text: bool,
    /// `None`: missing or unreadable (published by something else).
    pub published_micros: Option<u64>,
}

/// Read a message's headers; a message without them (published by a tool
/// such as `nats pub`) is delivered as binary.
pub fn incoming(headers: Option<&HeaderMap>, instance: &str) -> Incoming {
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    Incoming {
        own: get(INSTANCE) == Some(instance),
        text: get(KIND) == Some("text"),
        published_micros: get(PUBLISHED).and_then(|v| v.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_dotted_names_and_never_make_empty_tokens() {
        let p = "tidegate.fanout.";
        assert_eq!(subject(p, "room5"), "tidegate.fanout.room5");
        assert_eq!(subject(p, "chat.room.5"), "tidegate.fanout.chat.room.5");
        assert_eq!(
            subject(p, "user:42@x/y-z_"),
            "tidegate.fanout.user:42@x/y-z_"
        );
        assert_eq!(subject(p, "a..b"), "tidegate.fanout.a~~b");
        assert_eq!(subject(p, ".a"), "tidegate.fanout.~a");
        assert_eq!(subject(p, "a."), "tidegate.fanout.a~");
        for ch in ["a..b", ".a", "a.", "x.y", "plain"] {
            let s = subject(p, ch);
            assert!(s.split('.').all(|t| !t.is_empty()), "{s}");
        }
    }

    #[test]
    fn headers_round_trip() {
        let h = headers("abc", true, 1234);
        let i = incoming(Some(&h), "abc");
        assert_eq!(
            i,
            Incoming {
                own: true,
                text: true,
                published_micros: Some(1234)
            }
        );
        let i = incoming(Some(&headers("abc", false, 5)), "other");
        assert!(!i.own && !i.text);
        let bare = incoming(None, "abc");
        assert_eq!(
            bare,
            Incoming {
                own: false,
                text: false,
                published_micros: None
            }
        );
    }
}
