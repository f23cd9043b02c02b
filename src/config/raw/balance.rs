//! The upstream keys of balancing, health and DNS as written
//! (`upstreams[].balance`, `hash_key`, `resolve_interval`, `nameservers`,
//! `[upstreams.health]`, `[upstreams.affinity_cookie]`). Validated into
//! `config::BalanceConfig` by `validate::balance`.

use serde::{Deserialize, Serialize};

/// `[upstreams.health]`: active checks and passive ejection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealth {
    /// Path of the HTTP GET each endpoint is checked with (2xx/3xx:
    /// healthy); empty: no active checks.
    pub path: String,
    /// Time between two checks of one endpoint.
    pub interval: String,
    /// Time a check may take (connect included) before it counts as failed.
    pub timeout: String,
    /// Passing checks in a row that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Failing checks in a row that take an endpoint out.
    pub unhealthy_threshold: u32,
    /// Passive ejection: connect failures or 5xx answers in a row that
    /// eject an endpoint; 0: never.
    pub eject_after: u32,
    /// First ejection's length; each further ejection in a row doubles it,
    /// up to `eject_max`.
    pub eject_for: String,
    pub eject_max: String,
}

impl Default for RawHealth {
    fn default() -> Self {
        Self {
            path: String::new(),
            interval: "5s".into(),
            timeout: "2s".into(),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            eject_after: 5,
            eject_for: "10s".into(),
            eject_max: "5m".into(),
        }
    }
}

/// `[upstreams.affinity_cookie]`: a cookie the gateway sets naming the
/// endpoint that served the client (opaquely), so its next request or
/// upgrade goes to the same one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAffinityCookie {
    /// Cookie name; empty: no affinity cookie.
    pub name: String,
    /// Key of the keyed hash that names endpoints in the cookie; empty: a
    /// random key per process (then gateway replicas do not share
    /// cookies). Redacted in `check-config` and `/config`.
    pub secret: String,
    /// `Path` attribute of the cookie.
    pub path: String,
    /// `Max-Age`; empty: a session cookie.
    pub max_age: String,
    /// Add the `Secure` attribute (the clients come over TLS).
    pub secure: bool,
}

impl Default for RawAffinityCookie {
    fn default() -> Self {
        Self {
            name: String::new(),
            secret: String::new(),
            path: "/".into(),
            max_age: String::new(),
            secure: false,
        }
    }
}
