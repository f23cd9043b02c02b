//! The client side as written: `[[listeners]]` with their TLS
//! certificates, `[limits]` (connection caps, handshake and message bounds),
//! `[paths]` (request path normalisation) and `[keepalive]` (pings on both
//! legs). Validated by `validate`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPaths {
    /// What a client-sent `%2F` becomes: `reject` (400), `keep`, `decode`.
    pub encoded_slash: String,
    /// Merge runs of `/` into one before routing.
    pub merge_slashes: bool,
}

impl Default for RawPaths {
    fn default() -> Self {
        Self {
            encoded_slash: "reject".into(),
            merge_slashes: true,
        }
    }
}

/// `limits.max_connections` when the configuration does not say.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Client connections held at once, over every listener.
    pub max_connections: u64,
    /// Bytes of request head (request line + headers) accepted from a client.
    pub max_header_bytes: u64,
    /// Time from accept (TLS included) to a complete request head.
    pub handshake_timeout: String,
    /// Largest single frame payload, either direction.
    pub max_frame_size: u64,
    /// Largest message (sum of its fragments), either direction.
    pub max_message_size: u64,
    /// Time allowed for the closing handshake once a close started.
    pub close_timeout: String,
    /// Connections still in TLS or their request head, over every client.
    pub max_handshakes: u64,
    /// Connections in TLS or their request head from one client address.
    pub max_handshakes_per_ip: u64,
    /// Connections held at once by one client address; 0: no limit.
    pub max_connections_per_ip: u64,
    /// New connections per second from one client address; 0: no limit.
    pub handshake_rate_per_ip: u64,
    /// Connections one address may open in a burst above the rate.
    pub handshake_burst_per_ip: u64,
    /// Compression memory all edge permessage-deflate sessions may reserve
    /// together (bytes); over it new sessions run uncompressed.
    pub deflate_memory: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: 16 * 1024,
            handshake_timeout: "10s".into(),
            max_frame_size: 64 << 20,
            max_message_size: 64 << 20,
            close_timeout: "5s".into(),
            max_handshakes: 4096,
            max_handshakes_per_ip: 256,
            max_connections_per_ip: 0,
            handshake_rate_per_ip: 0,
            handshake_burst_per_ip: 100,
            deflate_memory: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeepalive {
    /// Silence on a leg after which tidegate pings it; "0s" disables pings.
    pub ping_interval: String,
    /// How long a pinged leg may stay silent before it is closed.
    pub pong_timeout: String,
}

impl Default for RawKeepalive {
    fn default() -> Self {
        Self {
            ping_interval: "30s".into(),
            pong_timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListener {
    /// Name used in metrics and logs.
    pub name: String,
    /// `IP:PORT` to bind.
    pub listen: String,
    /// Present: the listener terminates TLS.
    pub tls: Option<RawTls>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// The first certificate is the default (no SNI, or no name matched).
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCertificate {
    /// PEM file: the certificate chain, leaf first.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// SNI names this certificate answers (`*.example.com` allowed).
    pub server_names: Vec<String>,
}
