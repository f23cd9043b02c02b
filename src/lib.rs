//! tidegate: a WebSocket edge gateway.
//!
//! Data path, one module per box: `server` (listeners, per-connection
//! phases) → `tls` → `handshake` (request head, RFC 6455 validation) →
//! `route` / `origin` → `upstream` (connect, client handshake) → `relay`
//! (frames both ways) or `mux` (sessions over pooled upstream
//! connections). `frame` owns the RFC 6455 frame rules both of them
//! apply: opcodes, header parsing and encoding, violations and their close
//! codes. `config` is loaded and validated before anything is bound;
//! `metrics` and `admin` make all of it visible.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod echo;
pub mod frame;
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
