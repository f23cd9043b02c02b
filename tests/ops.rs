//! What an operator runs on (issue 19, the gateway side): the access log
//! of the real binary (one line per session end, text and JSON), the
//! configuration file followed through a Kubernetes-style `..data`
//! symlink swap, and `/readyz` that follows a passthrough upstream's
//! reachability.

use crate::support::*;
use fastwebsockets::Frame;
use std::path::Path;
use std::time::Duration;
use tidegate::config::raw::auth::{RawApiKey, RawApiKeys, RawAuthPolicy};
use tidegate::config::raw::{RawConfig, RawRoute, RawUpstream};
use tidegate::config::Config;

/// Lets the access log through, and only warnings otherwise.
const ACCESS_FILTER: &str = "warn,tidegate::access=info";

/// Route `p` (passthrough, API key required) on `/p` to `echo`, route `m`
/// (mux) on `/m` to the SDK's echo app; access log on for both.
fn access_config(echo: std::net::SocketAddr, app: &EchoApp, format: &str) -> RawConfig {
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.log.format = format.into();
    raw.log.access.enabled = true;
    raw.routes[0].name = "p".into();
    raw.routes[0].path = "/p".into();
    raw.routes[0].auth = "keys".into();
    raw.auth_policies = vec![RawAuthPolicy {
        name: "keys".into(),
        sources: vec!["header:X-Api-Key".into()],
        api_keys: Some(RawApiKeys {
            keys: vec![RawApiKey {
                name: "billing".into(),
                key: "key-0123456789abcdef".into(),
                ..RawApiKey::default()
            }],
            file: String::new(),
        }),
        ..RawAuthPolicy::default()
    }];
    raw.upstreams.push(RawUpstream {
        name: "app".into(),
        endpoints: vec![app.url()],
        pool_size: Some(1),
        ..RawUpstream::default()
    });
    raw.routes.push(RawRoute {
        name: "m".into(),
        path: "/m".into(),
        upstream: "app".into(),
        mode: "mux".into(),
        ..RawRoute::default()
    });
    raw
}

/// Two messages each way, then the client closes with 1000.
async fn one_session(mut ws: Ws<tokio::net::TcpStream>) {
    echo_text(&mut ws, "hello").await;
    echo_text(&mut ws, "world!").await;
    send(&mut ws, Frame::close(1000, b"bye")).await;
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1000);
}

