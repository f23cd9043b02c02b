//! Raw → typed configuration. Every check pushes a [`Problem`] and carries
//! on, so one run of `check-config` shows everything that is wrong.

use super::raw::{RawConfig, RawRoute, RawUpstream};
use super::*;
use crate::{origin, route, tls};
use std::collections::{HashMap, HashSet};

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

    let admin = if raw.admin.listen.trim().is_empty() {
        None
    } else {
        addr(&mut p, "admin.listen", &raw.admin.listen)
    };

    let admin_access = admin_access(&mut p, &raw.admin);
    let l = &raw.limits;
    let limits = Limits {
        max_connections: nonzero(&mut p, "limits.max_connections", l.max_connections) as usize,
        max_handshakes: nonzero(&mut p, "limits.max_handshakes", l.max_handshakes) as usize,
        max_handshakes_per_ip: nonzero(
            &mut p,
            "limits.max_handshakes_per_ip",
            l.max_handshakes_per_ip,
        ) as usize,
        max_connections_per_ip: (l.max_connections_per_ip > 0)
            .then_some(l.max_connections_per_ip as usize),
        handshake_rate_per_ip: handshake_rate(&mut p, l),
        max_header_bytes: nonzero(&mut p, "limits.max_header_bytes", l.max_header_bytes) as usize,
        handshake_timeout: duration(
            &mut p,
            "limits.handshake_timeout",
            &l.handshake_timeout,
            false,
        ),
        max_frame_size: nonzero(&mut p, "limits.max_frame_size", l.max_frame_size),
        max_message_size: nonzero(&mut p, "limits.max_message_size", l.max_message_size),
        close_timeout: duration(&mut p, "limits.close_timeout", &l.close_timeout, false),
    };
    if l.max_header_bytes > 0 && l.max_header_bytes < 256 {
        p.push("limits.max_header_bytes", "must be at least 256");
    }
    let ping = duration(
        &mut p,
        "keepalive.ping_interval",
        &raw.keepalive.ping_interval,
        true,
    );
    let keepalive = Keepalive {
        ping_interval: (!ping.is_zero()).then_some(ping),
        pong_timeout: duration(
            &mut p,
            "keepalive.pong_timeout",
            &raw.keepalive.pong_timeout,
            false,
        ),
    };
    let drain = Drain {
        grace: duration(&mut p, "drain.grace", &raw.drain.grace, false),
        spread: duration(&mut p, "drain.spread", &raw.drain.spread, true),
    };

    let paths = paths(&mut p, &raw.paths);
    let listeners = listeners(&mut p, &raw);
    let upstreams = upstreams(&mut p, &raw.upstreams);
    let policies = crate::auth::policy::policies(&mut p, &raw.auth_policies);
    let routes = routes(&mut p, &raw, &upstreams, &limits, &policies);
    let ops = super::ops::ops(&mut p, &raw);
    let mux = mux(&mut p, &raw.mux);
    mux_upstreams(&mut p, &routes);

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
        })
    } else {
        Err(ConfigError { problems: p.0 })
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

fn upstreams(p: &mut Problems, raw: &[RawUpstream]) -> Vec<Arc<UpstreamConfig>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let key = format!("upstreams[{i}]");
        if u.name.is_empty() {
            p.push(format!("{key}.name"), "must not be empty");
        } else if !names.insert(u.name.clone()) {
            p.push(
                format!("{key}.name"),
                format!("duplicate upstream name {:?}", u.name),
            );
        }
        if u.endpoints.is_empty() {
            p.push(
                format!("{key}.endpoints"),
                "at least one endpoint is required",
            );
        }
        let endpoints: Vec<EndpointConfig> = u
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(j, e)| endpoint(p, &format!("{key}.endpoints[{j}]"), e))
            .collect();
        let tls = if endpoints.iter().any(|e| e.secure) {
            tls::client_config(p, &format!("{key}.ca_file"), &u.ca_file)
        } else {
            None
        };
        let mut add_headers = Vec::new();
        for (name, value) in &u.add_headers {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !valid_name || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                p.push(
                    format!("{key}.add_headers.{name}"),
                    "not a valid header name/value",
                );
            } else {
                add_headers.push((name.clone(), value.clone()));
            }
        }
        let mux_secret = mux_secret(p, &key, u);
        out.push(Arc::new(UpstreamConfig {
            name: u.name.clone(),
            endpoints,
            connect_timeout: duration(
                p,
                &format!("{key}.connect_timeout"),
                &u.connect_timeout,
                false,
            ),
            handshake_timeout: duration(
                p,
                &format!("{key}.handshake_timeout"),
                &u.handshake_timeout,
                false,
            ),
            tls,
            preserve_host: u.preserve_host,
            trust_forwarded_headers: u.trust_forwarded_headers,
            add_headers,
            pool_size: match u.pool_size {
                1..=64 => u.pool_size as usize,
                _ => {
                    p.push(format!("{key}.pool_size"), "must be between 1 and 64");
                    1
                }
            },
            mux_secret,
        }));
    }
    out
}

