//! JWT verification with `jsonwebtoken`. The algorithm is a property of
//! the key, never of the token: a token is checked only with keys whose
//! configured (or JWKS-declared) algorithm equals its header's `alg`, with
//! a `Validation` that allows that one algorithm. So `alg: none` (not an
//! algorithm at all) and RS/HS confusion (an HS256 token against an RSA
//! public key) find no key and are refused.

use super::jwks::Jwks;
use super::AuthError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::time::Duration;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// Matched against the token's `kid`; `None` matches any token.
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// A claim condition; failing one is a 403, not a 401.
#[derive(Debug, Clone)]
pub enum Condition {
    Equals(String, String),
    Contains(String, String),
    OneOf(String, Vec<String>),
}

/// Everything needed to check a token.
pub struct JwtVerifier {
    pub keys: Vec<Key>,
    pub jwks: Option<Jwks>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    /// Non-registered claims that must be present.
    pub required: Vec<String>,
    pub conditions: Vec<Condition>,
    /// `Some(grace)`: the session ends at `exp` + grace.
    pub expiry_grace: Option<Duration>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("jwks", &self.jwks)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

/// Parse an algorithm name as written in config or a JWK.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name.trim() {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

const REGISTERED: &[&str] = &["exp", "nbf", "aud", "iss", "sub"];

impl JwtVerifier {
    /// Verify `token`; its claims on success.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let mut candidates: Vec<Key> = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && (k.kid.is_none() || k.kid == header.kid))
            .cloned()
            .collect();
        if candidates.is_empty() {
            if let Some(jwks) = &self.jwks {
                candidates = jwks.find(header.kid.as_deref(), header.alg).await?;
            }
        }
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut last = AuthError::UnknownKey;
        for key in &candidates {
            match self.decode(token, key) {
                Ok(claims) => return self.check_claims(claims),
                // Another key with the same kid and algorithm may fit.
                Err(AuthError::BadSignature) => last = AuthError::BadSignature,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn decode(&self, token: &str, key: &Key) -> Result<Map<String, Value>, AuthError> {
        let mut v = Validation::new(key.alg);
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.validate_exp = true;
        let mut required = vec!["exp".to_string()];
        required.extend(
            self.required
                .iter()
                .filter(|c| REGISTERED.contains(&c.as_str()))
                .cloned(),
        );
        v.set_required_spec_claims(&required);
        if self.issuers.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&self.issuers);
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
        }
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer
                | ErrorKind::InvalidAudience
                | ErrorKind::InvalidSubject
                | ErrorKind::MissingRequiredClaim(_) => AuthError::Claims,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::UnknownKey,
                _ => AuthError::Malformed,
            }),
        }
    }

    fn check_claims(&self, claims: Map<String, Value>) -> Result<Map<String, Value>, AuthError> {
        if self.required.iter().any(|c| !claims.contains_key(c)) {
            return Err(AuthError::Claims);
        }
        if self.conditions.iter().all(|c| c.holds(&claims)) {
            Ok(claims)
        } else {
            Err(AuthError::Forbidden)
        }
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Condition {
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        match self {
            Condition::Equals(claim, want) => {
                claims.get(claim).and_then(as_text).as_deref() == Some(want.as_str())
            }
            Condition::OneOf(claim, set) => claims
                .get(claim)
                .and_then(as_text)
                .is_some_and(|v| set.contains(&v)),
            Condition::Contains(claim, want) => match claims.get(claim) {
                Some(Value::Array(items)) => items.iter().filter_map(as_text).any(|v| v == *want),
                Some(Value::String(s)) => s.split_whitespace().any(|v| v == want),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions() {
        let claims = json!({"scope": "read ws:connect", "roles": ["a", "b"], "tier": 2});
        let claims = claims.as_object().unwrap();
        assert!(Condition::Contains("scope".into(), "ws:connect".into()).holds(claims));
        assert!(!Condition::Contains("scope".into(), "ws".into()).holds(claims));
        assert!(Condition::Contains("roles".into(), "b".into()).holds(claims));
        assert!(Condition::Equals("tier".into(), "2".into()).holds(claims));
        assert!(Condition::OneOf("tier".into(), vec!["1".into(), "2".into()]).holds(claims));
        assert!(!Condition::Equals("missing".into(), "x".into()).holds(claims));
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(algorithm("EdDSA"), Some(Algorithm::EdDSA));
        assert_eq!(algorithm("none"), None);
    }
}
