//! Accept loops: one per listener. Enforces the global connection cap
//! (`limits.max_connections`, lowered at start to what the open-file limit
//! fits, see `crate::fds`) and the per-client limits (`limits.rs`), and
//! hands each socket to its own connection task. Stops accepting the
//! moment draining starts. TCP_NODELAY is set on the listening socket,
//! which on Linux every accepted socket inherits (one `setsockopt` per
//! connection saved; elsewhere it is set on each).

use super::{connection, Gateway};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Listen backlog: large enough for a connection storm.
const BACKLOG: u32 = 4096;

/// Response for a connection over the cap on a plain listener.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n";

/// `reuseport`: one of several sockets on the same address, one per
/// thread-per-core worker; the kernel spreads new connections over them.
/// Off otherwise, so a second gateway started by mistake on the same port
/// fails to bind instead of silently taking half of the clients.
pub fn bind(addr: SocketAddr, reuseport: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuseport {
        socket.set_reuseport(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// `index`: this listener's place in `config.listeners` (its TLS settings
/// are read from the current configuration at each accept, so a reload or
/// a rotated certificate applies to the next handshake). `worker`: the
/// thread-per-core worker that owns this socket (0 with one runtime).
pub async fn accept_loop(
    gw: Arc<Gateway>,
    (index, worker): (usize, usize),
    name: String,
    listener: TcpListener,
) {
    let config_name = name;
    let name: Arc<str> = Arc::from(config_name.as_str());
    let accepted = gw
        .metrics
        .worker_accepted
        .with_label_values(&[&worker.to_string()]);
    let over_cap = gw
        .metrics
        .listener_refused
        .with_label_values(&[&config_name, "connection_limit"]);
    let over_fds = gw
        .metrics
        .listener_refused
        .with_label_values(&[&config_name, "fd_limit"]);
    let tls_failures = gw
        .metrics
        .tls_handshake_failures
        .with_label_values(&[&config_name]);
    // The descriptor table is full (accepted on the spare descriptor).
    let refuse_no_fd = |tcp: TcpStream| {
        over_fds.inc();
        let plain = gw
            .state()
            .config
            .listeners
            .get(index)
            .is_some_and(|l| l.tls.is_none());
        turn_away(&tcp, plain.then_some(OVER_CAPACITY));
    };
    loop {
        // Drain stops accepting; the listening socket closes when this returns.
        let Some((tcp, peer)) =
            crate::io::accept_until(&listener, gw.shutdown.draining(), &name, &refuse_no_fd).await
        else {
            return;
        };
        accepted.inc();
        let acceptor = gw
            .state()
            .config
            .listeners
            .get(index)
            .and_then(|l| l.tls.clone())
            .map(tokio_rustls::TlsAcceptor::from);
        let Ok(permit) = Arc::clone(&gw.permits).try_acquire_owned() else {
            over_cap.inc();
            turn_away(&tcp, acceptor.is_none().then_some(OVER_CAPACITY));
            continue;
        };
        let slots = match gw.client_limits.admit(peer.ip()) {
            Ok(slots) => slots,
            Err(limited) => {
                refuse_limited(&gw, &config_name, &tcp, acceptor.is_none(), limited);
                continue;
            }
        };
        #[cfg(not(target_os = "linux"))]
        let _ = tcp.set_nodelay(true);
        let span = tracing::debug_span!("conn", listener = %name, client = %peer);
        let task = connection::handle(
            Arc::clone(&gw),
            tcp,
            peer,
            acceptor,
            tls_failures.clone(),
            permit,
            slots,
        );
        connection::spawn_in(&gw.shutdown, span, task);
    }
}

/// Answer a client that will not be served (over a cap, or no descriptor
/// to serve it with) and close it: a plain listener writes `response`
/// first (one non-blocking write, never waited on), a TLS listener can only
/// close. What the client already sent is read first, bounded: closing a
/// socket with unread bytes sends a reset instead of a FIN, and the client
/// may then lose the response before reading it.
fn turn_away(tcp: &TcpStream, response: Option<&[u8]>) {
    let mut sink = [0u8; 2048];
    for _ in 0..8 {
        match tcp.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    if let Some(response) = response {
        let _ = tcp.try_write(response);
    }
}

/// A connection over a per-client limit: counted and turned away.
fn refuse_limited(
    gw: &super::Gateway,
    listener: &str,
    tcp: &TcpStream,
    plain: bool,
    limited: super::limits::Limited,
) {
    gw.metrics
        .listener_refused
        .with_label_values(&[listener, limited.label()])
        .inc();
    tracing::debug!(
        listener,
        reason = limited.label(),
        "connection refused at accept"
    );
    turn_away(tcp, plain.then(|| limited.response()));
}

#[cfg(test)]
mod tests {
    /// The per-connection `setsockopt` is skipped on Linux because an
    /// accepted socket inherits TCP_NODELAY from the listening one: if a
    /// kernel stopped doing that, small frames would wait for Nagle.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = super::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "accepted socket has TCP_NODELAY"
        );
        assert!(!client.nodelay().unwrap(), "a socket of its own does not");
    }
}
