//! Validation of `[[upstreams]]`: endpoints (URL, TLS), timeouts, mux pool
//! settings and the mux secret; and the check that every upstream a mux
//! route uses is one that can be pooled.

use super::*;

pub(super) fn upstreams(p: &mut Problems, raw: &[RawUpstream]) -> Vec<Arc<UpstreamConfig>> {
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
        let balance = super::balance::balance(p, &key, u);
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
                None => None,
                Some(n @ 1..=64) => Some(n as usize),
                Some(_) => {
                    p.push(format!("{key}.pool_size"), "must be between 1 and 64");
                    None
                }
            },
            mux_secret,
            balance,
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

/// A mux endpoint speaks `tidegate.mux.v1`, not plain WebSocket: one
/// upstream cannot serve both kinds of route.
pub(super) fn mux_upstreams(p: &mut Problems, routes: &[Arc<RouteConfig>]) {
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
    // http:// and https:// name the same connections as ws:// and wss://
    // (a WebSocket handshake is an HTTP request): an upstream that serves
    // plain HTTP routes is written the way its operators know it.
    let secure = match url.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        other => {
            p.push(
                key,
                format!("scheme {other:?} is not ws, wss, http or https"),
            );
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
