//! What the upstream learns about an authenticated client, and what it
//! must not see: identity headers to add, credential-carrying parts of the
//! request to remove (and any client-sent copy of the identity headers, so
//! identity cannot be spoofed).

use super::source::TokenSource;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The outcome of a successful authentication, consumed by
/// `upstream::build_request` and the relay's expiry deadline.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `result` label: `ok`, or `fail_open` when the auth service failed
    /// and the policy lets clients in anyway.
    pub result: &'static str,
    /// Headers added to the upstream request.
    pub headers: Vec<(String, String)>,
    /// Lower-case names of client headers not forwarded.
    pub strip_headers: Vec<String>,
    /// Cookies removed from `Cookie`.
    pub strip_cookies: Vec<String>,
    /// Query parameters removed from the target.
    pub strip_queries: Vec<String>,
    /// Offered sub-protocols with these prefixes are not forwarded.
    pub strip_protocol_prefixes: Vec<String>,
    /// When the session must end (JWT `exp` + grace).
    pub expires: Option<SystemTime>,
    /// Who the client is, for the access log: the JWT `sub` claim or the
    /// API key's name (a forward-auth answer names nobody).
    pub subject: Option<String>,
    /// Fan-out: the channels the token grants, read from the route's
    /// `fanout.channels_claim` (`None`: the route names no such claim).
    pub channels: Option<Vec<String>>,
}

impl Identity {
    /// An identity that removes every place a credential of `sources` may
    /// be carried, not only the one it was found in: a client that sends a
    /// bearer header and `?access_token=` together must not get the second
    /// to the application. `spoofable`: identity headers the client may
    /// not send.
    pub fn new(
        result: &'static str,
        spoofable: &[String],
        sources: &[TokenSource],
        keep: bool,
    ) -> Identity {
        let mut identity = Identity {
            result,
            strip_headers: spoofable.to_vec(),
            ..Identity::default()
        };
        for source in sources {
            identity.strip_credential(source, keep);
        }
        identity
    }

    /// Remove a credential carrier. Query and protocol tokens go
    /// whatever `keep` says: they are not meant for the application.
    fn strip_credential(&mut self, source: &TokenSource, keep: bool) {
        match source {
            TokenSource::Bearer if !keep => self.strip_headers.push("authorization".into()),
            TokenSource::Header(name) if !keep => self.strip_headers.push(name.clone()),
            TokenSource::Cookie(name) if !keep => self.strip_cookies.push(name.clone()),
            TokenSource::Query(name) => self.strip_queries.push(name.clone()),
            TokenSource::Protocol(prefix) => self.strip_protocol_prefixes.push(prefix.clone()),
            _ => {}
        }
    }

    /// Map claims to headers: strings as they are, numbers and booleans as
    /// text, arrays joined with spaces; control characters dropped.
    pub(crate) fn add_claims(&mut self, claims: &Map<String, Value>, map: &[(String, String)]) {
        for (claim, header) in map {
            let value = match claims.get(claim) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => continue,
            };
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            self.headers.push((header.clone(), value));
        }
    }

    /// Fan-out grants: the claim `claim` as a list of channels — a JSON
    /// array of strings, or one string of names separated by spaces or
    /// commas. A route with a claim configured and a token without it
    /// grants nothing (`Some(empty)`).
    pub(crate) fn add_channels(&mut self, claims: &Map<String, Value>, claim: &Option<String>) {
        let Some(claim) = claim else {
            return;
        };
        let channels = match claims.get(claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) => s
                .split([' ', ','])
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        self.channels = Some(channels);
    }

    /// Drop offered sub-protocols that carried the token.
    pub fn strip_protocols(&self, protocols: &mut Vec<String>) {
        protocols.retain(|p| {
            !self
                .strip_protocol_prefixes
                .iter()
                .any(|prefix| p.starts_with(prefix.as_str()))
        });
    }

    /// The session deadline as an `Instant` (now, if already past).
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        let at = self.expires?;
        let left = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Some(tokio::time::Instant::now() + left)
    }
}

/// `exp` (seconds since the epoch) + grace.
pub(crate) fn expiry(claims: &Map<String, Value>, grace: Duration) -> Option<SystemTime> {
    let exp = claims.get("exp")?.as_f64()?;
    if !(0.0..1e12).contains(&exp) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(exp) + grace)
}
