//! An application instance that says who it is: `GET /health` answers 200
//! (or 503 while marked unhealthy), a WebSocket upgrade gets a 101 with
//! `X-Served-By: NAME` and then an echo. It can be killed (listener and
//! every connection gone, as when a process dies) and started again on the
//! same address: the balancing and health tests stand on it.

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running (or killed) named application.
pub struct NamedApp {
    pub name: String,
    pub addr: SocketAddr,
    /// `GET /health` answers 200 while true, 503 while false.
    pub healthy: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl NamedApp {
    /// Start on `bind` (port 0 for any).
    pub async fn start(name: &str, bind: SocketAddr) -> NamedApp {
        let listener = TcpListener::bind(bind).await.expect("bind named app");
        let addr = listener.local_addr().expect("named app address");
        let app = NamedApp {
            name: name.to_string(),
            addr,
            healthy: Arc::new(AtomicBool::new(true)),
            stop: CancellationToken::new(),
        };
        app.serve(listener);
        app
    }

    /// Try to start on `bind`; `None` if the address is taken.
    pub async fn try_start(name: &str, bind: SocketAddr) -> Option<NamedApp> {
        let listener = TcpListener::bind(bind).await.ok()?;
        let app = NamedApp {
            name: name.to_string(),
            addr: listener.local_addr().ok()?,
            healthy: Arc::new(AtomicBool::new(true)),
            stop: CancellationToken::new(),
        };
        app.serve(listener);
        Some(app)
    }

    /// Stop listening and drop every connection.
    pub fn kill(&self) {
        self.stop.cancel();
    }

    /// Listen again on the same address (after [`NamedApp::kill`]).
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind named app");
        self.stop = CancellationToken::new();
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let (stop, name, healthy) = (
            self.stop.clone(),
            self.name.clone(),
            Arc::clone(&self.healthy),
        );
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let (stop, name, healthy) = (stop.clone(), name.clone(), Arc::clone(&healthy));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, name.clone(), Arc::clone(&healthy), stop.clone())
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
        });
    }
}

impl Drop for NamedApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    mut req: Request<Incoming>,
    name: String,
    healthy: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let plain = |status: u16| {
        Response::builder()
            .status(status)
            .header("x-served-by", &name)
            .body(Empty::new())
            .expect("static response parts are valid")
    };
    if stop.is_cancelled() {
        return Ok(plain(503));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let up = healthy.load(Ordering::SeqCst);
        return Ok(plain(if req.uri().path() == "/health" && up {
            200
        } else {
            503
        }));
    }
    let Ok((mut response, fut)) = fastwebsockets::upgrade::upgrade(&mut req) else {
        return Ok(plain(400));
    };
    response.headers_mut().insert(
        "x-served-by",
        name.parse().expect("a test name is a header value"),
    );
    tokio::spawn(async move {
        let Ok(mut ws) = fut.await else { return };
        loop {
            let frame = tokio::select! {
                // Killed: the connection goes with the process.
                _ = stop.cancelled() => return,
                f = ws.read_frame() => match f {
                    Ok(f) => f,
                    Err(_) => return,
                },
            };
            if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
                let echo = Frame::new(true, frame.opcode, None, frame.payload);
                if ws.write_frame(echo).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(response)
}
