//! API keys: kept only as SHA-256 hashes, compared in constant time, each
//! with a name that becomes the caller's identity (`sub`).

use aws_lc_rs::{constant_time, digest};

/// The configured keys.
#[derive(Clone)]
pub struct ApiKeys {
    /// (name, SHA-256 of the key).
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.keys.len())
            .finish()
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Parse 64 hex digits.
pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    pub fn new(keys: Vec<(String, [u8; 32])>) -> ApiKeys {
        ApiKeys { keys }
    }

    /// Parse a key file: `NAME:SHA256HEX` per line, `#` comments.
    pub fn parse_file(text: &str) -> Result<Vec<(String, [u8; 32])>, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line
                .split_once(':')
                .and_then(|(name, hex)| Some((name.trim(), parse_hex(hex)?)))
                .filter(|(name, _)| !name.is_empty());
            match parsed {
                Some((name, hash)) => out.push((name.to_string(), hash)),
                None => return Err(format!("line {}: expected NAME:SHA256HEX", i + 1)),
            }
        }
        Ok(out)
    }

    /// The name of the key, if `key` is one. Every entry is compared, so
    /// the time taken does not say which one (or whether one) matched.
    pub fn check(&self, key: &str) -> Option<&str> {
        let hash = sha256(key.as_bytes());
        let mut found = None;
        for (name, stored) in &self.keys {
            if constant_time::verify_slices_are_equal(&hash, stored).is_ok() && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_by_hash() {
        let keys = ApiKeys::new(vec![
            ("a".into(), sha256(b"key-a")),
            ("b".into(), sha256(b"key-b")),
        ]);
        assert_eq!(keys.check("key-b"), Some("b"));
        assert_eq!(keys.check("key-c"), None);
        let hex: String = sha256(b"x").iter().map(|b| format!("{b:02x}")).collect();
        let parsed = ApiKeys::parse_file(&format!("# c\nsvc:{hex}\n")).unwrap();
        assert_eq!(parsed, vec![("svc".to_string(), sha256(b"x"))]);
        assert!(ApiKeys::parse_file("nohash").is_err());
    }
}
