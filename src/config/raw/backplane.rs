//! `[fanout.backplane]` as written: the NATS connection that carries
//! publishes between gateway instances (issue 18, docs/fanout.md).
//!
//! Secrets (token, password, NKey seed) are never written inline: each is
//! read from a file or an environment variable, so the effective
//! configuration printed by `check-config` and `/config` holds none.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBackplane {
    /// `""` (off: fan-out stays within this instance) or `"nats"`.
    pub kind: String,
    /// NATS server URLs (`nats://host:4222`, `tls://host:4222`); the
    /// client picks one and fails over to the others.
    pub servers: Vec<String>,
    /// Token authentication: a file holding the token, or a variable.
    pub token_file: String,
    pub token_env: String,
    /// User/password authentication; the password from a file or a variable.
    pub user: String,
    pub password_file: String,
    pub password_env: String,
    /// NKey authentication: a file holding the seed (`SU…`).
    pub nkey_seed_file: String,
    /// Decentralised JWT authentication: a `.creds` file (JWT + seed).
    pub creds_file: String,
    /// PEM file of the CA that signed the servers' certificates; setting it
    /// requires TLS.
    pub tls_ca_file: String,
    /// Require TLS even without `tls_ca_file` (system roots).
    pub tls_required: bool,
    /// Prepended to the channel name to make the NATS subject.
    pub subject_prefix: String,
    /// `true`: `/readyz` is 503 until the backplane is connected;
    /// `false`: ready without it (fan-out degraded to this instance).
    pub required: bool,
    /// Publishes waiting for the NATS connection; more are dropped and
    /// counted (`reason="queue_full"`).
    pub publish_queue: u64,
    /// Time allowed to establish one connection to a server.
    pub connect_timeout: String,
    /// Longest pause between reconnect attempts (they start at 100 ms
    /// and double).
    pub reconnect_max: String,
}

impl Default for RawBackplane {
    fn default() -> Self {
        Self {
            kind: String::new(),
            servers: Vec::new(),
            token_file: String::new(),
            token_env: String::new(),
            user: String::new(),
            password_file: String::new(),
            password_env: String::new(),
            nkey_seed_file: String::new(),
            creds_file: String::new(),
            tls_ca_file: String::new(),
            tls_required: false,
            subject_prefix: "tidegate.fanout.".into(),
            required: false,
            publish_queue: 8192,
            connect_timeout: "2s".into(),
            reconnect_max: "2s".into(),
        }
    }
}
