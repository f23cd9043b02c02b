//! The OPEN's `query`, parsed the way browsers encode forms
//! (`application/x-www-form-urlencoded`: `&`-separated `name=value`, `+`
//! for space, `%XX` escapes), for applications that read parameters.

use super::OpenBody;

impl OpenBody {
    /// `query` as decoded `(name, value)` pairs in order (a name may
    /// repeat; `a` without `=` is `("a", "")`). Invalid escapes are kept
    /// as written, invalid UTF-8 is replaced.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = b.get(i + 1).copied().and_then(hex);
                let l = b.get(i + 2).copied().and_then(hex);
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_decoded_in_order() {
        let open = OpenBody {
            query: "room=5&nick=ada+l%C3%B6we&tag=a&tag=b&flag&bad=%zz&end=%4".into(),
            ..OpenBody::default()
        };
        let pairs = open.query_pairs();
        assert_eq!(
            pairs,
            [
                ("room", "5"),
                ("nick", "ada löwe"),
                ("tag", "a"),
                ("tag", "b"),
                ("flag", ""),
                ("bad", "%zz"),
                ("end", "%4"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(open.param("tag").as_deref(), Some("a"));
        assert_eq!(open.param("none"), None);
        assert!(OpenBody::default().query_pairs().is_empty());
    }
}
