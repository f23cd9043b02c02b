//! tidegate: a WebSocket edge gateway.
//!
//! Data path, one module per box, in the order a connection meets them:
//! `server` (listeners, the connection's named phases) → `tls` →
//! `handshake` (request head, route, classify, RFC 6455 checks, the one
//! refusal type) → `route` / `origin` / `auth` (the policy phase: Origin,
//! credentials → `Identity`) → dispatch to either `upstream` + `relay`
//! (passthrough: one upstream WebSocket per client, frames relayed as
//! bytes) or `mux` (sessions over pooled application connections,
//! `tidegate.mux.v1`). `deflate` owns permessage-deflate negotiation. `frame` owns the RFC 6455 frame rules both apply
//! (opcodes, header parsing and encoding, violations and their close
//! codes). `shutdown` owns the drain; `fds` sizes the connection cap to the
//! open-file limit; `config` is loaded and
//! validated before anything is bound; `metrics` and `admin` make all of it
//! visible (`access` writes one line per session end); `echo` is the demo
//! upstream.

// No unsafe code in the product. The unit tests may: their counting
// allocator (src/mux/conn/outbuf/tests.rs) is the only `unsafe`, allowed
// item by item. `deny`, not `forbid`: fan-out's batched sends
// (`fanout::uring`) are the one module allowed unsafe code (entries that
// point the kernel at a shared frame and a raw descriptor).
#![cfg_attr(not(test), deny(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

pub mod access;
pub mod admin;
pub mod auth;
pub mod config;
pub mod deflate;
pub mod echo;
pub mod fanout;
pub mod fds;
pub mod frame;
pub mod handshake;
pub mod http;
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
