//! Edge authentication: the phase between validation (route, Origin) and
//! the upstream connect. A route's [`AuthPolicy`] finds the credential
//! (`source`), checks it with one method (`jwt` + `jwks`, `apikey`,
//! `forward`) and yields an [`Identity`] for the upstream request; a
//! refusal is an [`AuthError`] that knows its status and metric label.
//! Tokens and secrets are never logged and never used as metric labels.

pub mod apikey;
pub mod error;
pub mod forward;
pub mod http;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub(crate) mod policy;
pub mod source;

pub use error::AuthError;
pub use identity::Identity;

use crate::handshake::{RequestHead, Upgrade};
use apikey::ApiKeys;
use forward::{Allowed, ForwardAuth};
use jwt::JwtVerifier;
use serde_json::{Map, Value};
use source::TokenSource;

/// How credentials are checked.
#[derive(Debug)]
pub enum Method {
    Jwt(JwtVerifier),
    ApiKeys(ApiKeys),
    Forward(ForwardAuth),
}

/// A validated `[[auth_policies]]` entry, shared by the routes naming it
/// (and so are its JWKS cache and forward-auth cache).
#[derive(Debug)]
pub struct AuthPolicy {
    pub name: String,
    pub sources: Vec<TokenSource>,
    pub keep_credential: bool,
    /// (claim, header).
    pub identity_headers: Vec<(String, String)>,
    /// Lower-case header names a client may not send (identity headers and
    /// forward-auth response headers).
    pub reserved_headers: Vec<String>,
    pub method: Method,
}

/// On reload: every JWKS of the `new` policies takes over the cache of an
/// `old` one reading the same key source, so a reload neither refetches
/// nor forgets keys (the source may be down right now) and the fetch
/// spacing holds across it.
pub fn keep_jwks_caches<'a>(
    old: impl Iterator<Item = &'a AuthPolicy> + Clone,
    new: impl Iterator<Item = &'a AuthPolicy>,
) {
    for jwks in new.filter_map(AuthPolicy::jwks) {
        // First match wins; equal identities hold equal keys.
        let _ = old
            .clone()
            .filter_map(AuthPolicy::jwks)
            .any(|o| jwks.adopt(o));
    }
}

impl AuthPolicy {
    fn jwks(&self) -> Option<&jwks::Jwks> {
        match &self.method {
            Method::Jwt(v) => v.jwks.as_ref(),
            _ => None,
        }
    }

    /// Does a successful check yield claims (JWT, API key) that a route's
    /// `fanout.channels_claim` can read? Forward auth yields headers only.
    pub fn has_claims(&self) -> bool {
        !matches!(self.method, Method::Forward(_))
    }

    /// `method` label of `tidegate_auth_results_total`.
    pub fn method_label(&self) -> &'static str {
        match self.method {
            Method::Jwt(_) => "jwt",
            Method::ApiKeys(_) => "api_key",
            Method::Forward(_) => "forward",
        }
    }

    /// Check the request; on success, what the upstream request carries.
    pub async fn authenticate(
        &self,
        head: &RequestHead,
        upgrade: &Upgrade,
    ) -> Result<Identity, AuthError> {
        let found = source::find(head, &self.sources);
        let mut identity = Identity::new(
            "ok",
            &self.reserved_headers,
            &self.sources,
            self.keep_credential,
        );
        match &self.method {
            Method::Jwt(verifier) => {
                let (token, _) = found.ok_or(AuthError::Missing)?;
                let claims = verifier.verify(&token).await?;
                if let Some(grace) = verifier.expiry_grace {
                    identity.expires = identity::expiry(&claims, grace);
                }
                identity.add_claims(&claims, &self.identity_headers);
                identity.add_channels(&claims, &upgrade.route.fanout.channels_claim);
                identity.subject = claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_string);
            }
            Method::ApiKeys(keys) => {
                let (token, _) = found.ok_or(AuthError::Missing)?;
                let name = keys.check(&token).ok_or(AuthError::UnknownApiKey)?;
                let mut claims = Map::new();
                claims.insert("sub".into(), Value::String(name.to_string()));
                claims.insert("key_name".into(), Value::String(name.to_string()));
                identity.subject = Some(name.to_string());
                identity.add_claims(&claims, &self.identity_headers);
                identity.add_channels(&claims, &upgrade.route.fanout.channels_claim);
            }
            Method::Forward(service) => {
                match service.check(head, &upgrade.host, &upgrade.path).await? {
                    Allowed::Headers(headers) => identity.headers = headers,
                    Allowed::FailOpen => identity.result = "fail_open",
                }
            }
        }
        Ok(identity)
    }
}
