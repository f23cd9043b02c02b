//! Target `jwt`: untrusted JWKS bytes → `auth::jwks::parse` →
//! `auth::jwks::usable_keys`, and an untrusted bearer token →
//! `JwtVerifier::verify` with those keys and a fixed HS256 key.
//!
//! Checks beyond "no panic":
//! - every key taken from a set is a verification key whose algorithm
//!   family is its key's family, carrying the kid of a JWK of the set;
//!   encryption keys and symmetric (`oct`) keys never become keys;
//! - a token that verifies names, in its header, the algorithm of a
//!   configured key with a matching kid (never `none`, never an HMAC
//!   algorithm against a public key), and its claims satisfy every
//!   condition: `exp` in the future, the issuer, `sub` present, the scope;
//! - a refusal is a 401, 403 or 503 with a label.

use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidegate::auth::jwks::{parse, usable_keys};
use tidegate::auth::jwt::{Condition, JwtVerifier, Key};

/// The seeds' HS256 tokens are signed with this (fuzz/make-seeds.py).
pub const SECRET: &[u8] = b"tidegate-fuzz-secret";
pub const ISSUER: &str = "https://issuer.example";
const RSA_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::PS256];

/// Input: bytes 0–1: length of the JWKS document (u16 BE, cut to what is
/// there); then the document; the rest: the token (UTF-8, as a header
/// value is).
pub fn run(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = (u16::from_be_bytes(*len) as usize).min(rest.len());
    let (jwks, token) = rest.split_at(split);
    let mut keys = jwks_keys(jwks);
    keys.push(Key {
        kid: Some("hs".into()),
        alg: Algorithm::HS256,
        key: DecodingKey::from_secret(SECRET),
    });
    let Ok(token) = std::str::from_utf8(token) else {
        return;
    };
    let verifier = JwtVerifier {
        keys: keys.clone(),
        jwks: None,
        issuers: vec![ISSUER.into()],
        audiences: vec![],
        leeway: Duration::ZERO,
        required: vec!["sub".into()],
        conditions: vec![Condition::Contains("scope".into(), "ws".into())],
        expiry_grace: None,
    };
    match block_on(verifier.verify(token)) {
        Ok(claims) => check_verified(token, &keys, &claims),
        Err(e) => {
            let status = e.rejection().status();
            assert!(matches!(status, 401 | 403 | 503), "{e:?} → {status}");
            assert!(!e.label().is_empty());
        }
    }
}

/// The keys a JWKS document yields, checked against the document.
fn jwks_keys(body: &[u8]) -> Vec<Key> {
    let Ok(set) = parse(body) else {
        return Vec::new();
    };
    let keys = usable_keys(&set, RSA_ALGORITHMS);
    for key in &keys {
        assert_eq!(key.alg.family(), key.key.family(), "{:?}", key.alg);
        assert!(!matches!(
            key.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ));
        let from = set
            .keys
            .iter()
            .filter(|j| j.common.key_id == key.kid)
            .collect::<Vec<_>>();
        assert!(!from.is_empty(), "kid {:?} not in the set", key.kid);
        assert!(
            from.iter().any(|j| {
                j.common.public_key_use != Some(PublicKeyUse::Encryption)
                    && !matches!(j.algorithm, AlgorithmParameters::OctetKey(_))
            }),
            "kid {:?} came from an encryption or oct key",
            key.kid
        );
    }
    keys
}

fn check_verified(token: &str, keys: &[Key], claims: &serde_json::Map<String, Value>) {
    let header = jsonwebtoken::decode_header(token).expect("a verified token has a header");
    assert!(
        keys.iter().any(|k| k.alg == header.alg
            && (k.kid.is_none() || k.kid == header.kid)
            && k.alg.family() == k.key.family()),
        "verified with no key for {:?} / {:?}",
        header.alg,
        header.kid
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let exp = claims.get("exp").and_then(Value::as_f64);
    assert!(exp.is_some_and(|e| e >= now as f64), "exp {exp:?}");
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
    assert!(claims.contains_key("sub"));
    let scope_ok = match claims.get("scope") {
        Some(Value::String(s)) => s.split_whitespace().any(|w| w == "ws"),
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some("ws")),
        _ => false,
    };
    assert!(scope_ok, "scope {:?}", claims.get("scope"));
}

/// `verify` awaits only when a JWKS source must be fetched, which this
/// verifier has not: one poll finishes it.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("verify waited without a key source"),
    }
}
