//! Raw → typed configuration. Every check pushes a [`Problem`] and carries
//! on, so one run of `check-config` shows everything that is wrong.

use super::raw::{RawConfig, RawRoute, RawUpstream};
use super::*;
use crate::{origin, route, tls};
use std::collections::{HashMap, HashSet};

mod balance;
mod http;
mod routes;
mod upstreams;

use routes::routes;
use upstreams::{mux_upstreams, upstreams};

/// Collects problems under key paths.
#[derive(Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut p = Problems::default();

    let admin = admin_listen(&mut p, &raw.admin);
    let admin_access = admin_access(&mut p, &raw.admin);
    let limits = limits(&mut p, &raw.limits);
    let keepalive = keepalive(&mut p, &raw.keepalive);
    let drain = drain(&mut p, &raw.drain);

    let paths = paths(&mut p, &raw.paths);
    let listeners = listeners(&mut p, &raw);
    let upstreams = upstreams(&mut p, &raw.upstreams);
    let policies = crate::auth::policy::policies(&mut p, &raw.auth_policies);
    let http = http::global(&mut p, &raw.http);
    let routes = routes(&mut p, &raw, &upstreams, &limits, &policies);
    let ops = super::ops::ops(&mut p, &raw);
    let mux = mux(&mut p, &raw.mux);
    let fanout = super::fanout::global(&mut p, &raw.fanout);
    mux_upstreams(&mut p, &routes);
    let runtime = super::runtime::runtime(&mut p, &raw.runtime);

    if p.0.is_empty() {
        Ok(Config {
            raw,
            source: None,
            admin,
            admin_access,
            limits,
            paths,
            keepalive,
            drain,
            listeners,
            routes,
            upstreams,
            mux,
            log: ops.log,
            reload: ops.reload,
            readiness: ops.readiness,
            http,
            runtime,
            fanout,
        })
    } else {
        Err(ConfigError { problems: p.0 })
    }
}

/// `admin.listen`; empty: no admin listener.
fn admin_listen(p: &mut Problems, raw: &super::raw::RawAdmin) -> Option<SocketAddr> {
    if raw.listen.trim().is_empty() {
        None
    } else {
        addr(p, "admin.listen", &raw.listen)
    }
}

/// `[limits]`: the process-wide caps and bounds.
fn limits(p: &mut Problems, l: &super::raw::RawLimits) -> Limits {
    let limits = Limits {
        max_connections: nonzero(p, "limits.max_connections", l.max_connections) as usize,
        max_handshakes: nonzero(p, "limits.max_handshakes", l.max_handshakes) as usize,
        max_handshakes_per_ip: nonzero(p, "limits.max_handshakes_per_ip", l.max_handshakes_per_ip)
            as usize,
        max_connections_per_ip: (l.max_connections_per_ip > 0)
            .then_some(l.max_connections_per_ip as usize),
        handshake_rate_per_ip: handshake_rate(p, l),
        max_header_bytes: nonzero(p, "limits.max_header_bytes", l.max_header_bytes) as usize,
        handshake_timeout: duration(p, "limits.handshake_timeout", &l.handshake_timeout, false),
        max_frame_size: nonzero(p, "limits.max_frame_size", l.max_frame_size),
        max_message_size: nonzero(p, "limits.max_message_size", l.max_message_size),
        close_timeout: duration(p, "limits.close_timeout", &l.close_timeout, false),
        deflate_memory: l.deflate_memory,
    };
    if l.max_header_bytes > 0 && l.max_header_bytes < 256 {
        p.push("limits.max_header_bytes", "must be at least 256");
    }
    limits
}

/// `[keepalive]`; a zero ping interval turns pings off.
fn keepalive(p: &mut Problems, k: &super::raw::RawKeepalive) -> Keepalive {
    let ping = duration(p, "keepalive.ping_interval", &k.ping_interval, true);
    Keepalive {
        ping_interval: (!ping.is_zero()).then_some(ping),
        pong_timeout: duration(p, "keepalive.pong_timeout", &k.pong_timeout, false),
    }
}

/// `[drain]`.
fn drain(p: &mut Problems, d: &super::raw::RawDrain) -> Drain {
    Drain {
        grace: duration(p, "drain.grace", &d.grace, false),
        spread: duration(p, "drain.spread", &d.spread, true),
    }
}

fn admin_access(p: &mut Problems, raw: &super::raw::RawAdmin) -> AdminAccess {
    let token = raw.token.trim();
    if !token.is_empty() && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic())) {
        p.push(
            "admin.token",
            "must be at least 16 printable characters without spaces",
        );
    }
    let mut hosts = Vec::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        match route::HostMatch::parse(h) {
            Ok(route::HostMatch::Exact(name)) => hosts.push(name),
            _ => p.push(
                format!("admin.hosts[{i}]"),
                format!("{h:?} is not a host name"),
            ),
        }
    }
    AdminAccess {
        token: (!token.is_empty()).then(|| token.to_string()),
        hosts,
    }
}

