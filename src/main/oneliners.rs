//! The configurations of the one-liners: `tidegate proxy` (one route to one
//! upstream, from flags) and `tidegate demo` (a gateway with an embedded
//! echo upstream).

use super::*;

pub(super) fn proxy_config(
    listen: SocketAddr,
    upstream: String,
    tls: Option<(PathBuf, PathBuf)>,
    origins: Vec<String>,
    admin: Option<SocketAddr>,
) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.admin.listen = admin.map(|a| a.to_string()).unwrap_or_default();
    raw.listeners = vec![RawListener {
        name: "default".into(),
        listen: listen.to_string(),
        tls: tls.map(|(cert, key)| RawTls {
            certificates: vec![RawCertificate {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                server_names: Vec::new(),
            }],
        }),
    }];
    raw.upstreams = vec![RawUpstream {
        name: "default".into(),
        endpoints: vec![upstream],
        add_headers: BTreeMap::new(),
        ..RawUpstream::default()
    }];
    raw.routes = vec![RawRoute {
        name: "default".into(),
        upstream: "default".into(),
        origins,
        ..RawRoute::default()
    }];
    raw
}

/// How `proxy` maps a client's path, said at start: the upstream URL's
/// path is a prefix of the client's, not a replacement for it, which
/// surprises whoever pastes an application's full URL as `--upstream`.
pub(super) fn path_mapping(config: &Config) -> Option<String> {
    let ep = config.upstreams.first()?.endpoints.first()?;
    Some(format!(
        "tidegate proxy: client path /x → {} (the client's path is appended to the upstream URL's path)",
        ep.url_of(&format!("{}/x", ep.base_path))
    ))
}

pub(super) fn serve_demo(listen: SocketAddr, admin: SocketAddr, args: RuntimeArgs) -> ExitCode {
    run_on(
        args.apply(tidegate::config::RuntimeConfig::default()),
        async move {
            let signals = match Signals::new() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("tidegate demo: cannot install signal handlers: {e}");
                    return ExitCode::from(1);
                }
            };
            let echo = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("tidegate demo: cannot start the echo upstream: {e}");
                    return ExitCode::from(1);
                }
            };
            let echo_addr = echo.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tokio::spawn(tidegate::echo::serve(
                echo,
                tokio_util::sync::CancellationToken::new(),
            ));
            let build = |listen: SocketAddr, admin: SocketAddr| {
                let mut raw = proxy_config(
                    listen,
                    format!("ws://{echo_addr}"),
                    None,
                    Vec::new(),
                    Some(admin),
                );
                raw.routes[0].name = "echo".into();
                raw.routes[0].path = "/echo".into();
                Config::from_raw(raw).map(|mut c| {
                    c.runtime = args.apply(c.runtime);
                    c
                })
            };
            let mut running = None;
            // Preferred ports first; free ones if those are taken.
            for (l, a) in [(listen, admin), (with_port(listen, 0), with_port(admin, 0))] {
                let config = match build(l, a) {
                    Ok(c) => c,
                    Err(e) => return config_failed(&e),
                };
                if let Ok(r) = server::start(config).await {
                    running = Some(r);
                    break;
                }
            }
            let Some(running) = running else {
                eprintln!("tidegate demo: cannot bind a listener");
                return ExitCode::from(1);
            };
            announce(&running);
            let gw = running.listeners[0].addr;
            let admin = running.admin.map(|a| a.to_string()).unwrap_or_default();
            eprintln!(
            "\n  tidegate demo is up.\n\n  WebSocket echo through the gateway:  ws://{gw}/echo\n  \
             try it:   python3 -m websockets ws://{gw}/echo      (pip install websockets)\n            \
             or: npx wscat -c ws://{gw}/echo\n  send `!close 4000 bye` to see the upstream's close code pass through.\n  \
             plain HTTP too:  curl http://{gw}/echo      curl --data-binary hi http://{gw}/echo\n\n  \
             metrics:  http://{admin}/metrics   readiness: http://{admin}/readyz\n  Ctrl-C drains and exits.\n"
        );
            drain_on_signal(running, signals).await
        },
    )
}

fn with_port(mut addr: SocketAddr, port: u16) -> SocketAddr {
    addr.set_port(port);
    addr
}
