//! Signals: SIGHUP reloads the configuration, the first SIGTERM/SIGINT
//! drains, a second one exits at once; systemd hears about each step.

use super::notify_systemd;
use std::process::ExitCode;
use tidegate::server::{Drained, Running};

/// SIGHUP reloads; the first SIGTERM/SIGINT drains; a second one exits at
/// once.
pub(super) async fn drain_on_signal(running: Running, mut signals: Signals) -> ExitCode {
    while signals.next().await == Sig::Reload {
        // systemd shows the unit as reloading until READY=1 (a
        // Type=notify-reload unit's `systemctl reload` waits for it); the
        // timestamp lets it tell this reload from an earlier one.
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => notify_systemd(&[sd_notify::NotifyState::Reloading, now]),
            Err(_) => notify_systemd(&[sd_notify::NotifyState::Reloading]),
        }
        // Errors are logged and counted; the old configuration stays.
        let _ = running.gateway.reload().await;
        notify_systemd(&[sd_notify::NotifyState::Ready]);
    }
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    running.shutdown();
    tokio::spawn(async move {
        while signals.next().await == Sig::Reload {}
        eprintln!("tidegate: second signal, exiting without waiting for the drain");
        std::process::exit(1);
    });
    match running.wait().await {
        Drained::Clean => tracing::info!("drained: all connections closed"),
        Drained::GraceExpired(n) => tracing::warn!(left = n, "drain grace period over; exiting"),
    }
    ExitCode::SUCCESS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sig {
    Stop,
    Reload,
}

/// The signals tidegate acts on, installed once.
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub(super) async fn next(&mut self) -> Sig {
        tokio::select! {
            // SIGTERM: orchestrator stop.
            _ = self.term.recv() => Sig::Stop,
            // SIGINT: Ctrl-C.
            _ = self.int.recv() => Sig::Stop,
            // SIGHUP: reload the configuration.
            _ = self.hup.recv() => Sig::Reload,
        }
    }
}
