//! What a run points at: a `ws://` or `wss://` URL on loopback (`http://`
//! or `https://` for the HTTP scenarios), and for
//! `compare`, a named target with an optional process id to charge CPU to.
//!
//! The harness only ever loads this machine: a URL whose host is not in
//! 127.0.0.0/8, `::1` or `localhost` is refused before any socket is opened.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use thiserror::Error;

/// Why a target string was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("URL must start with ws://, wss://, http:// or https://, got {0:?}")]
    Scheme(String),
    #[error("URL {0:?} has no host")]
    NoHost(String),
    #[error("bad port in URL {0:?}")]
    Port(String),
    #[error(
        "refusing target host {0:?}: the load generator only targets loopback \
         (127.0.0.0/8, ::1 or localhost)"
    )]
    NotLoopback(String),
    #[error("target must look like NAME=URL or NAME=URL@PID, got {0:?}")]
    Named(String),
    #[error("bad pid {0:?} after '@' in target")]
    Pid(String),
}

/// A parsed, loopback-only WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `wss://` or `https://` (TLS).
    pub tls: bool,
    /// Written as `http(s)://`: the target of an HTTP scenario. Only the
    /// URL's spelling; the WebSocket scenarios upgrade whatever it says.
    pub http: bool,
    /// Host as written, for the `Host` header and TLS server name.
    pub host: String,
    /// Address to connect to (always loopback).
    pub addr: SocketAddr,
    /// Path and query sent in the request line, starting with `/`.
    pub path: String,
    /// Offer `permessage-deflate` in the upgrade (`idle --offer-deflate`):
    /// held connections then measure a gateway's edge-compression state.
    pub offer_deflate: bool,
}

impl Target {
    /// The `Host` header value: the port is left out when it is the default.
    pub fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.addr.port() == default {
            host
        } else {
            format!("{host}:{}", self.addr.port())
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match (self.http, self.tls) {
            (false, false) => "ws",
            (false, true) => "wss",
            (true, false) => "http",
            (true, true) => "https",
        };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let schemes = [
            ("ws://", false, false),
            ("wss://", true, false),
            ("http://", false, true),
            ("https://", true, true),
        ];
        let (rest, tls, http) = schemes
            .iter()
            .find_map(|&(p, tls, http)| url.strip_prefix(p).map(|r| (r, tls, http)))
            .ok_or_else(|| TargetError::Scheme(url.to_string()))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = split_host_port(authority, url)?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        let ip = loopback_ip(&host).ok_or_else(|| TargetError::NotLoopback(host.clone()))?;
        Ok(Target {
            tls,
            http,
            host,
            addr: SocketAddr::new(ip, port),
            path,
            offer_deflate: false,
        })
    }
}

/// Splits `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str, url: &str) -> Result<(String, Option<u16>), TargetError> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| TargetError::Port(url.to_string()))
    };
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| TargetError::NoHost(url.to_string()))?;
        let host = rest[..end].to_string();
        let tail = &rest[end + 1..];
        let p = match tail.strip_prefix(':') {
            Some(p) => Some(port(p)?),
            None if tail.is_empty() => None,
            None => return Err(TargetError::Port(url.to_string())),
        };
        return Ok((host, p));
    }
    let (host, p) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(TargetError::NoHost(url.to_string()));
    }
    Ok((host.to_string(), p))
}

/// The loopback address `host` stands for, or `None` if it is anything else.
/// Names are never resolved: only the literal `localhost` is accepted.
pub fn loopback_ip(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    match host.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if v4.is_loopback() => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) if v6 == Ipv6Addr::LOCALHOST => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

/// `NAME=URL[@PID]`, one side of a `compare` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTarget {
    /// Label in the result table.
    pub name: String,
    /// Where to connect.
    pub target: Target,
    /// Process whose CPU time is charged to this target, if given.
    pub pid: Option<u32>,
}