/// Shortest mux secret accepted: enough that guessing it is hopeless.
const MIN_MUX_SECRET: usize = 16;

/// `mux_secret` or `mux_secret_file`: at least [`MIN_MUX_SECRET`] bytes of
/// visible ASCII (it travels as a header value).
fn mux_secret(p: &mut Problems, key: &str, u: &RawUpstream) -> Option<String> {
    let (field, secret) = match (u.mux_secret.is_empty(), u.mux_secret_file.is_empty()) {
        (true, true) => return None,
        (false, true) => ("mux_secret", u.mux_secret.clone()),
        (true, false) => match std::fs::read_to_string(&u.mux_secret_file) {
            Ok(text) => (
                "mux_secret_file",
                text.trim_end_matches(['\r', '\n']).to_string(),
            ),
            Err(e) => {
                p.push(
                    format!("{key}.mux_secret_file"),
                    format!("{}: {e}", u.mux_secret_file),
                );
                return None;
            }
        },
        (false, false) => {
            p.push(key, "at most one of `mux_secret` and `mux_secret_file`");
            return None;
        }
    };
    if secret.len() < MIN_MUX_SECRET || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        p.push(
            format!("{key}.{field}"),
            format!("must be at least {MIN_MUX_SECRET} visible ASCII characters"),
        );
        return None;
    }
    Some(secret)
}

/// A route's path prefix: valid, and in the normal form request paths are
/// brought to before routing (a prefix no normalised path can start with
/// would never match).
fn route_path(p: &mut Problems, key: &str, raw: &str) -> Option<String> {
    let path = route::normalize_prefix(raw)
        .map_err(|e| p.push(format!("{key}.path"), e))
        .ok()?;
    let normal = route::normalize::normalize(&path, route::PathPolicy::default());
    if normal.as_deref() != Ok(path.as_str()) {
        p.push(
            format!("{key}.path"),
            format!("{path:?} is not in normal form (no '.', '..', '//' or escapes)"),
        );
        return None;
    }
    Some(path)
}

fn routes(
    p: &mut Problems,
    config: &RawConfig,
    upstreams: &[Arc<UpstreamConfig>],
    limits: &Limits,
    policies: &HashMap<String, Option<Arc<crate::auth::AuthPolicy>>>,
) -> Vec<Arc<RouteConfig>> {
    let raw: &[RawRoute] = &config.routes;
    if raw.is_empty() {
        p.push("routes", "at least one route is required");
    }
    let by_name: HashMap<&str, &Arc<UpstreamConfig>> =
        upstreams.iter().map(|u| (u.name.as_str(), u)).collect();
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut out = Vec::new();
    let mut identity_headers: Vec<String> = policies
        .values()
        .flatten()
        .flat_map(|p| p.reserved_headers.iter().map(|h| h.to_ascii_lowercase()))
        .collect();
    identity_headers.sort();
    identity_headers.dedup();
    let identity_headers: Arc<[String]> = identity_headers.into();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("routes[{i}]");
        let name = if r.name.is_empty() {
            format!("route{i}")
        } else {
            r.name.clone()
        };
        if !names.insert(name.clone()) {
            p.push(
                format!("{key}.name"),
                format!("duplicate route name {name:?}"),
            );
        }
        // Every check of a route runs and reports on its own; the route is
        // built only when none of those it cannot do without failed.
        let host = route::HostMatch::parse(&r.host)
            .map_err(|e| p.push(format!("{key}.host"), e))
            .ok();
        let path = route_path(p, &key, &r.path);
        if let Some(path) = &path {
            if !keys.insert((r.host.to_ascii_lowercase(), path.clone())) {
                p.push(
                    format!("{key}.path"),
                    format!(
                        "duplicate route: host {:?} path {:?} is already routed",
                        r.host, path
                    ),
                );
            }
        }
        let upstream = by_name.get(r.upstream.as_str()).map(|u| Arc::clone(u));
        if upstream.is_none() {
            p.push(
                format!("{key}.upstream"),
                format!("no upstream named {:?}", r.upstream),
            );
        }
        let origins = origin::OriginPolicy::parse(&r.origins, r.require_origin)
            .map_err(|e| p.push(format!("{key}.origins"), e))
            .ok();
        let settings = route_settings(p, &key, r, limits, policies);
        let (Some(host), Some(path), Some(upstream), Some(origins)) =
            (host, path, upstream, origins)
        else {
            continue;
        };
        out.push(Arc::new(RouteConfig {
            name,
            host,
            path,
            upstream,
            strip_prefix: r.strip_prefix,
            origins,
            subprotocols: r.subprotocols.clone(),
            idle_timeout: settings.idle_timeout,
            max_message_size: settings.max_message_size,
            auth: settings.auth,
            identity_headers: Arc::clone(&identity_headers),
            mode: settings.mode,
            access_sample: super::ops::route_access_sample(p, &key, r, config),
        }));
    }
    out
}