/// Run one passthrough and one mux session through the binary; returns
/// its stderr once it holds two access lines.
async fn sessions_through_the_binary(format: &str) -> (String, std::net::SocketAddr) {
    let echo = start_echo().await;
    let app = EchoApp::start("127.0.0.1:0").await;
    let file = ConfigFile::new(&access_config(echo, &app, format));
    let gw = GatewayProc::start_with_env(&file, &[("TIDEGATE_LOG", ACCESS_FILTER)]).await;
    wait_ready(gw.admin).await;
    let key = [("X-Api-Key", "key-0123456789abcdef")];
    let (resp, ws) = ws_try(gw.addr, "localhost", "/p/room", &key).await;
    one_session(ws.unwrap_or_else(|| panic!("passthrough refused: {}", resp.status))).await;
    one_session(ws_connect(gw.addr, "/m/room").await).await;
    let log = within("two access lines in the log", async {
        loop {
            let log = gw.log();
            if log.matches("session end").count() >= 2 {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    (log, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_in_json_has_one_object_per_session() {
    let (log, echo) = sessions_through_the_binary("json").await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "tidegate::access")
        .collect();
    assert_eq!(access.len(), 2, "one line per session:\n{log}");
    let by_route = |r: &str| {
        *access
            .iter()
            .find(|l| l["route"] == r)
            .unwrap_or_else(|| panic!("no access line for route {r}:\n{log}"))
    };
    let p = by_route("p");
    assert_eq!(p["mode"], "passthrough");
    assert_eq!(p["subject"], "billing");
    assert_eq!(p["endpoint"], ws_url(echo).as_str());
    assert!(
        p["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{p}"
    );
    let m = by_route("m");
    assert_eq!(m["mode"], "mux");
    assert_eq!(m["subject"], "-");
    assert!(
        m["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("ws://127.0.0.1:")),
        "{m}"
    );
    for line in [p, m] {
        assert_eq!(line["messages_from_client"], 2, "{line}");
        assert_eq!(line["messages_to_client"], 2, "{line}");
        assert_eq!(line["bytes_from_client"], 11, "{line}");
        assert_eq!(line["bytes_to_client"], 11, "{line}");
        assert_eq!(line["client_close"], 1000, "{line}");
        assert_eq!(line["closed_by"], "client", "{line}");
        assert!(line["duration_ms"].is_u64(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_in_text_is_one_line_per_session() {
    let (log, _) = sessions_through_the_binary("text").await;
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tidegate::access"))
        .collect();
    assert_eq!(access.len(), 2, "{log}");
    for line in access {
        for field in [
            "messages_from_client=2",
            "bytes_to_client=11",
            "client_close=1000",
            "closed_by=\"client\"",
        ] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
}

/// A Kubernetes ConfigMap volume: `dir/tidegate.toml -> ..data/tidegate.toml`,
/// `..data -> ..<version>`; an update writes a new version directory and
/// renames a new `..data` link over the old one.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: usize,
}

impl ConfigMapDir {
    fn new(text: &str) -> ConfigMapDir {
        let mut d = ConfigMapDir {
            dir: tempfile::tempdir().expect("temp dir"),
            version: 0,
        };
        d.update(text);
        std::os::unix::fs::symlink("..data/tidegate.toml", d.file()).expect("file link");
        d
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("tidegate.toml")
    }

    /// What the kubelet does on a ConfigMap change. Every version gets the
    /// same modification time: a watcher that looked only at the time and
    /// size behind the path would miss a same-length change.
    fn update(&mut self, text: &str) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let root: &Path = self.dir.path();
        std::fs::create_dir(root.join(&version)).expect("version dir");
        let file = root.join(&version).join("tidegate.toml");
        std::fs::write(&file, text).expect("write");
        let same_time = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(same_time))
            .expect("set mtime");
        std::os::unix::fs::symlink(&version, root.join("..data_tmp")).expect("new link");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap link");
    }
}

fn watched(echo: std::net::SocketAddr, path: &str) -> String {
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes[0].path = path.into();
    raw.reload.poll_interval = "100ms".into();
    toml::to_string(&raw).expect("serialises")
}

/// Wait until `path` is routed (a 101) on `addr`.
async fn until_routed(addr: std::net::SocketAddr, path: &str) -> Ws<tokio::net::TcpStream> {
    within("the new route is live", async {
        loop {
            if let (_, Some(ws)) = ws_try(addr, "localhost", path, &[]).await {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_follows_a_configmap_symlink_swap() {
    let echo = start_echo().await;
    let mut cm = ConfigMapDir::new(&watched(echo, "/a"));
    let config = Config::load(Some(&cm.file())).expect("valid config");
    let running = tidegate::server::start(config).await.expect("binds");
    let (addr, admin) = (running.listeners[0].addr, running.admin.expect("admin"));
    let mut open = ws_connect(addr, "/a").await;
    echo_text(&mut open, "before").await;

    // Same length as the first version ("/a" → "/b"), same time.
    cm.update(&watched(echo, "/b"));
    let mut new = until_routed(addr, "/b").await;
    echo_text(&mut new, "new route").await;
    echo_text(&mut open, "the open session stays").await;
    let (resp, _) = ws_try(addr, "localhost", "/a", &[]).await;
    assert_eq!(resp.status, 404, "the old route is gone");

    // A bad version is refused whole; /b keeps serving.
    cm.update("[[routes]]\npath = \"/c\"\nupstream = \"nowhere\"\n");
    let labels = [("result", "rejected")];
    wait_metric(admin, "tidegate_config_reloads_total", &labels, 1.0).await;
    let mut still = ws_connect(addr, "/b").await;
    echo_text(&mut still, "old config serving").await;
    echo_text(&mut open, "and the first session").await;
    let text = scrape(admin).await;
    assert_eq!(
        text.get("tidegate_config_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
}

/// Wait until `/readyz` answers `status`.
async fn readyz_becomes(admin: std::net::SocketAddr, status: u16) {
    within(&format!("/readyz answers {status}"), async {
        while http_get(admin, "/readyz").await.status != status {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_upstream() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let up_addr = upstream.local_addr().expect("addr");
    let mut raw = raw_config(&[ws_url(up_addr)]);
    raw.readiness.require_upstream = true;
    raw.readiness.probe_interval = "100ms".into();
    let gw = start_gateway(raw).await;
    readyz_becomes(gw.admin, 200).await;
    let up = [("upstream", "up")];
    wait_metric(gw.admin, "tidegate_upstream_reachable", &up, 1.0).await;

    drop(upstream);
    readyz_becomes(gw.admin, 503).await;
    wait_metric(gw.admin, "tidegate_upstream_reachable", &up, 0.0).await;

    let _back = tokio::net::TcpListener::bind(up_addr)
        .await
        .expect("rebind the upstream's port");
    readyz_becomes(gw.admin, 200).await;
    wait_metric(gw.admin, "tidegate_upstream_reachable", &up, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_ignores_the_upstream_by_default() {
    let gone = refused_port().await;
    let gw = start_gateway(raw_config(&[ws_url(gone)])).await;
    readyz_becomes(gw.admin, 200).await;
}
