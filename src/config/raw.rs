//! The configuration as written: serde structs that mirror the TOML file and
//! the `TIDEGATE_` environment one to one.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently
//! ignored setting. Values that need checking (addresses, durations, files)
//! stay strings here; `validate` turns them into the typed `Config` and
//! reports every problem at once with its key path.

pub mod auth;
pub mod backplane;
pub mod balance;
mod edge;
pub mod fanout;
mod ops;
mod route;
mod upstream;

pub use edge::{
    RawCertificate, RawKeepalive, RawLimits, RawListener, RawPaths, RawTls, DEFAULT_MAX_CONNECTIONS,
};
pub use ops::{RawAccessLog, RawAdmin, RawDrain, RawLog, RawReadiness, RawReload, RawRuntime};
pub use route::{RawDeflate, RawHttp, RawRoute};
pub use upstream::{RawMux, RawUpstream};

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`, `/config`).
    pub admin: RawAdmin,
    /// Process-wide limits; routes may override some of them.
    pub limits: RawLimits,
    /// How request paths are normalised before routing.
    pub paths: RawPaths,
    /// Ping interval and pong timeout on both legs.
    pub keepalive: RawKeepalive,
    /// What happens on SIGTERM / SIGINT.
    pub drain: RawDrain,
    /// Sockets the gateway accepts clients on.
    pub listeners: Vec<RawListener>,
    /// Host / path prefix → upstream, with the per-route policy.
    pub routes: Vec<RawRoute>,
    /// Named groups of upstream endpoints.
    pub upstreams: Vec<RawUpstream>,
    /// Named authentication policies, referenced by `routes[].auth`.
    pub auth_policies: Vec<auth::RawAuthPolicy>,
    /// Mux mode: timers and bounds of the pooled application connections
    /// (docs/mux-protocol.md).
    pub mux: RawMux,
    /// Log format and the access log (`[log]`, `[log.access]`).
    pub log: RawLog,
    /// How changes on disk are picked up (`[reload]`).
    pub reload: RawReload,
    /// What `/readyz` requires besides serving (`[readiness]`).
    pub readiness: RawReadiness,
    /// Plain HTTP proxying: defaults for every route and the upstream
    /// keep-alive pools (`[http]`).
    pub http: RawHttp,
    /// Threads and how connections are spread over them (`[runtime]`).
    pub runtime: RawRuntime,
    /// Fan-out: gateway-wide bounds and the HTTP publish API (`[fanout]`,
    /// docs/fanout.md).
    pub fanout: fanout::RawFanout,
}

impl RawConfig {
    /// A copy safe to print: header values that may carry secrets are
    /// replaced.
    pub fn redacted(&self) -> RawConfig {
        let mut copy = self.clone();
        if !copy.admin.token.is_empty() {
            copy.admin.token = "<redacted>".into();
        }
        for upstream in &mut copy.upstreams {
            for e in &mut upstream.endpoints {
                *e = crate::redact::url(e);
            }
            for value in upstream.add_headers.values_mut() {
                *value = "<redacted>".into();
            }
            if !upstream.mux_secret.is_empty() {
                upstream.mux_secret = "<redacted>".into();
            }
            if !upstream.affinity_cookie.secret.is_empty() {
                upstream.affinity_cookie.secret = "<redacted>".into();
            }
        }
        for policy in &mut copy.auth_policies {
            policy.redact();
        }
        copy
    }
}
