use super::*;

pub(super) const GOOD: &str = r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:3000", "ws://localhost:3001/base/"]

[[routes]]
name = "chat"
host = "*.example.com"
path = "/chat/"
upstream = "app"
origins = ["https://*.example.com"]
idle_timeout = "5m"
"#;

#[allow(clippy::result_large_err)]
pub(super) fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("tidegate.toml", toml)?;
        for (k, v) in env {
            jail.set_env(k, v);
        }
        out = Some(Config::load(Some(Path::new("tidegate.toml"))));
        Ok(())
    });
    out.expect("jail ran")
}

fn keys(e: &ConfigError) -> Vec<&str> {
    e.problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn good_config_is_typed() {
    let c = load(GOOD, &[]).unwrap();
    assert_eq!(c.listeners[0].name, "public");
    let r = &c.routes[0];
    assert_eq!(r.path, "/chat");
    assert_eq!(r.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(r.max_message_size, 64 << 20);
    let eps = &r.upstream.endpoints;
    assert_eq!(eps[0].authority, "127.0.0.1:3000");
    assert_eq!(eps[1].base_path, "/base");
    assert_eq!(eps[1].port, 3001);
    assert_eq!(c.keepalive.ping_interval, Some(Duration::from_secs(30)));
}

#[test]
fn http_and_https_endpoints_are_ws_and_wss() {
    let toml = GOOD.replace(
        r#"["ws://127.0.0.1:3000", "ws://localhost:3001/base/"]"#,
        r#"["http://127.0.0.1:3000", "https://localhost/base/"]"#,
    );
    let c = load(&toml, &[]).unwrap();
    let eps = &c.routes[0].upstream.endpoints;
    assert_eq!((eps[0].secure, eps[0].port), (false, 3000));
    assert_eq!((eps[1].secure, eps[1].port), (true, 443));
    assert_eq!(eps[1].base_path, "/base");
    assert!(c.routes[0].upstream.tls.is_some(), "https:// needs TLS");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let bad = r#"
[admin]
listen = "nowhere"

[limits]
max_frame_size = 0
handshake_timeout = "soon"

[keepalive]
pong_timeout = "0s"

[[listeners]]
listen = "127.0.0.1"

[[listeners]]
listen = "127.0.0.1:8443"
tls = { certificates = [{ cert = "/nonexistent/cert.pem", key = "/nonexistent/key.pem" }] }

[[upstreams]]
name = "app"
endpoints = []

[[upstreams]]
name = "other"
endpoints = ["ftp://127.0.0.1:1"]

[[routes]]
path = "/a"
upstream = "missing"

[[routes]]
path = "/b"
upstream = "app"
origins = ["not an origin"]

[[routes]]
path = "/b/"
upstream = "app"
"#;
    let e = load(bad, &[]).unwrap_err();
    let k = keys(&e);
    for want in [
        "admin.listen",
        "limits.max_frame_size",
        "limits.handshake_timeout",
        "keepalive.pong_timeout",
        "listeners[0].listen",
        "listeners[1].tls.certificates[0].cert",
        "upstreams[0].endpoints",
        "upstreams[1].endpoints[0]",
        "routes[0].upstream",
        "routes[1].origins",
        "routes[2].path",
    ] {
        assert!(k.contains(&want), "missing {want} in {k:?}");
    }
    let text = e.to_string();
    assert!(
        text.contains("routes[0].upstream: no upstream named \"missing\""),
        "{text}"
    );
}

/// `mux.write_delay` adds latency to every client message: zero is the
/// default, above 100 ms is refused with the key named.
#[test]
fn mux_write_delay_is_bounded() {
    let c = load(GOOD, &[]).unwrap();
    assert_eq!(c.mux.write_delay, Duration::ZERO);
    let c = load(&format!("{GOOD}\n[mux]\nwrite_delay = \"1ms\"\n"), &[]).unwrap();
    assert_eq!(c.mux.write_delay, Duration::from_millis(1));
    let e = load(&format!("{GOOD}\n[mux]\nwrite_delay = \"1s\"\n"), &[]).unwrap_err();
    assert_eq!(keys(&e), vec!["mux.write_delay"]);
    assert!(e.to_string().contains("at most 100ms"), "{e}");
}

#[test]
fn unknown_keys_are_errors() {
    let e = load(&format!("{GOOD}\n[limits]\nmax_conections = 5\n"), &[]).unwrap_err();
    assert!(e.to_string().contains("max_conections"), "{e}");
}

#[test]
fn environment_overrides_the_file() {
    let c = load(
        GOOD,
        &[
            ("TIDEGATE_LIMITS__MAX_CONNECTIONS", "77"),
            ("TIDEGATE_LOG", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(c.limits.max_connections, 77);
    let e = load(GOOD, &[("TIDEGATE_LIMITS__MAX_CONNECTIONS", "0")]).unwrap_err();
    assert_eq!(keys(&e), vec!["limits.max_connections"]);
}

#[test]
fn empty_config_needs_listeners_and_routes() {
    let e = Config::from_raw(RawConfig::default()).unwrap_err();
    assert_eq!(keys(&e), vec!["listeners", "routes"]);
}

#[test]
fn redaction_hides_added_header_values() {
    let toml = GOOD.replace(
        "endpoints = [\"ws://127.0.0.1:3000\", \"ws://localhost:3001/base/\"]",
        "endpoints = [\"ws://127.0.0.1:3000\"]\nadd_headers = { X-Shared-Secret = \"hunter2\" }",
    );
    let c = load(&toml, &[]).unwrap();
    let shown = toml::to_string(&c.raw.redacted()).unwrap();
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("<redacted>"));
    assert_eq!(c.upstreams[0].add_headers[0].1, "hunter2");
}

#[test]
fn every_problem_of_one_route_is_reported() {
    // One route, three independent mistakes: each is named, not only the
    // first one found.
    let bad = r#"
[[listeners]]
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:9001"]

[[routes]]
path = "no-slash"
upstream = "missing"
origins = ["not an origin"]
"#;
    let e = load(bad, &[]).unwrap_err();
    let k = keys(&e);
    for want in ["routes[0].path", "routes[0].upstream", "routes[0].origins"] {
        assert!(k.contains(&want), "missing {want} in {k:?}");
    }
}

#[test]
fn operational_sections_are_typed_and_checked() {
    let c = load(GOOD, &[]).unwrap();
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.routes[0].access_sample, 0.0, "access log off by default");
    assert!(c.reload.watch_config);
    assert_eq!(c.reload.poll_interval, Duration::from_secs(2));
    assert!(!c.readiness.require_upstream);

    let on = format!(
        "{GOOD}access_log_sample = 0.25\n\n[log]\nformat = \"json\"\n[log.access]\nenabled = true\n\
         [readiness]\nrequire_upstream = true\nprobe_interval = \"1s\"\n"
    );
    let c = load(&on, &[]).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.routes[0].access_sample, 0.25);
    assert_eq!(c.readiness.probe_interval, Duration::from_secs(1));

    let off = format!("{GOOD}access_log = false\n\n[log.access]\nenabled = true\n");
    assert_eq!(load(&off, &[]).unwrap().routes[0].access_sample, 0.0);

    let bad = format!(
        "{GOOD}access_log_sample = 2.0\n\n[log]\nformat = \"xml\"\n[log.access]\nsample = -1.0\n\
         [reload]\npoll_interval = \"0s\"\n[readiness]\nprobe_interval = \"soon\"\n"
    );
    let e = load(&bad, &[]).unwrap_err();
    assert_eq!(
        keys(&e),
        [
            "routes[0].access_log_sample",
            "log.format",
            "log.access.sample",
            "reload.poll_interval",
            "readiness.probe_interval"
        ]
    );
}

#[test]
fn the_log_filter_variable_is_not_a_config_key() {
    // TIDEGATE_LOG is the tracing filter; nested keys still come through.
    let env = [("TIDEGATE_LOG", "debug"), ("TIDEGATE_LOG__FORMAT", "json")];
    let c = load(GOOD, &env).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn balancing_health_and_dns_keys_are_checked_with_their_key() {
    let bad = r#"
[[listeners]]
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:3000"]
balance = "random"
hash_key = "cookie:sid"
resolve_interval = "often"
nameservers = ["127.0.0.1"]

[upstreams.health]
path = "health"
interval = "0s"
healthy_threshold = 0
eject_for = "1m"
eject_max = "10s"

[upstreams.affinity_cookie]
name = "a b"
secret = "short"
path = "x"

[[upstreams]]
name = "hashed"
endpoints = ["ws://127.0.0.1:3001"]
balance = "hash"
hash_key = "body:x"

[[routes]]
upstream = "app"
"#;
    let e = load(bad, &[]).unwrap_err();
    let k = keys(&e);
    for want in [
        "upstreams[0].balance",
        "upstreams[0].hash_key",
        "upstreams[0].resolve_interval",
        "upstreams[0].nameservers[0]",
        "upstreams[0].health.path",
        "upstreams[0].health.interval",
        "upstreams[0].health.healthy_threshold",
        "upstreams[0].health.eject_max",
        "upstreams[0].affinity_cookie.name",
        "upstreams[0].affinity_cookie.secret",
        "upstreams[0].affinity_cookie.path",
        "upstreams[1].hash_key",
    ] {
        assert!(k.contains(&want), "missing {want} in {k:?}");
    }
}

#[test]
fn balancing_keys_are_typed() {
    use crate::config::balance::{HashKey, Policy};
    let good = r#"
[[listeners]]
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:3000", "ws://app.internal:3000"]
balance = "hash"
hash_key = "path_segment:1"
resolve_interval = "0s"
nameservers = ["127.0.0.1:5353"]

[upstreams.health]
path = "/healthz"
interval = "1s"

[upstreams.affinity_cookie]
name = "tg"
max_age = "1h"

[[routes]]
upstream = "app"
"#;
    let c = load(good, &[]).unwrap();
    let b = &c.upstreams[0].balance;
    assert_eq!(b.policy, Policy::Hash(HashKey::PathSegment(1)));
    assert_eq!(b.resolve_interval, None, "0s turns re-resolution off");
    assert_eq!(b.nameservers[0].port(), 5353);
    let h = b.health.as_ref().expect("a path turns checks on");
    assert_eq!(
        (h.path.as_str(), h.interval),
        ("/healthz", Duration::from_secs(1))
    );
    let cookie = b.cookie.as_ref().expect("a name turns the cookie on");
    assert_eq!(cookie.max_age, Some(Duration::from_secs(3600)));
    assert!(
        cookie.secret.len() >= 16,
        "a random secret when none is set"
    );
    let plain = load(GOOD, &[]).unwrap();
    let d = &plain.upstreams[0].balance;
    assert_eq!(d.policy, Policy::RoundRobin);
    assert!(d.health.is_none() && d.cookie.is_none());
    assert_eq!(d.resolve_interval, Some(Duration::from_secs(30)));
}

#[test]
fn http_is_on_by_default_and_overridable_per_route() {
    let toml = r#"
[[listeners]]
listen = "127.0.0.1:0"
[[upstreams]]
name = "a"
endpoints = ["ws://127.0.0.1:1"]
[http]
request_timeout = "30s"
idle_timeout = "0s"
[[routes]]
name = "plain"
upstream = "a"
[[routes]]
name = "tuned"
path = "/t"
upstream = "a"
http_request_timeout = "90s"
max_body_bytes = 10
[[routes]]
name = "ws_only"
path = "/ws"
upstream = "a"
http = false
"#;
    let config = load(toml, &[]).expect("valid");
    let route = |name: &str| {
        let r = config.routes.iter().find(|r| r.name == name);
        r.expect("route exists").http.clone()
    };
    let plain = route("plain").expect("http on by default");
    assert_eq!(plain.request_timeout, Duration::from_secs(30));
    assert_eq!(plain.idle_timeout, None, "\"0s\" is no idle limit");
    assert_eq!(plain.max_body_bytes, 16 << 20);
    let tuned = route("tuned").expect("http on");
    assert_eq!(
        (tuned.request_timeout, tuned.max_body_bytes),
        (Duration::from_secs(90), 10)
    );
    assert!(route("ws_only").is_none());
    let bad = toml.replace("\"90s\"", "\"soon\"").replace("= 10", "= 0");
    let e = load(&bad, &[]).expect_err("invalid");
    assert_eq!(
        keys(&e),
        ["routes[1].http_request_timeout", "routes[1].max_body_bytes"]
    );
}

#[test]
fn parse_errors_name_keys_with_indexes() {
    // figment reports `upstreams.0.pool_size`; every message says
    // `upstreams[0].pool_size`, as docs/configuration.md promises.
    let bad = GOOD.replace(
        "endpoints = [\"ws://127.0.0.1:3000\"",
        "pool_size = \"many\"\nendpoints = [\"ws://127.0.0.1:3000\"",
    );
    let e = load(&bad, &[]).unwrap_err();
    assert_eq!(keys(&e), ["upstreams[0].pool_size"]);
    assert_eq!(
        key_path(&["listeners".into(), "1".into(), "tls".into()]),
        "listeners[1].tls"
    );
    assert_eq!(key_path(&[]), "<root>");
}

#[test]
fn mux_pool_size_defaults_to_one_connection_per_worker_and_at_least_two() {
    let c = load(GOOD, &[]).unwrap();
    let up = &c.upstreams[0];
    assert_eq!(up.pool_size, None);
    let runtime = |layout, workers| RuntimeConfig {
        layout,
        workers: Some(workers),
    };
    let slots = |layout, workers| up.slots_per_endpoint(&runtime(layout, workers));
    assert_eq!(slots(Layout::ThreadPerCore, 1), 2);
    assert_eq!(slots(Layout::ThreadPerCore, 2), 2);
    assert_eq!(slots(Layout::ThreadPerCore, 8), 8);
    assert_eq!(slots(Layout::ThreadPerCore, 1000), 64);
    // Work stealing has no worker a connection could belong to.
    assert_eq!(slots(Layout::WorkStealing, 8), 2);

    let set = GOOD.replace(
        "endpoints = [\"ws://127.0.0.1:3000\"",
        "pool_size = 3\nendpoints = [\"ws://127.0.0.1:3000\"",
    );
    let c = load(&set, &[]).unwrap();
    let up = &c.upstreams[0];
    assert_eq!(up.slots_per_endpoint(&runtime(Layout::ThreadPerCore, 8)), 3);
    let zero = set.replace("pool_size = 3", "pool_size = 0");
    assert_eq!(
        keys(&load(&zero, &[]).unwrap_err()),
        ["upstreams[0].pool_size"]
    );
}
