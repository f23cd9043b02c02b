use super::*;
use crate::config::raw::RawConfig;
use crate::config::Config;
use crate::metrics::Metrics;

fn seeds(n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| stable_hash(format!("ws://10.0.0.{i}:8080").as_bytes()))
        .collect()
}

fn owner(key: u64, pool: &[usize], seeds: &[u64]) -> usize {
    rendezvous(key, pool, seeds)[0]
}

const KEYS: u64 = 20_000;

/// Removing 1 of N endpoints moves exactly the keys it owned (≈ 1/N),
/// and adding one takes ≈ 1/(N+1) of the keys, all to the newcomer.
#[test]
fn rendezvous_remaps_minimally() {
    let n = 10;
    let seeds = seeds(n + 1);
    let all: Vec<usize> = (0..n).collect();
    let without_3: Vec<usize> = all.iter().copied().filter(|&i| i != 3).collect();
    let with_new: Vec<usize> = (0..=n).collect();
    let (mut moved, mut owned_by_3, mut joined) = (0u64, 0u64, 0u64);
    for k in 0..KEYS {
        let key = stable_hash(format!("session-{k}").as_bytes());
        let before = owner(key, &all, &seeds);
        let after = owner(key, &without_3, &seeds);
        owned_by_3 += u64::from(before == 3);
        if before != after {
            moved += 1;
            assert_eq!(before, 3, "only the removed endpoint's keys move");
        }
        let grown = owner(key, &with_new, &seeds);
        if grown != before {
            joined += 1;
            assert_eq!(grown, n, "a key moves only to the endpoint that joined");
        }
    }
    assert_eq!(moved, owned_by_3);
    let share = |x: u64| x as f64 / KEYS as f64;
    assert!(
        (0.07..0.13).contains(&share(moved)),
        "removing 1 of {n} moved {:.3} of the keys",
        share(moved)
    );
    assert!(
        (0.06..0.12).contains(&share(joined)),
        "adding an 11th endpoint moved {:.3} of the keys",
        share(joined)
    );
}

#[test]
fn rendezvous_spreads_evenly() {
    let n = 5;
    let seeds = seeds(n);
    let pool: Vec<usize> = (0..n).collect();
    let mut counts = vec![0u64; n];
    for k in 0..KEYS {
        counts[owner(stable_hash(&k.to_le_bytes()), &pool, &seeds)] += 1;
    }
    for c in counts {
        let share = c as f64 / KEYS as f64;
        assert!((0.17..0.23).contains(&share), "an endpoint got {share:.3}");
    }
}

fn upstream(toml_extra: &[(&str, &str)]) -> Arc<Upstream> {
    let mut raw = RawConfig::default();
    let mut u = crate::config::raw::RawUpstream {
        name: "app".into(),
        endpoints: (1..=3).map(|i| format!("ws://127.0.0.{i}:9")).collect(),
        resolve_interval: "0s".into(),
        ..Default::default()
    };
    for (k, v) in toml_extra {
        match *k {
            "balance" => u.balance = v.to_string(),
            "hash_key" => u.hash_key = v.to_string(),
            "cookie" => u.affinity_cookie.name = v.to_string(),
            "eject_after" => u.health.eject_after = v.parse().expect("number"),
            other => panic!("unknown test key {other}"),
        }
    }
    raw.upstreams = vec![u];
    raw.listeners = vec![crate::config::raw::RawListener {
        name: "l".into(),
        listen: "127.0.0.1:0".into(),
        tls: None,
    }];
    raw.routes = vec![crate::config::raw::RawRoute {
        name: "r".into(),
        upstream: "app".into(),
        ..Default::default()
    }];
    let config = Config::from_raw(raw).expect("test config is valid");
    let metrics = Metrics::new();
    Arc::new(Upstream::new(Arc::clone(&config.upstreams[0]), &metrics))
}

fn head(headers: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        target: "/chat/room7/socket?sid=abc&x".into(),
        version: 1,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect(),
    }
}

fn affinity(head: &RequestHead, client: [u8; 4]) -> Affinity<'_> {
    Affinity {
        client: IpAddr::from(client),
        path: head.path(),
        query: head.query(),
        headers: head,
    }
}

#[test]
fn round_robin_rotates_over_every_endpoint() {
    let up = upstream(&[]);
    let h = head(&[]);
    let firsts: Vec<usize> = (0..6)
        .map(|_| up.candidates(&affinity(&h, [1, 1, 1, 1]))[0])
        .collect();
    assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    assert_eq!(
        up.candidates(&affinity(&h, [1, 1, 1, 1])).len(),
        3,
        "fallbacks follow"
    );
}

