//! Who the client is, as the gateway saw it: its address, whether it came
//! over TLS, and its IP already written out as text. Built once per
//! connection; every request the connection carries puts the IP into
//! `X-Forwarded-For` and `Forwarded`, and formatting an address (the
//! `Display` of `IpAddr`) was measurable per request on the small-GET
//! benchmark (docs/performance.md, "HTTP proxying", seventh round).

use std::fmt;
use std::net::SocketAddr;

/// Longest text of an IP address: an IPv6 address with an embedded IPv4
/// one, `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
const IP_TEXT_MAX: usize = 45;

/// Who the client is. Small and `Copy`: the phases of a connection and
/// each exchange hold it by value.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// The client connected over TLS.
    pub tls: bool,
    /// `addr`'s IP, written once.
    ip: IpText,
}

impl ClientInfo {
    pub fn new(addr: SocketAddr, tls: bool) -> ClientInfo {
        ClientInfo {
            addr,
            tls,
            ip: IpText::of(addr),
        }
    }

    /// The client's IP as `Display` writes it (no port, no brackets).
    pub fn ip_text(&self) -> &str {
        self.ip.as_str()
    }
}

/// An IP address's text in place: no allocation, and `ClientInfo` stays
/// `Copy`.
#[derive(Clone, Copy)]
struct IpText {
    len: u8,
    bytes: [u8; IP_TEXT_MAX],
}

impl IpText {
    fn of(addr: SocketAddr) -> IpText {
        let mut text = IpText {
            len: 0,
            bytes: [0; IP_TEXT_MAX],
        };
        // Cannot fail: no address is longer than `IP_TEXT_MAX`. Were it
        // to, the text would be cut, never a panic.
        let _ = fmt::write(&mut text, format_args!("{}", addr.ip()));
        text
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended (`write_str`), so the
        // bytes are always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let end = at + s.len();
        let Some(into) = self.bytes.get_mut(at..end) else {
            return Err(fmt::Error);
        };
        into.copy_from_slice(s.as_bytes());
        // `end` ≤ IP_TEXT_MAX < 256.
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Debug for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_text_is_what_display_writes() {
        for addr in [
            "192.0.2.1:5000",
            "[::1]:80",
            "[2001:db8::7]:443",
            "[::ffff:192.0.2.1]:1",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "255.255.255.255:0",
        ] {
            let addr: SocketAddr = addr.parse().expect("literal address");
            let client = ClientInfo::new(addr, false);
            assert_eq!(client.ip_text(), addr.ip().to_string());
        }
    }

    #[test]
    fn the_longest_ipv6_text_fits() {
        let ip: std::net::Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .expect("literal address");
        let addr = SocketAddr::new(ip.into(), 1);
        assert_eq!(
            ClientInfo::new(addr, true).ip_text(),
            ip.to_string(),
            "cut short"
        );
    }
}
