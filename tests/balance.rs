//! Several application instances behind one route, against the release
//! binary: a hash on a header keeps a user on one instance, the affinity
//! cookie set on a 101 brings the next upgrade back, a killed instance is
//! left out after its health check fails and rejoins when it returns,
//! `/readyz` follows the health checks, and a real DNS server (dnsmasq)
//! whose answer changes moves new sessions without a restart.

use crate::support::named_app::NamedApp;
use crate::support::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tidegate::config::raw::RawConfig;

/// Two named instances on loopback.
async fn two_apps() -> (NamedApp, NamedApp) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    (
        NamedApp::start("a", any).await,
        NamedApp::start("b", any).await,
    )
}

fn config_for(apps: &[&NamedApp]) -> RawConfig {
    let urls: Vec<String> = apps.iter().map(|a| ws_url(a.addr)).collect();
    raw_config(&urls)
}

/// Upgrade through the gateway with `extra` headers; the 101 and the
/// instance that served it.
async fn upgrade(gw: SocketAddr, extra: &[(&str, &str)]) -> (HttpResponse, String) {
    let (resp, ws) = ws_try(gw, "localhost", "/", extra).await;
    let mut ws =
        ws.unwrap_or_else(|| panic!("expected 101, got {} {}", resp.status, resp.body_text()));
    echo_text(&mut ws, "hello").await;
    let by = resp
        .header("x-served-by")
        .unwrap_or_else(|| panic!("101 without X-Served-By: {:?}", resp.headers))
        .to_string();
    (resp, by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_a_header_keeps_each_user_on_one_instance() {
    let (a, b) = two_apps().await;
    let mut raw = config_for(&[&a, &b]);
    raw.upstreams[0].balance = "hash".into();
    raw.upstreams[0].hash_key = "header:x-user".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let mut owners = HashSet::new();
    // 16 users: all on one of two instances by chance is 2^-15.
    for n in 0..16 {
        let user = format!("user-{n}");
        let user = user.as_str();
        let (_, first) = upgrade(gw.addr, &[("X-User", user)]).await;
        for _ in 0..3 {
            let (_, again) = upgrade(gw.addr, &[("X-User", user)]).await;
            assert_eq!(again, first, "user {user} moved");
        }
        owners.insert(first);
    }
    assert_eq!(
        owners.len(),
        2,
        "8 users all hashed to one instance: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_set_on_a_101_brings_the_next_upgrade_back() {
    let (a, b) = two_apps().await;
    let mut raw = config_for(&[&a, &b]);
    raw.upstreams[0].affinity_cookie.name = "tg_aff".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let (first, by) = upgrade(gw.addr, &[]).await;
    let set = first
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie on the 101: {:?}", first.headers));
    assert!(
        set.starts_with("tg_aff=") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().expect("name=value").to_string();
    for _ in 0..6 {
        let (resp, again) = upgrade(gw.addr, &[("Cookie", &cookie)]).await;
        assert_eq!(again, by, "the cookie's instance served the upgrade");
        assert_eq!(resp.header("set-cookie"), None, "not set again");
    }
    // Without the cookie, round robin: both instances serve.
    let mut seen = HashSet::new();
    for _ in 0..4 {
        seen.insert(upgrade(gw.addr, &[]).await.1);
    }
    assert_eq!(seen.len(), 2, "without a cookie both instances serve");
    // A forged value is ignored (falls back to the policy).
    let mut seen = HashSet::new();
    for _ in 0..4 {
        seen.insert(
            upgrade(gw.addr, &[("Cookie", "tg_aff=AAAAAAAAAAAAAAAAAAAAAA")])
                .await
                .1,
        );
    }
    assert_eq!(seen.len(), 2, "a forged cookie pins nothing");
}

/// The health settings of the kill and readiness tests: quick checks so
/// the test is short, one failure takes an endpoint out.
fn with_health(raw: &mut RawConfig) {
    let h = &mut raw.upstreams[0].health;
    h.path = "/health".into();
    h.interval = "300ms".into();
    h.timeout = "1s".into();
    h.healthy_threshold = 1;
    h.unhealthy_threshold = 1;
    // Connect failures on traffic eject too; keep that short, so a
    // returning instance is back within the test's patience.
    h.eject_for = "200ms".into();
    h.eject_max = "1s".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_left_out_and_rejoins_when_it_returns() {
    let (a, mut b) = two_apps().await;
    let mut raw = config_for(&[&a, &b]);
    with_health(&mut raw);
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let healthy = "tidegate_upstream_endpoint_healthy";
    let b_label = [("endpoint", ws_url(b.addr))];
    let b_label: Vec<(&str, &str)> = b_label.iter().map(|(k, v)| (*k, v.as_str())).collect();
    wait_metric(gw.admin, healthy, &[], 2.0).await;
    let mut seen = HashSet::new();
    for _ in 0..4 {
        seen.insert(upgrade(gw.addr, &[]).await.1);
    }
    assert_eq!(seen.len(), 2, "both instances serve while healthy");

    // Kill b under traffic: every new session still gets its 101 (a
    // failed connect falls through to the next candidate), and once b's
    // check failed, b gets no attempts at all.
    b.kill();
    let traffic = async {
        for _ in 0..10 {
            assert_eq!(upgrade(gw.addr, &[]).await.1, "a");
        }
    };
    let failures = "tidegate_upstream_endpoint_failures_total";
    // The check's verdict, not the gauge: connect failures on traffic
    // eject b too, but only for a moment (`eject_for`).
    let mut b_check = b_label.clone();
    b_check.push(("kind", "check"));
    tokio::join!(
        traffic,
        wait_metric(gw.admin, failures, &b_check, Want::AtLeast(1.0))
    );
    assert_eq!(scrape(gw.admin).await.sum(healthy, &b_label), 0.0);
    let before = scrape(gw.admin).await.sum(failures, &[("kind", "connect")]);
    for _ in 0..10 {
        assert_eq!(upgrade(gw.addr, &[]).await.1, "a");
    }
    let after = scrape(gw.admin).await.sum(failures, &[("kind", "connect")]);
    assert_eq!(
        before, after,
        "no session tried the dead instance after its check failed"
    );

    b.restart().await;
    wait_metric(gw.admin, healthy, &b_label, 1.0).await;
    let mut seen = HashSet::new();
    for _ in 0..4 {
        seen.insert(upgrade(gw.addr, &[]).await.1);
    }
    assert_eq!(seen.len(), 2, "b rejoined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_no_endpoint_is_healthy() {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let app = NamedApp::start("a", any).await;
    app.healthy.store(false, Ordering::SeqCst);
    let mut raw = config_for(&[&app]);
    with_health(&mut raw);
    raw.readiness.require_upstream = true;
    raw.readiness.probe_interval = "100ms".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    wait_metric(
        gw.admin,
        "tidegate_upstream_endpoint_failures_total",
        &[("kind", "check")],
        Want::AtLeast(2.0),
    )
    .await;
    assert_eq!(
        http_get(gw.admin, "/readyz").await.status,
        503,
        "health check fails: not ready"
    );
    app.healthy.store(true, Ordering::SeqCst);
    wait_ready(gw.admin).await;
    app.kill();
    within("/readyz turns 503 after the app went away", async {
        while http_get(gw.admin, "/readyz").await.status != 503 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// dnsmasq on a loopback port, answering from a hosts file the test
/// rewrites (SIGHUP re-reads it).
struct Dnsmasq {
    proc: Spawned,
    hosts: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Start on a free port and wait until it answers; a port taken by
    /// someone else between our pick and dnsmasq's bind means another try.
    async fn start(hosts_text: &str) -> Dnsmasq {
        within("dnsmasq answers", async {
            loop {
                let mut d = Dnsmasq::spawn(hosts_text);
                for _ in 0..50 {
                    if d.answers().await {
                        return d;
                    }
                    if matches!(d.proc.child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                }
            }
        })
        .await
    }

    /// Whether an A query for a name not in the file gets any answer.
    async fn answers(&self) -> bool {
        let Ok(sock) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
            return false;
        };
        // Header (id 1, recursion desired, one question), "x.test", A, IN.
        let query =
            b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x04test\x00\x00\x01\x00\x01";
        if sock.send_to(query, ("127.0.0.1", self.port)).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        let got = tokio::time::timeout(Duration::from_millis(100), sock.recv(&mut buf)).await;
        matches!(got, Ok(Ok(n)) if n >= 12)
    }

    fn spawn(hosts_text: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, hosts_text).expect("write hosts file");
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let mut cmd = std::process::Command::new("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .stderr(std::process::Stdio::null());
        // As root dnsmasq would drop to `nobody`, which cannot read the
        // test's private temporary directory.
        if running_as_root() {
            cmd.args(["--user=root", "--group=root"]);
        }
        Dnsmasq {
            proc: Spawned::spawn(cmd),
            hosts,
            port,
            _dir: dir,
        }
    }

    fn answer(&self, hosts_text: &str) {
        std::fs::write(&self.hosts, hosts_text).expect("rewrite hosts file");
        self.proc.signal("-HUP");
    }
}

/// Whether the test runs as root (`id -u`).
fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_dns_answer_moves_new_sessions_without_a_restart() {
    // Two instances on one port of two loopback addresses: the name's
    // answer alone says which one a connection reaches.
    let (a, b) = within("two instances on one port", async {
        loop {
            let a = NamedApp::start("a", "127.0.0.2:0".parse().expect("address")).await;
            let on_b = SocketAddr::new("127.0.0.3".parse().expect("ip"), a.addr.port());
            if let Some(b) = NamedApp::try_start("b", on_b).await {
                return (a, b);
            }
        }
    })
    .await;
    let dns = Dnsmasq::start("127.0.0.2 app.tg.test\n").await;
    let mut raw = raw_config(&[format!("ws://app.tg.test:{}", a.addr.port())]);
    raw.upstreams[0].resolve_interval = "200ms".into();
    raw.upstreams[0].nameservers = vec![format!("127.0.0.1:{}", dns.port)];
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let addresses = "tidegate_upstream_endpoint_addresses";
    wait_metric(gw.admin, addresses, &[], 1.0).await;
    for _ in 0..3 {
        assert_eq!(upgrade(gw.addr, &[]).await.1, "a");
    }
    dns.answer("127.0.0.3 app.tg.test\n");
    within("new sessions reach b after the DNS answer changed", async {
        while upgrade(gw.addr, &[]).await.1 != "b" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            upgrade(gw.addr, &[]).await.1,
            "b",
            "every new session follows the answer"
        );
    }
    drop(b);
}

/// Mux routes: the affinity cookie rides on the 101 built from the
/// application's ACCEPT, and sessions that carry it are OPENed on the
/// same endpoint's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_sessions_with_the_cookie_open_on_one_endpoint() {
    let (one, two) = (
        EchoApp::start("127.0.0.1:0").await,
        EchoApp::start("127.0.0.1:0").await,
    );
    let mut raw = mux_config(&[one.url(), two.url()], 1);
    raw.upstreams[0].affinity_cookie.name = "tg_aff".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    wait_metric(gw.admin, "tidegate_mux_connections_up", &[], 2.0).await;
    let (first, ws) = ws_try(gw.addr, "localhost", "/", &[]).await;
    let mut held = vec![ws.expect("101 on the mux route")];
    let set = first
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie on the mux 101: {:?}", first.headers));
    let cookie = set.split(';').next().expect("name=value").to_string();
    for _ in 0..5 {
        let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[("Cookie", &cookie)]).await;
        let mut ws = ws.unwrap_or_else(|| panic!("expected 101, got {}", resp.status));
        echo_text(&mut ws, "sticky").await;
        held.push(ws);
    }
    let sessions = "tidegate_mux_connection_sessions";
    let m = scrape(gw.admin).await;
    let counts: Vec<f64> = [&one, &two]
        .iter()
        .map(|app| m.sum(sessions, &[("endpoint", app.url().as_str())]))
        .collect();
    assert!(
        counts == [6.0, 0.0] || counts == [0.0, 6.0],
        "all six sessions on the cookie's endpoint: {counts:?}"
    );
}
