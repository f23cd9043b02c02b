//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the
//! process is alive), `/readyz` (200 while serving, 503 while starting or
//! draining), `/config` (the effective configuration, secrets redacted)
//! and `POST /reload` (re-read the configuration, like SIGHUP).
//! Plain HTTP/1.1 on hyper; it stays up through the drain so orchestrators
//! can watch readiness fall. Every request passes [`access::check`] first
//! (Host, optional token, non-simple state changes).

pub mod access;

use crate::server::Gateway;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bind and serve in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    gw: Arc<Gateway>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            // Process exit stops serving.
            let Some((tcp, _)) = crate::io::accept_until(&listener, &stop, "admin", drop).await
            else {
                return;
            };
            let gw = Arc::clone(&gw);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let gw = Arc::clone(&gw);
                    async move {
                        let access = &gw.state().config.admin_access;
                        if let Err(denied) = access::check(access, req.method(), req.headers()) {
                            return Ok::<_, Infallible>(refuse(&gw, denied));
                        }
                        if req.uri().path() == "/reload" && req.method() == hyper::Method::POST {
                            return Ok::<_, Infallible>(reload(&gw).await);
                        }
                        Ok::<_, Infallible>(respond(&gw, &req))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = conn.await;
            });
        }
    });
    Ok(local)
}

/// An admin request that failed [`access::check`]: counted, answered
/// with the reason and nothing else.
fn refuse(gw: &Gateway, denied: access::Denied) -> Response<Full<Bytes>> {
    gw.metrics
        .admin_refused
        .with_label_values(&[denied.label()])
        .inc();
    tracing::debug!(reason = denied.label(), "admin request refused");
    let mut response = Response::builder()
        .status(denied.status())
        .header("content-type", "text/plain");
    if denied == access::Denied::Token {
        response = response.header("www-authenticate", "Bearer");
    }
    response
        .body(Full::new(Bytes::from(format!("{denied}\n"))))
        .expect("static response parts are valid")
}

/// `POST /reload`: 200 when the new configuration is in force, 422 with
/// every problem when it was rejected (the old one keeps serving).
async fn reload(gw: &Gateway) -> Response<Full<Bytes>> {
    let (status, body) = match gw.reload().await {
        Ok(()) => (StatusCode::OK, "reloaded\n".to_string()),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn respond(gw: &Gateway, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, content_type: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n".into(),
            "text/plain",
        );
    }
    match req.uri().path() {
        "/metrics" => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(gw.metrics.encode())))
            .expect("static response parts are valid"),
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => {
            if gw.is_ready() {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready\n".into(),
                    "text/plain",
                )
            }
        }
        "/config" => {
            let body = toml::to_string_pretty(&gw.state().config.raw.redacted())
                .unwrap_or_else(|e| format!("# cannot render config: {e}\n"));
            text(StatusCode::OK, body, "application/toml")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}
