//! The NATS client's options from `[fanout.backplane]`: credentials, TLS,
//! timers, and the two choices the backplane depends on — `no_echo` (this
//! instance has already delivered its own publishes locally) and
//! `retry_on_initial_connect` (an unreachable NATS never stops the gateway
//! from serving).

use crate::config::backplane::{BackplaneConfig, NatsAuth};
use async_nats::{ConnectOptions, Event};
use std::time::Duration;
use tokio::sync::mpsc;

/// First pause between reconnect attempts; it doubles up to
/// `reconnect_max`.
const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// Client events kept for the backplane task; a burst beyond this only
/// loses log lines (the task reads the connection state itself).
pub const EVENT_QUEUE: usize = 64;

/// Why the client could not even be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("NATS credentials: {0}")]
    Credentials(#[from] std::io::Error),
    #[error("NATS client: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("backplane thread: {0}")]
    Thread(std::io::Error),
}

impl SetupError {
    pub fn label(&self) -> &'static str {
        match self {
            SetupError::Credentials(_) => "credentials",
            SetupError::Connect(_) => "connect",
            SetupError::Thread(_) => "thread",
        }
    }
}

/// Options for the backplane connection; client events go to `events`.
pub fn options(
    c: &BackplaneConfig,
    instance: &str,
    events: mpsc::Sender<Event>,
) -> Result<ConnectOptions, SetupError> {
    let mut o = match &c.auth {
        NatsAuth::None => ConnectOptions::new(),
        NatsAuth::Token(t) => ConnectOptions::with_token(t.clone()),
        NatsAuth::UserPassword(u, p) => {
            ConnectOptions::with_user_and_password(u.clone(), p.clone())
        }
        NatsAuth::NKey(seed) => ConnectOptions::with_nkey(seed.clone()),
        NatsAuth::Creds(text) => ConnectOptions::new().credentials(text)?,
    };
    if let Some(ca) = &c.tls_ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    let max = c.reconnect_max;
    o = o
        .require_tls(c.tls_required)
        .name(format!("tidegate-{instance}"))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(c.connect_timeout)
        .reconnect_delay_callback(move |attempts| {
            let shift = attempts.saturating_sub(1).min(16) as u32;
            (RECONNECT_MIN * 2u32.pow(shift)).min(max)
        })
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                // Never wait here: the client's connection handler runs
                // this callback.
                let _ = events.try_send(event);
            }
        });
    Ok(o)
}
