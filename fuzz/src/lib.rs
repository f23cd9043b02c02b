//! The bodies of tidegate's fuzz targets, one module per parser. Each
//! `run(data)` must never panic on any input; a panic is a finding (a bug in
//! the parser, or a broken invariant checked here with `assert!`).
//!
//! Kept as a library so the libFuzzer binaries (`fuzz_targets/`) and the
//! stable seed replay (`tests/smoke.rs`) call the very same code.

pub mod chunked;
pub mod config;
pub mod framing;
pub mod handshake;
pub mod jwt;
pub mod mux_codec;
pub mod path;
pub mod scanner;
pub mod upstream_response;
