//! Validation of `[[routes]]`: host, normalised path prefix, upstream,
//! origins, sub-protocols, per-route limits, auth policy, mode and access
//! logging — every problem of a route reported, with its key path.

use super::*;

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

pub(super) fn routes(
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
    let mut seen = Seen::default();
    let mut out = Vec::new();
    let identity_headers = identity_headers(policies);
    for (i, r) in raw.iter().enumerate() {
        let key = format!("routes[{i}]");
        let name = route_name(p, &key, i, r, &mut seen);
        // Every check of a route runs and reports on its own; the route is
        // built only when none of those it cannot do without failed.
        let (host, path) = route_match(p, &key, r, &mut seen);
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
        let has_claims = settings.auth.as_ref().is_some_and(|a| a.has_claims());
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
            deflate: deflate_mode(p, &key, r, settings.mode),
            access_sample: super::ops::route_access_sample(p, &key, r, config),
            http: super::http::route(p, &key, r, &config.http),
            fanout: crate::config::fanout::route(p, &key, &r.fanout, has_claims),
        }));
    }
    out
}

/// What the routes before this one took, for the duplicate checks.
#[derive(Default)]
struct Seen {
    names: HashSet<String>,
    /// (lower-case host, path prefix).
    matches: HashSet<(String, String)>,
}

/// The headers any auth policy sets from an identity, lower-case, sorted
/// and once each: every route strips them from what the client sent.
fn identity_headers(
    policies: &HashMap<String, Option<Arc<crate::auth::AuthPolicy>>>,
) -> Arc<[String]> {
    let mut headers: Vec<String> = policies
        .values()
        .flatten()
        .flat_map(|p| p.reserved_headers.iter().map(|h| h.to_ascii_lowercase()))
        .collect();
    headers.sort();
    headers.dedup();
    headers.into()
}

/// The route's name (`route{i}` when unnamed), which must be unique.
fn route_name(p: &mut Problems, key: &str, i: usize, r: &RawRoute, seen: &mut Seen) -> String {
    let name = if r.name.is_empty() {
        format!("route{i}")
    } else {
        r.name.clone()
    };
    if !seen.names.insert(name.clone()) {
        p.push(
            format!("{key}.name"),
            format!("duplicate route name {name:?}"),
        );
    }
    name
}

/// The route's host and path prefix, each checked on its own; the pair
/// must not be routed already.
fn route_match(
    p: &mut Problems,
    key: &str,
    r: &RawRoute,
    seen: &mut Seen,
) -> (Option<route::HostMatch>, Option<String>) {
    let host = route::HostMatch::parse(&r.host)
        .map_err(|e| p.push(format!("{key}.host"), e))
        .ok();
    let path = route_path(p, key, &r.path);
    if let Some(path) = &path {
        if !seen
            .matches
            .insert((r.host.to_ascii_lowercase(), path.clone()))
        {
            p.push(
                format!("{key}.path"),
                format!(
                    "duplicate route: host {:?} path {:?} is already routed",
                    r.host, path
                ),
            );
        }
    }
    (host, path)
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

/// `permessage_deflate`: end to end needs a byte relay, so mux routes
/// cannot have it; they can compress at the edge (the session inflates
/// client messages and compresses the application's).
fn deflate_mode(p: &mut Problems, key: &str, r: &RawRoute, mode: RouteMode) -> DeflateMode {
    let default = match mode {
        RouteMode::Passthrough => "passthrough",
        RouteMode::Mux => "off",
    };
    let key = format!("{key}.permessage_deflate");
    match (r.permessage_deflate.as_deref().unwrap_or(default), mode) {
        ("off", _) => DeflateMode::Off,
        ("passthrough", RouteMode::Passthrough) => DeflateMode::Passthrough,
        ("edge", _) => edge_deflate(p, &key, &r.deflate),
        ("passthrough", RouteMode::Mux) => {
            p.push(
                key,
                "\"passthrough\" is not available on mux routes (use \"edge\" or \"off\")",
            );
            DeflateMode::Off
        }
        (other, _) => {
            p.push(
                key,
                format!("{other:?} is not a permessage_deflate mode: use \"passthrough\", \"edge\" or \"off\""),
            );
            DeflateMode::Off
        }
    }
}

/// `routes[].deflate`, each lever checked against what zlib can do.
fn edge_deflate(p: &mut Problems, key: &str, d: &crate::config::raw::RawDeflate) -> DeflateMode {
    let key = key.trim_end_matches(".permessage_deflate");
    if !(9..=15).contains(&d.server_max_window_bits) {
        p.push(
            format!("{key}.deflate.server_max_window_bits"),
            "must be 9-15 (zlib cannot compress with an 8-bit window)",
        );
    }
    if !(8..=15).contains(&d.client_max_window_bits) {
        p.push(
            format!("{key}.deflate.client_max_window_bits"),
            "must be 8-15",
        );
    }
    if d.level > 9 {
        p.push(format!("{key}.deflate.level"), "must be 0-9");
    }
    DeflateMode::Edge(Arc::new(crate::deflate::EdgeConfig {
        server_no_context_takeover: d.server_no_context_takeover,
        client_no_context_takeover: d.client_no_context_takeover,
        server_max_window_bits: d.server_max_window_bits.clamp(9, 15),
        client_max_window_bits: d.client_max_window_bits.clamp(8, 15),
        level: d.level.min(9),
        min_size: d.min_size,
    }))
}