fn paths(p: &mut Problems, raw: &super::raw::RawPaths) -> route::PathPolicy {
    let encoded_slash = route::EncodedSlash::parse(&raw.encoded_slash).unwrap_or_else(|e| {
        p.push("paths.encoded_slash", e);
        route::EncodedSlash::Reject
    });
    route::PathPolicy {
        encoded_slash,
        merge_slashes: raw.merge_slashes,
    }
}

/// `limits.handshake_rate_per_ip` per second, with its burst; 0 is off.
fn handshake_rate(p: &mut Problems, l: &super::raw::RawLimits) -> Option<(u32, u32)> {
    if l.handshake_rate_per_ip == 0 {
        return None;
    }
    let max = u64::from(u32::MAX);
    if l.handshake_rate_per_ip > max {
        p.push("limits.handshake_rate_per_ip", "too large");
    }
    if l.handshake_burst_per_ip == 0 || l.handshake_burst_per_ip > max {
        p.push(
            "limits.handshake_burst_per_ip",
            "must be between 1 and 4294967295 when a rate is set",
        );
    }
    Some((
        l.handshake_rate_per_ip.min(max) as u32,
        l.handshake_burst_per_ip.clamp(1, max) as u32,
    ))
}

fn listeners(p: &mut Problems, raw: &RawConfig) -> Vec<ListenerConfig> {
    if raw.listeners.is_empty() {
        p.push("listeners", "at least one listener is required");
    }
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let name = if l.name.is_empty() {
            format!("listener{i}")
        } else {
            l.name.clone()
        };
        if !names.insert(name.clone()) {
            p.push(
                format!("{key}.name"),
                format!("duplicate listener name {name:?}"),
            );
        }
        let Some(addr) = addr(p, &format!("{key}.listen"), &l.listen) else {
            continue;
        };
        if addr.port() != 0 && !addrs.insert(addr) {
            p.push(
                format!("{key}.listen"),
                format!("{addr} is used by another listener"),
            );
        }
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| tls::server_config(p, &format!("{key}.tls"), &t.certificates));
        out.push(ListenerConfig { name, addr, tls });
    }
    out
}

/// Ceiling of `mux.write_delay`: it adds up to that much latency to every
/// client message, and a pong or CLOSE to the application waits as long.
const MAX_WRITE_DELAY: Duration = Duration::from_millis(100);

fn mux(p: &mut Problems, m: &super::raw::RawMux) -> MuxConfig {
    let d =
        |p: &mut Problems, key: &str, text: &str| duration(p, &format!("mux.{key}"), text, false);
    let n = |p: &mut Problems, key: &str, v: u64| nonzero(p, &format!("mux.{key}"), v) as usize;
    let config = MuxConfig {
        ping_interval: d(p, "ping_interval", &m.ping_interval),
        pong_timeout: d(p, "pong_timeout", &m.pong_timeout),
        open_timeout: d(p, "open_timeout", &m.open_timeout),
        resume_grace: d(p, "resume_grace", &m.resume_grace),
        session_queue_bytes: n(p, "session_queue_bytes", m.session_queue_bytes),
        connection_queue_bytes: n(p, "connection_queue_bytes", m.connection_queue_bytes),
        resume_buffer_bytes: n(p, "resume_buffer_bytes", m.resume_buffer_bytes),
        batch_bytes: n(p, "batch_bytes", m.batch_bytes),
        write_delay: duration(p, "mux.write_delay", &m.write_delay, true),
        max_frame_bytes: n(p, "max_frame_bytes", m.max_frame_bytes).min(u32::MAX as usize),
        reconnect_min: d(p, "reconnect_min", &m.reconnect_min),
        reconnect_max: d(p, "reconnect_max", &m.reconnect_max),
    };
    if config.reconnect_max < config.reconnect_min {
        p.push("mux.reconnect_max", "must not be below mux.reconnect_min");
    }
    if config.write_delay > MAX_WRITE_DELAY {
        p.push(
            "mux.write_delay",
            format!(
                "must be at most {}",
                humantime::format_duration(MAX_WRITE_DELAY)
            ),
        );
    }
    config
}

fn addr(p: &mut Problems, key: &str, text: &str) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(key, format!("{text:?} is not an IP:PORT address"));
            None
        }
    }
}

fn nonzero(p: &mut Problems, key: &str, value: u64) -> u64 {
    if value == 0 {
        p.push(key, "must be greater than 0");
    }
    value
}

/// Parse a duration like `30s`, `500ms`, `5m`. `allow_zero` is for settings
/// where zero means "off".
pub(crate) fn duration(p: &mut Problems, key: &str, text: &str, allow_zero: bool) -> Duration {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() && !allow_zero => {
            p.push(key, "must be greater than 0");
            d
        }
        Ok(d) => d,
        Err(e) => {
            p.push(
                key,
                format!("{text:?} is not a duration (e.g. \"30s\", \"500ms\"): {e}"),
            );
            Duration::ZERO
        }
    }
}
