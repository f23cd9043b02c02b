//! tidegate: a WebSocket edge gateway.
//!
//! Data path, one module per box: `server` (listeners, per-connection
//! phases) → `tls` → `handshake` (request head, RFC 6455 validation) →
//! `route` / `origin` → `upstream` (connect, client handshake) → `relay`
//! (frames both ways). `fds` sizes the connection cap to the open-file
//! limit. `config` is loaded and validated before anything is
//! bound; `metrics` and `admin` make all of it visible.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod echo;
pub mod fds;
pub mod handshake;
pub mod io;
pub mod metrics;
pub mod mux;
pub mod origin;
pub mod relay;
pub mod route;
pub mod server;
pub mod tls;
pub mod upstream;