#[test]
fn hash_keys_stick_and_differ() {
    for (key, same) in [
        ("header:x-user", head(&[("X-User", "ann")])),
        ("cookie:sid", head(&[("Cookie", "a=1; sid=s1")])),
        ("query:sid", head(&[])),
        ("path_segment:1", head(&[])),
    ] {
        let up = upstream(&[("balance", "hash"), ("hash_key", key)]);
        let first = up.candidates(&affinity(&same, [1, 1, 1, 1]))[0];
        for _ in 0..10 {
            assert_eq!(
                up.candidates(&affinity(&same, [9, 9, 9, 9]))[0],
                first,
                "{key}"
            );
        }
    }
    let up = upstream(&[("balance", "hash"), ("hash_key", "client_ip")]);
    let h = head(&[]);
    let owners: std::collections::HashSet<usize> = (0..64u8)
        .map(|c| up.candidates(&affinity(&h, [10, 0, 0, c]))[0])
        .collect();
    assert_eq!(owners.len(), 3, "64 clients spread over all 3 endpoints");
    let first = up.candidates(&affinity(&h, [10, 0, 0, 1]))[0];
    assert_eq!(up.candidates(&affinity(&h, [10, 0, 0, 1]))[0], first);
}

#[test]
fn path_and_query_keys_read_the_right_part() {
    let h = head(&[]);
    let a = affinity(&h, [1, 1, 1, 1]);
    let get = |k: HashKey| key_of(&a, &k).map(|c| c.into_owned());
    assert_eq!(get(HashKey::PathSegment(1)).as_deref(), Some("room7"));
    assert_eq!(get(HashKey::PathSegment(9)), None);
    assert_eq!(get(HashKey::Query("sid".into())).as_deref(), Some("abc"));
    assert_eq!(
        get(HashKey::Query("x".into())),
        None,
        "an empty value is no key"
    );
    assert_eq!(get(HashKey::ClientIp).as_deref(), Some("1.1.1.1"));
}

#[test]
fn affinity_cookie_brings_the_client_back_and_cannot_be_forged() {
    let up = upstream(&[("cookie", "tg")]);
    let none = head(&[]);
    let set = up
        .affinity_cookie(&affinity(&none, [1, 1, 1, 1]), 2)
        .expect("a cookie is set");
    assert!(
        set.starts_with("tg=") && set.contains("; Path=/; HttpOnly"),
        "{set}"
    );
    let value = set.split(';').next().expect("name=value");
    let back = head(&[("Cookie", value)]);
    for _ in 0..5 {
        assert_eq!(up.candidates(&affinity(&back, [1, 1, 1, 1]))[0], 2);
    }
    assert_eq!(
        up.affinity_cookie(&affinity(&back, [1, 1, 1, 1]), 2),
        None,
        "not set again while it names the endpoint"
    );
    // A made-up value (or one from another gateway secret) is ignored.
    let forged = head(&[("Cookie", "tg=AAAAAAAAAAAAAAAAAAAAAA")]);
    let firsts: std::collections::HashSet<usize> = (0..6)
        .map(|_| up.candidates(&affinity(&forged, [1, 1, 1, 1]))[0])
        .collect();
    assert_eq!(firsts.len(), 3, "a forged cookie falls back to round robin");
}

#[test]
fn unhealthy_endpoints_get_nothing_until_none_is_left() {
    let up = upstream(&[("cookie", "tg"), ("eject_after", "1")]);
    let none = head(&[]);
    let set = up
        .affinity_cookie(&affinity(&none, [1, 1, 1, 1]), 1)
        .expect("cookie");
    let back = head(&[("Cookie", set.split(';').next().expect("pair"))]);
    up.report(1, Outcome::ConnectFailed);
    for _ in 0..6 {
        let c = up.candidates(&affinity(&back, [1, 1, 1, 1]));
        assert!(!c.contains(&1), "ejected endpoint 1 offered: {c:?}");
    }
    up.report(0, Outcome::ServerError);
    up.report(2, Outcome::ConnectFailed);
    let c = up.candidates(&affinity(&none, [1, 1, 1, 1]));
    assert_eq!(
        c.len(),
        3,
        "none healthy: every endpoint is tried (fail open)"
    );
}

#[test]
fn least_connections_prefers_the_idle_endpoint() {
    let up = upstream(&[("balance", "least_connections")]);
    let h = head(&[]);
    let _a = up.track(0);
    let _b = up.track(0);
    let _c = up.track(2);
    for _ in 0..4 {
        assert_eq!(up.candidates(&affinity(&h, [1, 1, 1, 1]))[0], 1);
    }
    drop((_a, _b));
    assert_eq!(up.state[0].active.load(Ordering::Relaxed), 0);
}
