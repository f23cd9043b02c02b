//! Keeping one slot of a [`Pool`] connected: its supervisor task connects
//! (TCP, TLS, the upgrade with the mux sub-protocol), runs the connection
//! until it ends, and reconnects after a doubling, jittered backoff.

use super::Pool;
use crate::mux::conn::Conn;
use crate::upstream::{self, ConnectError, Outcome};
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;
use tidegate_mux::codec::{has_extension, EXTENSIONS_HEADER, EXTENSION_FANOUT};
use tidegate_mux::SUBPROTOCOL;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

/// A connection that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

impl Pool {
    pub(super) async fn supervise(self: Arc<Self>, slot: usize, stop: CancellationToken) {
        let s = &self.settings;
        let ep_index = self.slots[slot].endpoint;
        let m = &self.endpoint_metrics[ep_index];
        let mut backoff = s.reconnect_min;
        loop {
            let began = Instant::now();
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                c = self.connect(slot) => c,
            };
            match connected {
                Some((io, leftover, fanout)) => {
                    m.connect_ok.inc();
                    m.up.inc();
                    let conn_metrics = self.metrics.mux.conn(
                        &self.name,
                        &self.config.endpoints[ep_index].url,
                        self.slots[slot].index,
                    );
                    let url = &self.config.endpoints[ep_index].url;
                    let pool = Arc::downgrade(&self);
                    let hub = fanout.then(|| Arc::clone(&self.hub));
                    let (conn, rd) = Conn::new(Arc::clone(s), conn_metrics, url, pool, io, hub);
                    tracing::info!(upstream = %self.name, slot, conn = conn.id, "mux connection up");
                    self.set(slot, Some(Arc::clone(&conn)));
                    self.endpoint_up[ep_index].notify_waiters();
                    tokio::select! {
                        // Stop: the process is exiting; sessions were
                        // drained before this fires.
                        _ = stop.cancelled() => {}
                        () = conn.run(rd, &leftover) => {}
                    }
                    self.set(slot, None);
                    m.up.dec();
                    if began.elapsed() >= STABLE {
                        backoff = s.reconnect_min;
                    }
                }
                None => m.connect_failed.inc(),
            }
            // ±50 % jitter so K slots and several gateways do not reconnect
            // in step.
            let jitter = 0.5 + rand::random::<f64>();
            let delay = backoff.mul_f64(jitter);
            backoff = (backoff * 2).min(s.reconnect_max);
            tokio::select! {
                _ = stop.cancelled() => return,
                () = sleep(delay) => {}
                // A sibling slot got through: the endpoint is back.
                () = self.endpoint_up[ep_index].notified() => {}
            }
        }
    }

    /// Connect one slot: TCP (+ TLS), then the upgrade with the mux
    /// sub-protocol. Returns the socket, bytes read past the 101, and
    /// whether the application echoed the `fanout` extension.
    async fn connect(&self, slot: usize) -> Option<(crate::io::Io, Vec<u8>, bool)> {
        let i = self.slots[slot].endpoint;
        let ep = &self.config.endpoints[i];
        let io = match self.upstream.open(i, ep).await {
            Ok(io) => io,
            // The gateway's own descriptor table is full: retried like a
            // failed connect, without charging the endpoint's health.
            Err(ConnectError::NoDescriptor) => {
                tracing::warn!(upstream = %self.name, endpoint = %ep.url, "no descriptor left for a mux connection");
                return None;
            }
            Err(_) => {
                self.upstream.report(i, Outcome::ConnectFailed);
                return None;
            }
        };
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let request = self.request(ep, &key, self.slots[slot].index);
        let offered = [SUBPROTOCOL.to_string()];
        let handshake =
            upstream::handshake(io, (ep, ""), request.as_bytes(), &key, (&offered, &[]));
        match timeout(self.config.handshake_timeout, handshake).await {
            Ok(Ok(c)) if c.protocol.as_deref() == Some(SUBPROTOCOL) => {
                self.upstream.report(i, Outcome::Ok);
                let fanout = c.headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case(EXTENSIONS_HEADER) && has_extension(v, EXTENSION_FANOUT)
                });
                Some((c.io, c.leftover, fanout))
            }
            Ok(Ok(_)) => {
                tracing::warn!(upstream = %self.name, endpoint = %ep.url, "application did not select {SUBPROTOCOL}");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.name, endpoint = %ep.url, error = %e, "mux connect failed");
                None
            }
            Err(_) => {
                tracing::warn!(upstream = %self.name, endpoint = %ep.url, "mux handshake timed out");
                None
            }
        }
    }

    fn request(&self, ep: &crate::config::EndpointConfig, key: &str, slot: usize) -> String {
        use std::fmt::Write;
        let path = if ep.base_path.is_empty() {
            "/"
        } else {
            ep.base_path.as_str()
        };
        let mut r = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\nX-Tidegate-Instance: {}\r\nX-Tidegate-Slot: {slot}\r\n\
             X-Tidegate-Mux-Extensions: {EXTENSION_FANOUT}\r\n",
            ep.authority, self.instance
        );
        if let Some(secret) = &self.config.mux_secret {
            let _ = write!(r, "X-Tidegate-Mux-Secret: {secret}\r\n");
        }
        for (name, value) in &self.config.add_headers {
            let _ = write!(r, "{name}: {value}\r\n");
        }
        r.push_str("\r\n");
        r
    }
}
