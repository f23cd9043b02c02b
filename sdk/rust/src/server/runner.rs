//! Serve until SIGTERM/SIGINT, then hand the sessions back: what the
//! examples run, public so applications restart the same way (README
//! "Restarting").
//!
//! On the signal: [`MuxServer::goaway`] (stop listening, GOAWAY on every
//! connection), keep answering OPENs still addressed here, and return once
//! the gateway has closed every connection — it moved the sessions to
//! other instances, or, with nowhere to move them, let this one go at once
//! and holds them for the next — or after `drain_max`.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::{Incoming, MuxServer};

/// How long a draining instance waits for the gateway to close its
/// connections (the gateway's `mux.resume_grace` is 30 s).
pub const DRAIN_MAX: Duration = Duration::from_secs(35);

/// Answer every OPEN with `serve` (each on its own task) until SIGTERM or
/// SIGINT, then GOAWAY and drain for at most `drain_max`.
pub async fn run_until_signal<F, Fut>(
    server: &MuxServer,
    drain_max: Duration,
    mut serve: F,
) -> io::Result<()>
where
    F: FnMut(Incoming) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            // A new OPEN: answered on its own task.
            incoming = server.accept() => match incoming {
                Some(i) => { tokio::spawn(serve(i)); }
                None => return Ok(()),
            },
            // Redeploy or Ctrl-C: hand the sessions back.
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let told = server.goaway("shutting down");
    tracing::info!(connections = told, "signal: GOAWAY sent, draining");
    let deadline = tokio::time::sleep(drain_max);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            // OPENs (resumed ones too) still sent here meanwhile.
            incoming = server.accept() => match incoming {
                Some(i) => { tokio::spawn(serve(i)); }
                None => return Ok(()),
            },
            // The gateway closed every connection: nothing is lost.
            () = server.wait_connections_closed() => return Ok(()),
            () = &mut deadline => {
                tracing::warn!(left = server.connection_count(), "drain window over");
                return Ok(());
            }
        }
    }
}
