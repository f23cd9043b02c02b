//! The upgrade handshake of a mux connection (docs/mux-protocol.md §1):
//! hyper serves the HTTP/1.1 request, the answer is 101 with
//! `tidegate.mux.v1` only when the gateway offered it, 400 otherwise (426
//! for a request that is not an upgrade at all), 401 when a gateway secret
//! is configured and the request does not carry it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{conn, next_conn_id, ServerShared};
use crate::codec::{has_extension, EXTENSIONS_HEADER, EXTENSION_FANOUT, SUBPROTOCOL};

/// Header naming the gateway process (its session id space, §3).
const INSTANCE_HEADER: &str = "x-tidegate-instance";

/// Header carrying the gateway's shared secret (§1).
const SECRET_HEADER: &str = "x-tidegate-mux-secret";

/// Longest instance string taken from the header; longer ones are treated
/// as absent (the gateway sends 16 hex digits).
const MAX_INSTANCE_LEN: usize = 64;

/// Accept TCP connections until the server is dropped (this task is then
/// aborted).
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<ServerShared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off, keep going.
                tracing::warn!(error = %e, "mux accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let timeout = shared.config.handshake_timeout;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(upgrade(req, shared, peer)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "mux handshake connection failed");
            }
        });
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Did the request offer `tidegate.mux.v1` (in any of its
/// `Sec-WebSocket-Protocol` headers)?
fn offers_mux(req: &Request<Body>) -> bool {
    req.headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Compare in time that depends only on the lengths, never on where the
/// first differing byte is (a timing oracle would let a peer guess the
/// secret byte by byte).
fn same_secret(given: &[u8], want: &[u8]) -> bool {
    let mut diff = (given.len() != want.len()) as u8;
    for (i, w) in want.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(!*w) ^ w;
    }
    std::hint::black_box(diff) == 0
}

fn upgrade(
    mut req: Request<Body>,
    shared: Arc<ServerShared>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        let mut r = plain(
            StatusCode::UPGRADE_REQUIRED,
            "a tidegate.mux.v1 WebSocket endpoint\n",
        );
        r.headers_mut().insert(
            hyper::header::UPGRADE,
            HeaderValue::from_static("websocket"),
        );
        return r;
    }
    if !offers_mux(&req) {
        return plain(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer tidegate.mux.v1\n",
        );
    }
    if let Some(want) = &shared.config.gateway_secret {
        let given = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
        if !given.is_some_and(|g| same_secret(g, want.as_bytes())) {
            tracing::warn!(%peer, "mux connection without the gateway secret refused");
            return plain(
                StatusCode::UNAUTHORIZED,
                "X-Tidegate-Mux-Secret missing or wrong\n",
            );
        }
    }
    if shared.draining.load(std::sync::atomic::Ordering::Acquire) {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "this instance is going away\n",
        );
    }
    let conn = next_conn_id();
    let instance: Arc<str> = match req
        .headers()
        .get(INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_INSTANCE_LEN)
    {
        Some(v) => v.into(),
        // Without an instance, ids cannot be matched across connections:
        // give this connection an id space of its own.
        None => format!("anonymous-{conn}").into(),
    };
    // Extension `fanout` (§10): only when the gateway offered it and this
    // server takes it; the 101 says so.
    let fanout = shared.config.fanout
        && req
            .headers()
            .get_all(EXTENSIONS_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| has_extension(v, EXTENSION_FANOUT));
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request\n"),
    };
    tokio::spawn(async move {
        match fut.await {
            Ok(ws) => conn::run(shared, conn, instance, peer, fanout, ws).await,
            Err(e) => tracing::debug!(%peer, error = %e, "mux upgrade failed"),
        }
    });
    let mut response = response.map(|_| Full::new(Bytes::new()));
    response.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if fanout {
        response.headers_mut().insert(
            EXTENSIONS_HEADER,
            HeaderValue::from_static(EXTENSION_FANOUT),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::same_secret(
            b"s3cret-s3cret-s3cret",
            b"s3cret-s3cret-s3cret"
        ));
        for bad in [
            &b""[..],
            b"s3cret",
            b"s3cret-s3cret-s3creT",
            b"s3cret-s3cret-s3cret!",
        ] {
            assert!(!super::same_secret(bad, b"s3cret-s3cret-s3cret"), "{bad:?}");
        }
    }
}
