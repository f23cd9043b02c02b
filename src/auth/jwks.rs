//! A JSON Web Key Set, from an HTTPS URL or a file, cached in memory.
//!
//! Refreshed when older than `refresh_interval` (checked on use) and when a
//! token names a `kid` the set does not have (key rotation). Fetches are
//! serialised and spaced at least `min_refresh_interval` apart, so a flood
//! of made-up `kid`s costs the JWKS server one request per interval, not
//! one per client. A failed fetch keeps the keys already known.

use super::http::Target;
use super::jwt::Key;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub enum Source {
    Url(Target),
    File(PathBuf),
}

/// The cached set and when it was fetched.
#[derive(Default)]
struct State {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
    /// Last attempt, successful or not: the spacing applies to both.
    attempted: Option<Instant>,
}

pub struct Jwks {
    pub source: Source,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub timeout: Duration,
    /// Algorithms for RSA keys without `alg`.
    pub rsa_algorithms: Vec<Algorithm>,
    state: RwLock<State>,
    /// One fetch at a time; others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    pub fn new(
        source: Source,
        refresh_interval: Duration,
        min_refresh_interval: Duration,
        timeout: Duration,
        rsa_algorithms: Vec<Algorithm>,
    ) -> Jwks {
        Jwks {
            source,
            refresh_interval,
            min_refresh_interval,
            timeout,
            rsa_algorithms,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Keys that may verify a token with this `kid` and `alg`, refreshing
    /// the set when it is stale or lacks the `kid`.
    pub async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        let stale = {
            let state = self.state.read().expect("JWKS lock is never poisoned");
            state
                .fetched
                .is_none_or(|t| t.elapsed() >= self.refresh_interval)
        };
        if stale {
            self.refresh().await;
        }
        let matching = self.matching(kid, alg);
        if !matching.is_empty() || kid.is_none() {
            return matching;
        }
        // Unknown kid: perhaps the keys rotated.
        self.refresh().await;
        self.matching(kid, alg)
    }

    fn matching(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        let keys = Arc::clone(&self.state.read().expect("JWKS lock is never poisoned").keys);
        keys.iter()
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .cloned()
            .collect()
    }

    /// Fetch unless another fetch happened within the minimum spacing.
    async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        {
            let mut state = self.state.write().expect("JWKS lock is never poisoned");
            if state
                .attempted
                .is_some_and(|t| t.elapsed() < self.min_refresh_interval)
            {
                return;
            }
            state.attempted = Some(Instant::now());
        }
        let fetched = tokio::time::timeout(self.timeout, self.fetch()).await;
        match fetched {
            Ok(Ok(set)) => {
                let keys = self.keys_of(&set);
                tracing::debug!(source = ?self.source, keys = keys.len(), "JWKS refreshed");
                let mut state = self.state.write().expect("JWKS lock is never poisoned");
                state.keys = Arc::new(keys);
                state.fetched = Some(Instant::now());
            }
            Ok(Err(e)) => tracing::warn!(source = ?self.source, error = %e, "JWKS fetch failed"),
            Err(_) => tracing::warn!(source = ?self.source, "JWKS fetch timed out"),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let body = match &self.source {
            Source::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Source::Url(target) => {
                let resp = target
                    .get(&[("accept".into(), "application/json".into())])
                    .await
                    .map_err(|e| e.to_string())?;
                if resp.status != 200 {
                    return Err(format!("status {}", resp.status));
                }
                resp.body.to_vec()
            }
        };
        parse(&body)
    }

    /// Usable verification keys of a set. Symmetric (`oct`) keys and
    /// encryption keys are skipped: a published key set has no business
    /// carrying HMAC secrets.
    fn keys_of(&self, set: &JwkSet) -> Vec<Key> {
        let mut out = Vec::new();
        for jwk in &set.keys {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let algs: Vec<Algorithm> = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::OctetKey(_), _) | (AlgorithmParameters::Other(_), _) => {
                    continue
                }
                (_, Some(ka)) => match key_algorithm(ka) {
                    Some(a) => vec![a],
                    None => continue,
                },
                (AlgorithmParameters::RSA(_), None) => self.rsa_algorithms.clone(),
                (AlgorithmParameters::EllipticCurve(p), None) => match p.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => continue,
                },
                (AlgorithmParameters::OctetKeyPair(p), None) => match p.curve {
                    EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                    _ => continue,
                },
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            for alg in algs {
                if alg.family() == key.family() {
                    out.push(Key {
                        kid: jwk.common.key_id.clone(),
                        alg,
                        key: key.clone(),
                    });
                }
            }
        }
        out
    }
}

pub fn parse(body: &[u8]) -> Result<JwkSet, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))
}

fn key_algorithm(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
