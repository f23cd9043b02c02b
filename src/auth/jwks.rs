//! A JSON Web Key Set, from an HTTPS URL (or `http://` on loopback) or a
//! file, cached in memory.
//!
//! Refreshed when older than `refresh_interval` and when a token names a
//! `kid` the set does not have (key rotation). Fetches are serialised and
//! spaced at least `min_refresh_interval` apart, so a flood of made-up
//! `kid`s costs the JWKS server one request per interval, not one per
//! client. A failed fetch keeps the keys already known.
//!
//! A handshake whose token has a usable key never waits for a fetch: a
//! stale set is refreshed in the background. Only a token with no usable
//! key waits (its answer depends on the fetch); if the key source is down
//! it gets [`AuthError::Unavailable`] (503, retry later) rather than a 401
//! that would tell a client its valid token is bad.
//!
//! The cache lives in a shared [`Cache`] that a reload hands from the old
//! policy to the new one when the key source is unchanged ([`Jwks::adopt`]),
//! so a SIGHUP neither drops the keys nor resets the fetch spacing.

use super::http::Target;
use super::jwt::Key;
use super::AuthError;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

#[derive(Debug)]
pub enum Source {
    Url(Target),
    File(PathBuf),
}

/// The cached set and the fetch history.
#[derive(Default)]
struct State {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
    /// Last attempt, successful or not: the spacing applies to both.
    attempted: Option<Instant>,
    /// The last attempt failed: the source is down, so a missing key may
    /// only be missing from our copy.
    failing: bool,
}

/// What a reload may keep: the source, how its keys are read, and what
/// has been fetched. Everything that decides the cached keys is in
/// `identity`; two policies with the same identity can share one cache.
pub struct Cache {
    /// URL or file, CA file, RSA algorithms, timeout: equal identities
    /// yield equal key sets.
    identity: String,
    source: Source,
    timeout: Duration,
    /// Algorithms for RSA keys without `alg`.
    rsa_algorithms: Vec<Algorithm>,
    state: RwLock<State>,
    /// One fetch at a time; others wait for its result. Owned guards let a
    /// background refresh hold it inside a spawned task.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

pub struct Jwks {
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    /// Swapped only by [`Jwks::adopt`], while a reload builds the new
    /// configuration and before any client sees it.
    cache: ArcSwap<Cache>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.cache.load().source)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// `identity` names the key source (see [`Cache`]).
    pub fn new(
        identity: String,
        source: Source,
        timings: [Duration; 3],
        rsa_algorithms: Vec<Algorithm>,
    ) -> Jwks {
        let [refresh_interval, min_refresh_interval, timeout] = timings;
        Jwks {
            refresh_interval,
            min_refresh_interval,
            cache: ArcSwap::from_pointee(Cache {
                identity,
                source,
                timeout,
                rsa_algorithms,
                state: RwLock::new(State::default()),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// Take over `old`'s cache (keys, fetch times) when both read the same
    /// key source; true if it did.
    pub fn adopt(&self, old: &Jwks) -> bool {
        let theirs = old.cache.load_full();
        if theirs.identity != self.cache.load().identity {
            return false;
        }
        self.cache.store(theirs);
        true
    }

    /// Keys that may verify a token with this `kid` and `alg`. A usable
    /// key is returned at once (a stale set refreshes in the background);
    /// otherwise the set is refreshed first, within the spacing.
    pub async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Key>, AuthError> {
        let cache = self.cache.load_full();
        let matching = cache.matching(kid, alg);
        if !matching.is_empty() {
            if cache.is_stale(self.refresh_interval) {
                cache.refresh_in_background(self.min_refresh_interval);
            }
            return Ok(matching);
        }
        // No usable key: never fetched, or perhaps the keys rotated.
        cache.refresh(self.min_refresh_interval).await;
        let matching = cache.matching(kid, alg);
        if matching.is_empty() && cache.is_failing() {
            return Err(AuthError::Unavailable);
        }
        Ok(matching)
    }
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().expect("JWKS lock is never poisoned")
    }

    fn is_stale(&self, refresh_interval: Duration) -> bool {
        self.read()
            .fetched
            .is_none_or(|t| t.elapsed() >= refresh_interval)
    }

    /// The source is down, or nothing was ever fetched from it.
    fn is_failing(&self) -> bool {
        let state = self.read();
        state.failing || state.fetched.is_none()
    }

    fn matching(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        let keys = Arc::clone(&self.read().keys);
        keys.iter()
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .cloned()
            .collect()
    }

    /// Start a refresh unless one is running or the spacing forbids it;
    /// the caller does not wait.
    fn refresh_in_background(self: &Arc<Self>, min_interval: Duration) {
        if self.too_soon(min_interval) {
            return;
        }
        let Ok(guard) = Arc::clone(&self.fetching).try_lock_owned() else {
            return; // a fetch is already under way
        };
        let cache = Arc::clone(self);
        tokio::spawn(async move { cache.refresh_locked(guard, min_interval).await });
    }

    /// Fetch unless another fetch happened within the minimum spacing.
    async fn refresh(&self, min_interval: Duration) {
        let guard = Arc::clone(&self.fetching).lock_owned().await;
        self.refresh_locked(guard, min_interval).await;
    }

    fn too_soon(&self, min_interval: Duration) -> bool {
        self.read()
            .attempted
            .is_some_and(|t| t.elapsed() < min_interval)
    }

    async fn refresh_locked(&self, _one: OwnedMutexGuard<()>, min_interval: Duration) {
        {
            let mut state = self.state.write().expect("JWKS lock is never poisoned");
            if state.attempted.is_some_and(|t| t.elapsed() < min_interval) {
                return;
            }
            state.attempted = Some(Instant::now());
        }
        let fetched = tokio::time::timeout(self.timeout, self.fetch()).await;
        let keys = match fetched {
            Ok(Ok(set)) => Some(usable_keys(&set, &self.rsa_algorithms)),
            Ok(Err(e)) => {
                tracing::warn!(source = ?self.source, error = %e, "JWKS fetch failed");
                None
            }
            Err(_) => {
                tracing::warn!(source = ?self.source, "JWKS fetch timed out");
                None
            }
        };
        let mut state = self.state.write().expect("JWKS lock is never poisoned");
        state.failing = keys.is_none();
        if let Some(keys) = keys {
            tracing::debug!(source = ?self.source, keys = keys.len(), "JWKS refreshed");
            state.keys = Arc::new(keys);
            state.fetched = Some(Instant::now());
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
}

/// Usable verification keys of a set. Symmetric (`oct`) keys and
/// encryption keys are skipped: a published key set has no business
/// carrying HMAC secrets. `rsa_algorithms`: for RSA keys without `alg`.
pub fn usable_keys(set: &JwkSet, rsa_algorithms: &[Algorithm]) -> Vec<Key> {
    let mut out = Vec::new();
    for jwk in &set.keys {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let algs: Vec<Algorithm> = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::OctetKey(_), _) | (AlgorithmParameters::Other(_), _) => continue,
            (_, Some(ka)) => match key_algorithm(ka) {
                Some(a) => vec![a],
                None => continue,
            },
            (AlgorithmParameters::RSA(_), None) => rsa_algorithms.to_vec(),
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
