//! tidegate: a WebSocket edge gateway.
//!
//! Data path, one module per box, in the order a connection meets them:
//! `server` (listeners, the connection's named phases) → `tls` →
//! `handshake` (request head, route, classify, RFC 6455 checks, the one
//! refusal type) → `route` / `origin` / `auth` (the policy phase: Origin,
//! credentials → `Identity`) → dispatch to either `upstream` + `relay`
//! (passthrough: one upstream WebSocket per client, frames relayed as
//! bytes) or `mux` (sessions over pooled application connections,
//! `tidegate.mux.v1`). `shutdown` owns the drain; `config` is loaded and
//! validated before anything is bound; `metrics` and `admin` make all of it
//! visible; `echo` is the demo upstream.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod echo;
pub mod handshake;
pub mod io;
pub mod metrics;
pub mod mux;
pub mod origin;
pub mod redact;
pub mod relay;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod upstream;
