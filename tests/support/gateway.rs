//! The gateway under test, one configuration builder and two ways to run
//! it: in-process (`tidegate::server::start`, for most tests) or as the
//! release binary (`tidegate run --config FILE`, where signals, exit codes
//! or file descriptors of a real process are the point). Both start from
//! the same [`RawConfig`]; the binary and the in-process reload read it
//! from a [`ConfigFile`].

use super::client::{http_get, raw_request, HttpResponse};
use super::process::{addr_field, tidegate_command, Spawned};
use super::within;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tidegate::config::raw::{
    RawCertificate, RawConfig, RawListener, RawRoute, RawTls, RawUpstream,
};
use tidegate::config::Config;
use tidegate::server::{self, Running};

/// One plain listener `main`, admin on port 0, upstream `up` with
/// `endpoints`, route `r` on `/` to it.
pub fn raw_config(endpoints: &[String]) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.admin.listen = "127.0.0.1:0".into();
    raw.listeners = vec![RawListener {
        name: "main".into(),
        listen: "127.0.0.1:0".into(),
        tls: None,
    }];
    raw.upstreams = vec![RawUpstream {
        name: "up".into(),
        endpoints: endpoints.to_vec(),
        ..RawUpstream::default()
    }];
    raw.routes = vec![RawRoute {
        name: "r".into(),
        upstream: "up".into(),
        ..RawRoute::default()
    }];
    raw
}

/// [`raw_config`] with route `r` in mux mode over `pool_size` connections
/// per endpoint; reconnects kept quick for the tests.
pub fn mux_config(endpoints: &[String], pool_size: u64) -> RawConfig {
    let mut raw = raw_config(endpoints);
    raw.upstreams[0].pool_size = Some(pool_size);
    raw.routes[0].mode = "mux".into();
    raw.mux.reconnect_max = "500ms".into();
    raw
}

/// `ws://ADDR`.
pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

/// A TLS section for a listener: (cert file, key file, server names).
pub fn tls_section(certs: &[(&Path, &Path, &[&str])]) -> RawTls {
    RawTls {
        certificates: certs
            .iter()
            .map(|(cert, key, names)| RawCertificate {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                server_names: names.iter().map(|n| n.to_string()).collect(),
            })
            .collect(),
    }
}

/// A configuration written as TOML into its own temporary directory
/// (which also holds the binary's stderr log).
pub struct ConfigFile {
    dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(raw: &RawConfig) -> ConfigFile {
        ConfigFile::with_text(&toml::to_string(raw).expect("RawConfig serialises as TOML"))
    }

    /// A file of any text, valid or not (the CLI's own tests).
    pub fn with_text(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tidegate.toml");
        let file = ConfigFile { dir, path };
        file.write_text(text);
        file
    }

    /// Replace the file with `raw` (a reload reads it).
    pub fn write(&self, raw: &RawConfig) {
        let text = toml::to_string(raw).expect("RawConfig serialises as TOML");
        self.write_text(&text);
    }

    /// Replace the file with any text, valid or not.
    pub fn write_text(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write config file");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A gateway running in this process.
pub struct Gateway {
    pub running: Running,
    /// The first listener's bound address.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    fn from_running(running: Running) -> Gateway {
        Gateway {
            addr: running.listeners[0].addr,
            admin: running.admin.expect("admin listener configured"),
            running,
        }
    }
}

/// Start a gateway in this process from `raw`.
pub async fn start_gateway(raw: RawConfig) -> Gateway {
    let config = Config::from_raw(raw).unwrap_or_else(|e| panic!("test config is valid: {e}"));
    let running = server::start(config).await.expect("gateway binds port 0");
    Gateway::from_running(running)
}

/// Start a gateway in this process from a file, which its reloads re-read.
pub async fn start_gateway_from(file: &ConfigFile) -> Gateway {
    let config =
        Config::load(Some(&file.path)).unwrap_or_else(|e| panic!("test config is valid: {e}"));
    let running = server::start(config).await.expect("gateway binds port 0");
    Gateway::from_running(running)
}

/// The release binary running `run --config` on a [`ConfigFile`].
pub struct GatewayProc {
    pub proc: Spawned,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The first `tidegate listening …` line, as printed.
    pub listening: String,
    log: PathBuf,
}

impl GatewayProc {
    /// Start it and wait for its listener and admin address lines.
    pub async fn start(file: &ConfigFile) -> GatewayProc {
        GatewayProc::start_with_env(file, &[]).await
    }

    /// [`GatewayProc::start`] with extra environment variables (e.g. a
    /// `TIDEGATE_LOG` filter that lets the access log through).
    pub async fn start_with_env(file: &ConfigFile, env: &[(&str, &str)]) -> GatewayProc {
        let log = file.dir().join("stderr.log");
        let mut cmd = tidegate_command();
        cmd.envs(env.iter().copied());
        cmd.arg("run")
            .arg("--config")
            .arg(&file.path)
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut proc = Spawned::spawn(cmd);
        let listening = proc.line_starting("tidegate listening ").await;
        let admin = proc.line_starting("tidegate admin ").await;
        GatewayProc {
            addr: addr_field(&listening),
            admin: addr_field(&admin),
            listening,
            proc,
            log,
        }
    }

    /// What it wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Wait until `/readyz` answers 200 (e.g. a mux connection is up).
pub async fn wait_ready(admin: SocketAddr) {
    within("/readyz answers 200", async {
        while http_get(admin, "/readyz").await.status != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `POST /reload` on the admin listener, with the `X-Tidegate-Admin`
/// header a state change needs from a loopback client without a token.
pub async fn post_reload(admin: SocketAddr) -> HttpResponse {
    raw_request(
        admin,
        b"POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tidegate-Admin: reload\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
}
