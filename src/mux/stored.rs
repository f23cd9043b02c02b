//! A session's OPEN, kept for its whole life so it can be sent again on
//! resume (docs/mux-protocol.md §6: same id, same body).
//!
//! Kept compact rather than as the JSON that went on the wire: field names
//! are implied by position, common header names are one byte, lengths are
//! varints. For a typical client this is about a third of the JSON, and the
//! idle memory of a mux client is a product target (≤ 1.5 KB). `to_json`
//! rebuilds exactly the bytes the first OPEN carried (same struct, same
//! serializer).

use tidegate_mux::codec::Frame;
use tidegate_mux::OpenBody;

/// Header names that almost every OPEN carries, stored as one byte
/// (`0x80 | index`); any other name is stored as it is.
const NAMES: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "user-agent",
    "origin",
    "cookie",
    "accept-language",
    "accept-encoding",
    "cache-control",
    "pragma",
    "x-real-ip",
    "authorization",
    "x-request-id",
];

pub struct StoredOpen(Box<[u8]>);

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Reads back what `StoredOpen::new` wrote (always well formed: it is
/// never anything else).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.0[0];
        self.0 = &self.0[1..];
        b
    }

    fn len(&mut self) -> usize {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let b = self.byte();
            n |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return n;
            }
            shift += 7;
        }
    }

    fn str(&mut self) -> String {
        let n = self.len();
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }
}

impl StoredOpen {
    pub fn new(body: &OpenBody) -> StoredOpen {
        let mut out = Vec::with_capacity(256);
        for s in [&body.path, &body.query, &body.client_addr, &body.route] {
            put_str(&mut out, s);
        }
        out.push(body.tls as u8);
        put_len(&mut out, body.headers.len());
        for (name, value) in &body.headers {
            match NAMES.iter().position(|n| n == name) {
                Some(i) => out.push(0x80 | i as u8),
                None => {
                    out.push(0);
                    put_str(&mut out, name);
                }
            }
            put_str(&mut out, value);
        }
        put_len(&mut out, body.protocols.len());
        for p in &body.protocols {
            put_str(&mut out, p);
        }
        match &body.identity {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_str(&mut out, &v.to_string());
            }
        }
        StoredOpen(out.into_boxed_slice())
    }

    fn body(&self) -> OpenBody {
        let mut r = Reader(&self.0);
        let path = r.str();
        let query = r.str();
        let client_addr = r.str();
        let route = r.str();
        let tls = r.byte() != 0;
        let headers = (0..r.len())
            .map(|_| {
                let tag = r.byte();
                let name = if tag & 0x80 != 0 {
                    NAMES[(tag & 0x7f) as usize].to_string()
                } else {
                    r.str()
                };
                (name, r.str())
            })
            .collect();
        let protocols = (0..r.len()).map(|_| r.str()).collect();
        let identity = match r.byte() {
            0 => None,
            _ => serde_json::from_str(&r.str()).ok(),
        };
        OpenBody {
            path,
            query,
            headers,
            client_addr,
            protocols,
            route,
            tls,
            identity,
        }
    }

    /// The OPEN body as JSON, byte for byte what the first OPEN carried.
    #[cfg(test)]
    fn to_json(&self) -> bytes::Bytes {
        Frame::open(1, false, &self.body()).body
    }

    /// An OPEN frame marked RESUMED for session `id`.
    pub fn resumed_frame(&self, id: u32) -> Frame {
        Frame::open(id, true, &self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(identity: Option<serde_json::Value>) -> OpenBody {
        OpenBody {
            path: "/chat/ü".into(),
            query: "a=1&b=2".into(),
            headers: vec![
                ("user-agent".into(), "Mozilla/5.0".into()),
                ("x-custom".into(), "v".repeat(300)),
                ("x-forwarded-for".into(), "203.0.113.7".into()),
                ("x-forwarded-proto".into(), "https".into()),
                ("x-forwarded-host".into(), "ws.example.com".into()),
                (
                    "forwarded".into(),
                    "for=203.0.113.7;host=\"ws.example.com\";proto=https".into(),
                ),
            ],
            client_addr: "203.0.113.7:50122".into(),
            protocols: vec!["chat.v2".into(), "chat.v1".into()],
            route: "chat".into(),
            tls: true,
            identity,
        }
    }

    #[test]
    fn rebuilds_the_same_json() {
        let identity =
            serde_json::json!({"result": "ok", "headers": [["x-auth-subject", "alice"]]});
        for b in [body(None), body(Some(identity)), OpenBody::default()] {
            let json = Frame::open(1, false, &b).body;
            let stored = StoredOpen::new(&b);
            assert_eq!(stored.to_json(), json);
            let f = stored.resumed_frame(9);
            assert!(f.resumed());
            assert_eq!(f.session, 9);
            assert_eq!(f.body, json);
        }
    }

    #[test]
    fn is_smaller_than_the_json() {
        let b = OpenBody {
            path: "/x".into(),
            headers: vec![
                ("x-forwarded-for".into(), "127.0.0.1".into()),
                ("x-forwarded-proto".into(), "http".into()),
                ("x-forwarded-host".into(), "127.0.0.1:9680".into()),
                (
                    "forwarded".into(),
                    "for=127.0.0.1;host=\"127.0.0.1:9680\";proto=http".into(),
                ),
            ],
            client_addr: "127.0.0.1:56878".into(),
            route: "mux".into(),
            ..OpenBody::default()
        };
        let json = Frame::open(1, false, &b).body;
        let stored = StoredOpen::new(&b);
        assert!(
            stored.0.len() * 2 < json.len(),
            "{} vs {}",
            stored.0.len(),
            json.len()
        );
    }
}