/// The parts of a route that have a usable value even when wrong (the
/// problem is reported and a default stands in), so they never stop the
/// other checks.
struct RouteSettings {
    idle_timeout: Option<Duration>,
    max_message_size: u64,
    auth: Option<Arc<crate::auth::AuthPolicy>>,
    mode: RouteMode,
}

fn route_settings(
    p: &mut Problems,
    key: &str,
    r: &RawRoute,
    limits: &Limits,
    policies: &HashMap<String, Option<Arc<crate::auth::AuthPolicy>>>,
) -> RouteSettings {
    for (j, sp) in r.subprotocols.iter().enumerate() {
        if !crate::handshake::is_token(sp) {
            p.push(
                format!("{key}.subprotocols[{j}]"),
                "not a valid sub-protocol token",
            );
        }
    }
    let idle_timeout = r
        .idle_timeout
        .as_ref()
        .map(|d| duration(p, &format!("{key}.idle_timeout"), d, true))
        .filter(|d| !d.is_zero());
    let max_message_size = match r.max_message_size {
        Some(0) => {
            p.push(format!("{key}.max_message_size"), "must be greater than 0");
            0
        }
        Some(n) => n,
        None => limits.max_message_size,
    };
    let auth = if r.auth.is_empty() {
        None
    } else {
        // A policy that exists but is broken has its own problems.
        let found = policies.get(&r.auth).cloned();
        if found.is_none() {
            p.push(
                format!("{key}.auth"),
                format!("no auth policy named {:?}", r.auth),
            );
        }
        found.flatten()
    };
    let mode = match r.mode.as_str() {
        "passthrough" => RouteMode::Passthrough,
        "mux" => RouteMode::Mux,
        other => {
            p.push(
                format!("{key}.mode"),
                format!("{other:?} is not a mode: use \"passthrough\" or \"mux\""),
            );
            RouteMode::Passthrough
        }
    };
    RouteSettings {
        idle_timeout,
        max_message_size,
        auth,
        mode,
    }
}

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
        max_frame_bytes: n(p, "max_frame_bytes", m.max_frame_bytes).min(u32::MAX as usize),
        reconnect_min: d(p, "reconnect_min", &m.reconnect_min),
        reconnect_max: d(p, "reconnect_max", &m.reconnect_max),
    };
    if config.reconnect_max < config.reconnect_min {
        p.push("mux.reconnect_max", "must not be below mux.reconnect_min");
    }
    config
}

/// A mux endpoint speaks `tidegate.mux.v1`, not plain WebSocket: one
/// upstream cannot serve both kinds of route.
fn mux_upstreams(p: &mut Problems, routes: &[Arc<RouteConfig>]) {
    for (i, r) in routes.iter().enumerate() {
        let other = routes
            .iter()
            .find(|o| o.upstream.name == r.upstream.name && o.mode != r.mode);
        if let (RouteMode::Mux, Some(o)) = (r.mode, other) {
            p.push(
                format!("routes[{i}].upstream"),
                format!(
                    "upstream {:?} is used by mux route {:?} and passthrough route {:?}; give each mode its own upstream",
                    r.upstream.name, r.name, o.name
                ),
            );
        }
    }
}

fn endpoint(p: &mut Problems, key: &str, text: &str) -> Option<EndpointConfig> {
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            p.push(key, format!("{text:?} is not a URL: {e}"));
            return None;
        }
    };
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => {
            p.push(key, format!("scheme {other:?} is not ws or wss"));
            return None;
        }
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        p.push(key, "missing host");
        return None;
    };
    if url.query().is_some() || url.fragment().is_some() {
        p.push(key, "an endpoint URL takes no query or fragment");
        return None;
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if secure { 443 } else { 80 });
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Some(EndpointConfig {
        url: crate::redact::url(text),
        secure,
        host,
        port,
        authority,
        base_path: url.path().trim_end_matches('/').to_string(),
    })
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
