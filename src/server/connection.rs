//! One client connection from accept to the start of its relay, in named
//! phases: TLS → request head → validation (route, origin) → auth →
//! upstream connect and handshake → 101 → relay.
//!
//! This task is short-lived: once both handshakes are done it spawns the
//! relay as a separate, small task and ends, so the buffers and parsed
//! headers of the handshake are freed instead of living as long as the
//! session.

use super::Gateway;
use crate::handshake::{self, read_head, write_rejection, HeadError, Rejection};
use crate::io::Io;
use crate::relay::Session;
use crate::upstream::{build_request, switching_protocols, ClientInfo};
use prometheus::IntCounter;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout_at, Instant};

pub async fn handle(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tls_failures: IntCounter,
    permit: OwnedSemaphorePermit,
) {
    gw.metrics.handshakes_in_progress.inc();
    let _open = scopeguard(&gw);
    let accepted = Instant::now();
    // The configuration this connection lives by, even if a reload swaps
    // it meanwhile.
    let state = gw.state();
    let deadline = accepted + state.config.limits.handshake_timeout;

    // Phase: TLS.
    let tls = acceptor.is_some();
    let mut io = match acceptor {
        None => Io::Tcp(tcp),
        // Boxed, like the other branches not every connection takes: the
        // task's future is as large as its largest state, and it is moved
        // into the task when spawned.
        Some(acceptor) => match timeout_at(deadline, Box::pin(acceptor.accept(tcp))).await {
            Ok(Ok(s)) => Io::TlsServer(Box::new(s)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                tls_failures.inc();
                return;
            }
            Err(_) => {
                tls_failures.inc();
                return;
            }
        },
    };

    // Phase: request head, bounded in bytes and time (slowloris).
    let (head, from_client) = match timeout_at(
        deadline,
        read_head(&mut io, state.config.limits.max_header_bytes),
    )
    .await
    {
        Ok(Ok(x)) => x,
        Ok(Err(HeadError::TooLarge)) => {
            return reject(&gw, &mut io, None, Rejection::HeaderTooLarge).await
        }
        Ok(Err(HeadError::Malformed)) => {
            return reject(&gw, &mut io, None, Rejection::Malformed).await
        }
        Ok(Err(_)) => return,
        Err(_) => {
            gw.metrics
                .handshake_rejections
                .with_label_values(&["-", "handshake_timeout"])
                .inc();
            return;
        }
    };

    // Phase: validation and routing.
    let mut upgrade = match handshake::validate(&head, &state.routes) {
        Ok(u) => u,
        Err(refused) => {
            let route = refused.route.as_ref().map(|r| r.name.as_str());
            return reject(&gw, &mut io, route, refused.rejection).await;
        }
    };
    let rt = &state.runtime[&upgrade.route.name];
    if gw.shutdown.is_cancelled() {
        return reject(&gw, &mut io, Some(&rt.config.name), Rejection::Draining).await;
    }

    // Phase: auth, before any upstream connection is made.
    let identity = match &rt.config.auth {
        None => None,
        Some(policy) => {
            let route = rt.config.name.as_str();
            let method = policy.method_label();
            let started = Instant::now();
            let checked = Box::pin(policy.authenticate(&head, &upgrade)).await;
            gw.metrics
                .auth_duration
                .with_label_values(&[route, method])
                .observe(started.elapsed().as_secs_f64());
            let result = match &checked {
                Ok(identity) => identity.result,
                Err(e) => e.label(),
            };
            gw.metrics
                .auth_results
                .with_label_values(&[route, method, result])
                .inc();
            match checked {
                Ok(identity) => {
                    identity.strip_protocols(&mut upgrade.protocols);
                    Some(identity)
                }
                Err(e) => {
                    // The reason only: never the credential.
                    tracing::debug!(route, policy = %policy.name, reason = e.label(), "auth refused");
                    return reject(&gw, &mut io, Some(route), e.rejection()).await;
                }
            }
        }
    };

    let client = ClientInfo { addr: peer, tls };
    if let Some(mux) = &rt.mux {
        let open = crate::mux::open::open_body(
            &head,
            &upgrade,
            &rt.upstream.config,
            client,
            identity.as_ref(),
        );
        let body = tidegate_mux::Frame::open(1, false, &open).body;
        let stored = crate::mux::stored::StoredOpen::new(&open);
        drop(open);
        drop(head);
        let deadline = Instant::now() + mux.open_timeout;
        let opened = match Box::pin(crate::mux::open::open(
            &mux.pool,
            &body,
            &upgrade.protocols,
            deadline,
        ))
        .await
        {
            Ok(o) => o,
            Err(rejection) => {
                let m = &mux.mux_metrics;
                match &rejection {
                    Rejection::UpstreamStatus { .. } => m.rejected.inc(),
                    Rejection::UpstreamTimeout => m.open_timeout.inc(),
                    _ => rt.metrics.upstream_error.inc(),
                }
                return reject(&gw, &mut io, Some(&rt.config.name), rejection).await;
            }
        };
        let response = switching_protocols(
            &handshake::accept_key(&upgrade.key),
            opened.accept.protocol.as_deref(),
            &opened.accept.headers,
        );
        if !send_101(&mut io, &response, state.config.limits.handshake_timeout).await {
            opened
                .conn
                .send(crate::mux::conn::Out::frame(&tidegate_mux::Frame::close(
                    opened.id,
                    &tidegate_mux::Close::new(1006, "client gone before the 101"),
                )));
            opened.conn.forget(opened.id);
            return;
        }
        mux.mux_metrics.opened.inc();
        rt.metrics.upgraded.inc();
        rt.metrics
            .handshake
            .observe(accepted.elapsed().as_secs_f64());
        let session = crate::mux::session::MuxSession::new(
            io,
            &from_client,
            opened,
            stored,
            Arc::clone(mux),
            gw.shutdown.clone(),
        );
        gw.tracker.spawn(session.run(permit));
        return;
    }

    // Phase: upstream connect and handshake.
    let upstream_config = &rt.upstream.config;
    let connected = rt
        .upstream
        .connect(&upgrade.key, &upgrade.protocols, |ep| {
            build_request(
                &head,
                &upgrade,
                upstream_config,
                ep,
                client,
                identity.as_ref(),
            )
        })
        .await;
    let connected = match connected {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(route = %rt.config.name, error = %e, "upstream handshake failed");
            rt.metrics.upstream_error.inc();
            let rejection = e.rejection();
            gw.metrics
                .handshake_rejections
                .with_label_values(&[&rt.config.name, rejection.label()])
                .inc();
            write_rejection(&mut io, &rejection).await;
            return;
        }
    };

    // Phase: 101 to the client.
    let response = switching_protocols(
        &handshake::accept_key(&upgrade.key),
        connected.protocol.as_deref(),
        &connected.headers,
    );
    if !send_101(&mut io, &response, state.config.limits.handshake_timeout).await {
        return;
    }
    rt.metrics.upgraded.inc();
    rt.metrics
        .handshake
        .observe(accepted.elapsed().as_secs_f64());
    tracing::debug!(route = %rt.config.name, "upgraded");

    // Phase: relay, in its own small task.
    let session = Session::new(
        io,
        connected.io,
        &from_client,
        &connected.leftover,
        Arc::clone(&rt.settings),
        Arc::clone(&rt.metrics),
    )
    .expire_at(identity.as_ref().and_then(|i| i.deadline()));
    // Spawned as is: the relay task is exactly the `Running` future.
    gw.tracker.spawn(session.run(gw.shutdown.clone(), permit));
}

/// Write the 101; false if the client is gone or too slow to take it.
async fn send_101(io: &mut Io, response: &[u8], limit: std::time::Duration) -> bool {
    let sent = timeout_at(Instant::now() + limit, async {
        io.write_all(response).await?;
        io.flush().await
    })
    .await;
    matches!(sent, Ok(Ok(())))
}

/// Refuse the request: count it and answer with its status.
async fn reject(gw: &Gateway, io: &mut Io, route: Option<&str>, rejection: Rejection) {
    gw.metrics
        .handshake_rejections
        .with_label_values(&[route.unwrap_or("-"), rejection.label()])
        .inc();
    let state = gw.state();
    if let Some(rt) = route.and_then(|r| state.runtime.get(r)) {
        rt.metrics.rejected.inc();
    }
    tracing::debug!(
        route = route.unwrap_or("-"),
        reason = rejection.label(),
        "handshake refused"
    );
    write_rejection(io, &rejection).await;
}

/// Decrements the in-progress gauge when the handshake task ends.
struct OpenGuard<'a>(&'a Gateway);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.metrics.handshakes_in_progress.dec();
    }
}

fn scopeguard(gw: &Gateway) -> OpenGuard<'_> {
    OpenGuard(gw)
}
