//! Validation of an upstream's balancing, health, affinity cookie and DNS
//! keys into [`BalanceConfig`]; every problem is reported with its key.

use super::super::balance::{AffinityCookie, BalanceConfig, HashKey, HealthCheck, Passive, Policy};
use super::*;

/// Shortest affinity-cookie secret accepted.
const MIN_COOKIE_SECRET: usize = 16;

pub(super) fn balance(p: &mut Problems, key: &str, u: &RawUpstream) -> BalanceConfig {
    let policy = match u.balance.as_str() {
        "round_robin" => Policy::RoundRobin,
        "least_connections" => Policy::LeastConnections,
        "hash" => match hash_key(&u.hash_key) {
            Ok(k) => Policy::Hash(k),
            Err(why) => {
                p.push(format!("{key}.hash_key"), why);
                Policy::RoundRobin
            }
        },
        other => {
            p.push(
                format!("{key}.balance"),
                format!("{other:?} is not a policy: use \"round_robin\", \"least_connections\" or \"hash\""),
            );
            Policy::RoundRobin
        }
    };
    if u.balance != "hash" && !u.hash_key.is_empty() {
        p.push(format!("{key}.hash_key"), "only with balance = \"hash\"");
    }
    let resolve = duration(
        p,
        &format!("{key}.resolve_interval"),
        &u.resolve_interval,
        true,
    );
    let mut nameservers = Vec::new();
    for (i, text) in u.nameservers.iter().enumerate() {
        match text.parse::<SocketAddr>() {
            Ok(a) => nameservers.push(a),
            Err(_) => p.push(
                format!("{key}.nameservers[{i}]"),
                format!("{text:?} is not IP:PORT"),
            ),
        }
    }
    BalanceConfig {
        policy,
        health: health(p, key, u),
        passive: passive(p, key, u),
        cookie: cookie(p, key, u),
        resolve_interval: (!resolve.is_zero()).then_some(resolve),
        nameservers,
    }
}

/// `cookie:NAME`, `header:NAME`, `query:NAME`, `path_segment:N`, `client_ip`.
fn hash_key(text: &str) -> Result<HashKey, String> {
    let name_ok = |n: &str| !n.is_empty() && is_token(n);
    match text.split_once(':') {
        None if text == "client_ip" => Ok(HashKey::ClientIp),
        Some(("cookie", n)) if name_ok(n) => Ok(HashKey::Cookie(n.to_string())),
        Some(("header", n)) if name_ok(n) => Ok(HashKey::Header(n.to_ascii_lowercase())),
        Some(("query", n)) if !n.is_empty() => Ok(HashKey::Query(n.to_string())),
        Some(("path_segment", n)) => n
            .parse()
            .map(HashKey::PathSegment)
            .map_err(|_| format!("{text:?}: path_segment takes a number (0 is the first)")),
        _ => Err(format!(
            "{text:?} is not a key: use cookie:NAME, header:NAME, query:NAME, path_segment:N or client_ip"
        )),
    }
}

fn is_token(s: &str) -> bool {
    crate::handshake::is_token(s)
}

fn health(p: &mut Problems, key: &str, u: &RawUpstream) -> Option<HealthCheck> {
    let h = &u.health;
    let k = |f: &str| format!("{key}.health.{f}");
    let interval = duration(p, &k("interval"), &h.interval, false);
    let timeout = duration(p, &k("timeout"), &h.timeout, false);
    for (f, v) in [
        ("healthy_threshold", h.healthy_threshold),
        ("unhealthy_threshold", h.unhealthy_threshold),
    ] {
        if v == 0 {
            p.push(k(f), "must be at least 1");
        }
    }
    if h.path.is_empty() {
        return None;
    }
    let path_ok = h.path.starts_with('/') && h.path.bytes().all(|b| b.is_ascii_graphic());
    if !path_ok {
        p.push(
            k("path"),
            "must start with / and hold no spaces or controls",
        );
    }
    Some(HealthCheck {
        path: h.path.clone(),
        interval,
        timeout,
        healthy_threshold: h.healthy_threshold.max(1),
        unhealthy_threshold: h.unhealthy_threshold.max(1),
    })
}

fn passive(p: &mut Problems, key: &str, u: &RawUpstream) -> Passive {
    let h = &u.health;
    let eject_for = duration(p, &format!("{key}.health.eject_for"), &h.eject_for, false);
    let eject_max = duration(p, &format!("{key}.health.eject_max"), &h.eject_max, false);
    if eject_max < eject_for {
        p.push(
            format!("{key}.health.eject_max"),
            "must be at least health.eject_for",
        );
    }
    Passive {
        eject_after: h.eject_after,
        eject_for,
        eject_max: eject_max.max(eject_for),
    }
}

fn cookie(p: &mut Problems, key: &str, u: &RawUpstream) -> Option<AffinityCookie> {
    let c = &u.affinity_cookie;
    let k = |f: &str| format!("{key}.affinity_cookie.{f}");
    if c.name.is_empty() {
        return None;
    }
    if !is_token(&c.name) {
        p.push(k("name"), format!("{:?} is not a cookie name", c.name));
    }
    let path_ok =
        c.path.starts_with('/') && c.path.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    if !path_ok {
        p.push(
            k("path"),
            "must start with / and hold no `;`, spaces or controls",
        );
    }
    let secret = if c.secret.is_empty() {
        process_secret().to_vec()
    } else {
        if c.secret.len() < MIN_COOKIE_SECRET {
            p.push(
                k("secret"),
                format!("must be at least {MIN_COOKIE_SECRET} bytes"),
            );
        }
        c.secret.as_bytes().to_vec()
    };
    let max_age = (!c.max_age.is_empty()).then(|| duration(p, &k("max_age"), &c.max_age, false));
    Some(AffinityCookie {
        name: c.name.clone(),
        secret,
        path: c.path.clone(),
        max_age,
        secure: c.secure,
    })
}

/// The affinity key when none is configured: random, but one per process,
/// so a reload does not invalidate every client's cookie.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(rand::random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_parse() {
        assert_eq!(hash_key("client_ip"), Ok(HashKey::ClientIp));
        assert_eq!(hash_key("cookie:sid"), Ok(HashKey::Cookie("sid".into())));
        assert_eq!(
            hash_key("header:X-User"),
            Ok(HashKey::Header("x-user".into()))
        );
        assert_eq!(hash_key("query:room"), Ok(HashKey::Query("room".into())));
        assert_eq!(hash_key("path_segment:2"), Ok(HashKey::PathSegment(2)));
        for bad in [
            "",
            "cookie:",
            "header:a b",
            "path_segment:x",
            "ip",
            "body:x",
        ] {
            assert!(hash_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