impl FromStr for NamedTarget {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, rest) = s
            .split_once('=')
            .filter(|(n, r)| !n.is_empty() && !r.is_empty())
            .ok_or_else(|| TargetError::Named(s.to_string()))?;
        // Only the last '@' can start a pid, and only if digits follow it, so
        // a URL with user info ("ws://u@127.0.0.1/") is not misread.
        let (url, pid) = match rest.rsplit_once('@') {
            Some((url, pid)) if url.contains("://") && !pid.contains('/') => {
                let pid = pid
                    .parse::<u32>()
                    .map_err(|_| TargetError::Pid(pid.to_string()))?;
                (url, Some(pid))
            }
            _ => (rest, None),
        };
        Ok(NamedTarget {
            name: name.to_string(),
            target: url.parse()?,
            pid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_tls_urls() {
        let t: Target = "ws://127.0.0.1:9001/echo?x=1".parse().unwrap();
        assert!(!t.tls);
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(t.path, "/echo?x=1");
        assert_eq!(t.host_header(), "127.0.0.1:9001");
        let t: Target = "wss://localhost".parse().unwrap();
        assert!(t.tls);
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.path, "/");
        assert_eq!(t.host_header(), "localhost");
        let t: Target = "ws://[::1]:8080?q".parse().unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(t.path, "/?q");
        assert_eq!(t.host_header(), "[::1]:8080");
        let t: Target = "http://127.0.0.1:8080/bytes/65536".parse().unwrap();
        assert!(t.http && !t.tls);
        assert_eq!(t.to_string(), "http://127.0.0.1:8080/bytes/65536");
        let t: Target = "https://localhost/".parse().unwrap();
        assert!(t.http && t.tls && t.addr.port() == 443);
        let t: Target = "ws://127.9.8.7:1/".parse().unwrap();
        assert_eq!(t.addr.ip().to_string(), "127.9.8.7");
    }

    #[test]
    fn refuses_non_loopback_and_junk() {
        for bad in [
            "ws://10.0.0.1:80/",
            "ws://192.168.1.1/",
            "wss://example.com/",
            "ws://[::2]:80/",
            "ws://0.0.0.0:80/",
        ] {
            assert!(
                matches!(bad.parse::<Target>(), Err(TargetError::NotLoopback(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "ftp://127.0.0.1/".parse::<Target>(),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            "http://10.0.0.1/".parse::<Target>(),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            "ws://127.0.0.1:x/".parse::<Target>(),
            Err(TargetError::Port(_))
        ));
        assert!(matches!(
            "ws://:80/".parse::<Target>(),
            Err(TargetError::NoHost(_))
        ));
    }

    #[test]
    fn parses_named_targets() {
        let n: NamedTarget = "tidegate=ws://127.0.0.1:8080/echo@12345".parse().unwrap();
        assert_eq!(n.name, "tidegate");
        assert_eq!(n.target.path, "/echo");
        assert_eq!(n.pid, Some(12345));
        let n: NamedTarget = "direct=ws://127.0.0.1:9001/".parse().unwrap();
        assert_eq!(n.pid, None);
        let n: NamedTarget = "nginx=ws://127.0.0.1:8081@6789".parse().unwrap();
        assert_eq!(n.pid, Some(6789));
        assert_eq!(n.target.addr.port(), 8081);
        assert!(matches!(
            "x=ws://127.0.0.1/@abc".parse::<NamedTarget>(),
            Err(TargetError::Pid(_))
        ));
        assert!(matches!(
            "ws://127.0.0.1/".parse::<NamedTarget>(),
            Err(TargetError::Named(_))
        ));
        assert!(matches!(
            "=ws://127.0.0.1/".parse::<NamedTarget>(),
            Err(TargetError::Named(_))
        ));
        assert!(matches!(
            "x=ws://8.8.8.8/@1".parse::<NamedTarget>(),
            Err(TargetError::NotLoopback(_))
        ));
    }
}
