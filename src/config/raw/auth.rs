//! `[[auth_policies]]` as written. A route names one policy in its `auth`
//! key; the policy says where the credential is looked for, how it is
//! checked (exactly one of `jwt`, `api_keys`, `forward`) and what the
//! upstream learns about the caller. `crate::auth::policy` validates it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthPolicy {
    /// Referenced by `routes[].auth`; also the `policy` in logs.
    pub name: String,
    /// Where the credential is looked for, tried in order: `bearer`,
    /// `header:NAME`, `cookie:NAME`, `query:NAME`, `protocol:PREFIX`.
    /// Empty: `["bearer"]` for `jwt` and `api_keys`, none for `forward`.
    pub sources: Vec<String>,
    /// Forward the credential upstream as it came (header, bearer or cookie
    /// sources; query and protocol tokens are always removed).
    pub keep_credential: bool,
    /// Claim → upstream header, e.g. `sub = "X-Auth-Subject"`. Client-sent
    /// headers with these names are always removed.
    pub identity_headers: BTreeMap<String, String>,
    pub jwt: Option<RawJwt>,
    pub api_keys: Option<RawApiKeys>,
    pub forward: Option<RawForward>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwt {
    /// Static keys; each fixes its own algorithm.
    pub keys: Vec<RawJwtKey>,
    /// A key set fetched from a URL or read from a file.
    pub jwks: Option<RawJwks>,
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one); empty: not checked.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: String,
    /// Claims that must be present (`exp` always is).
    pub required_claims: Vec<String>,
    /// Claim conditions; a failed one is a 403.
    pub conditions: Vec<RawClaimCondition>,
    /// Close the session (1008 "token expired") when `exp` + grace passes.
    pub enforce_expiry: bool,
    pub expiry_grace: String,
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            jwks: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: "30s".into(),
            required_claims: Vec::new(),
            conditions: Vec::new(),
            enforce_expiry: true,
            expiry_grace: "0s".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwtKey {
    /// Matched against the token's `kid`; empty: tried for any token.
    pub kid: String,
    /// HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub algorithm: String,
    /// HMAC secret as text (redacted in `check-config`).
    pub secret: String,
    /// HMAC secret, base64 (redacted in `check-config`).
    pub secret_base64: String,
    /// PEM public key (RSA, EC or Ed25519) for the asymmetric algorithms.
    pub pem_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwks {
    /// `https://…` (or `http://` on loopback) to fetch the key set from.
    pub url: String,
    /// A JWKS JSON file, re-read on refresh.
    pub file: String,
    /// PEM CA bundle for the URL; empty: system roots.
    pub ca_file: String,
    /// Re-fetch a key set older than this.
    pub refresh_interval: String,
    /// Fetch at most once per this interval, whatever `kid`s clients send.
    pub min_refresh_interval: String,
    /// Time for one fetch.
    pub timeout: String,
    /// Algorithms for RSA keys that carry no `alg` (EC and Ed25519 keys imply theirs).
    pub algorithms: Vec<String>,
}

impl Default for RawJwks {
    fn default() -> Self {
        Self {
            url: String::new(),
            file: String::new(),
            ca_file: String::new(),
            refresh_interval: "5m".into(),
            min_refresh_interval: "10s".into(),
            timeout: "5s".into(),
            algorithms: vec!["RS256".into()],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClaimCondition {
    pub claim: String,
    /// The claim (string, number or bool) equals this text.
    pub equals: Option<String>,
    /// The claim, an array or a space-separated string (OAuth `scope`),
    /// has this element.
    pub contains: Option<String>,
    /// The claim equals one of these.
    pub one_of: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApiKeys {
    pub keys: Vec<RawApiKey>,
    /// Lines `NAME:SHA256HEX` (`#` comments allowed).
    pub file: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApiKey {
    /// For metrics logs and the upstream identity (`sub`).
    pub name: String,
    /// The key itself (hashed at load; redacted in `check-config`).
    pub key: String,
    /// Or its SHA-256, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForward {
    /// `http://` or `https://` auth service; answered with GET.
    pub url: String,
    pub ca_file: String,
    pub timeout: String,
    /// Client request headers sent to the auth service.
    pub request_headers: Vec<String>,
    /// Auth service response headers copied to the upstream request.
    pub response_headers: Vec<String>,
    /// Let clients in when the auth service fails (error, timeout, 5xx).
    pub fail_open: bool,
    /// Cache allowed answers this long, keyed on a hash of the request
    /// headers sent; "0s" disables the cache.
    pub cache_ttl: String,
    pub cache_max_entries: u64,
}

impl Default for RawForward {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: String::new(),
            timeout: "5s".into(),
            request_headers: vec!["authorization".into(), "cookie".into()],
            response_headers: Vec::new(),
            fail_open: false,
            cache_ttl: "0s".into(),
            cache_max_entries: 10_000,
        }
    }
}

impl RawAuthPolicy {
    /// Replace secrets for printing.
    pub fn redact(&mut self) {
        if let Some(jwks) = self.jwt.as_mut().and_then(|j| j.jwks.as_mut()) {
            jwks.url = crate::redact::url(&jwks.url);
        }
        if let Some(forward) = &mut self.forward {
            forward.url = crate::redact::url(&forward.url);
        }
        if let Some(jwt) = &mut self.jwt {
            for k in &mut jwt.keys {
                for s in [&mut k.secret, &mut k.secret_base64] {
                    if !s.is_empty() {
                        *s = REDACTED.into();
                    }
                }
            }
        }
        if let Some(keys) = &mut self.api_keys {
            for k in &mut keys.keys {
                for s in [&mut k.key, &mut k.sha256] {
                    if !s.is_empty() {
                        *s = REDACTED.into();
                    }
                }
            }
        }
    }
}
