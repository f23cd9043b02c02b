//! The listening side both bundled upstreams (`echo-server`, `http-server`)
//! share: bind, announce the address on stdout for scripts, and accept
//! without spinning when the process runs out of descriptors.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept (EMFILE and friends) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Binds `listen` and prints `{name} listening addr={addr}{suffix}`.
pub async fn bind_and_announce(
    listen: SocketAddr,
    name: &str,
    suffix: &str,
) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // Scripts wait for this exact line to learn the port.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{name} listening addr={addr}{suffix}")?;
    out.flush()?;
    Ok(listener)
}

/// The next accepted connection, with Nagle off; failed accepts back off
/// instead of spinning.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                return sock;
            }
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}
