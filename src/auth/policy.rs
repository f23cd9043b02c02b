//! `[[auth_policies]]` raw → typed, in the config validation pass: every
//! problem pushed with its key path, keys and key files loaded now so a bad
//! PEM is a config error rather than a refusal at the first client.

use super::apikey::{parse_hex, sha256, ApiKeys};
use super::forward::ForwardAuth;
use super::http::Target;
use super::jwks::{Jwks, Source};
use super::jwt::{algorithm, Condition, JwtVerifier, Key};
use super::source::TokenSource;
use super::{AuthPolicy, Method};
use crate::config::raw::auth::{RawApiKeys, RawAuthPolicy, RawForward, RawJwks, RawJwt, RawJwtKey};
use crate::config::validate_problems::{duration, Problems};
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;

/// Every policy by name; `None` for one that has problems (reported).
pub(crate) fn policies(
    p: &mut Problems,
    raw: &[RawAuthPolicy],
) -> HashMap<String, Option<Arc<AuthPolicy>>> {
    let mut out = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("auth_policies[{i}]");
        if r.name.is_empty() {
            p.push(format!("{key}.name"), "must not be empty");
            continue;
        }
        if out.contains_key(&r.name) {
            p.push(
                format!("{key}.name"),
                format!("duplicate policy name {:?}", r.name),
            );
            continue;
        }
        let policy = policy(p, &key, r).map(Arc::new);
        out.insert(r.name.clone(), policy);
    }
    out
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

fn policy(p: &mut Problems, key: &str, r: &RawAuthPolicy) -> Option<AuthPolicy> {
    let before = p.0.len();
    let methods = [r.jwt.is_some(), r.api_keys.is_some(), r.forward.is_some()];
    if methods.iter().filter(|m| **m).count() != 1 {
        p.push(
            key,
            "exactly one of `jwt`, `api_keys`, `forward` must be configured",
        );
        return None;
    }
    let mut sources = Vec::new();
    for (j, s) in r.sources.iter().enumerate() {
        match TokenSource::parse(s) {
            Ok(s) => sources.push(s),
            Err(e) => p.push(format!("{key}.sources[{j}]"), e),
        }
    }
    if sources.is_empty() && r.forward.is_none() {
        sources.push(TokenSource::Bearer);
    }
    let mut identity_headers = Vec::new();
    let mut reserved = Vec::new();
    for (claim, header) in &r.identity_headers {
        if !header_name_ok(header) {
            p.push(
                format!("{key}.identity_headers.{claim}"),
                format!("{header:?} is not a valid header name"),
            );
        }
        identity_headers.push((claim.clone(), header.clone()));
        reserved.push(header.to_ascii_lowercase());
    }
    let method = if let Some(jwt) = &r.jwt {
        Method::Jwt(jwt_verifier(p, &format!("{key}.jwt"), jwt)?)
    } else if let Some(keys) = &r.api_keys {
        Method::ApiKeys(api_keys(p, &format!("{key}.api_keys"), keys)?)
    } else if let Some(f) = &r.forward {
        let forward = forward(p, &format!("{key}.forward"), f)?;
        reserved.extend(forward.response_headers.iter().cloned());
        Method::Forward(forward)
    } else {
        return None;
    };
    (p.0.len() == before).then(|| AuthPolicy {
        name: r.name.clone(),
        sources,
        keep_credential: r.keep_credential,
        identity_headers,
        reserved_headers: reserved,
        method,
    })
}

fn jwt_verifier(p: &mut Problems, key: &str, r: &RawJwt) -> Option<JwtVerifier> {
    let keys: Vec<Key> = r
        .keys
        .iter()
        .enumerate()
        .filter_map(|(j, k)| jwt_key(p, &format!("{key}.keys[{j}]"), k))
        .collect();
    let jwks = r
        .jwks
        .as_ref()
        .and_then(|j| jwks(p, &format!("{key}.jwks"), j));
    if r.keys.is_empty() && r.jwks.is_none() {
        p.push(key, "needs `keys` or `jwks`");
    }
    let conditions = conditions(p, key, r);
    let grace = duration(p, &format!("{key}.expiry_grace"), &r.expiry_grace, true);
    Some(JwtVerifier {
        keys,
        jwks,
        issuers: r.issuers.clone(),
        audiences: r.audiences.clone(),
        leeway: duration(p, &format!("{key}.leeway"), &r.leeway, true),
        required: r.required_claims.clone(),
        conditions,
        expiry_grace: r.enforce_expiry.then_some(grace),
    })
}

/// A JWKS key source (`url` or `file`) with its refresh timing and the
/// RSA algorithms its keys may be used with.
fn jwks(p: &mut Problems, jkey: &str, j: &RawJwks) -> Option<Jwks> {
    let source = match (j.url.is_empty(), j.file.is_empty()) {
        (false, true) => {
            let tls = if j.url.starts_with("https:") {
                crate::tls::client_config(p, &format!("{jkey}.ca_file"), &j.ca_file)
            } else {
                None
            };
            match Target::parse(&j.url, tls) {
                // Keys fetched in clear text could be swapped by anyone on
                // the path; only the local host is trusted without TLS.
                Ok(t) if !t.is_secure() && !t.is_loopback() => {
                    p.push(
                        format!("{jkey}.url"),
                        "http:// is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost); use https://",
                    );
                    return None;
                }
                Ok(t) => Source::Url(t),
                Err(e) => {
                    p.push(format!("{jkey}.url"), e);
                    return None;
                }
            }
        }
        (true, false) => Source::File(j.file.clone().into()),
        _ => {
            p.push(jkey, "exactly one of `url` and `file` is required");
            return None;
        }
    };
    let mut rsa = Vec::new();
    for (n, a) in j.algorithms.iter().enumerate() {
        match algorithm(a).filter(|a| a.family() == AlgorithmFamily::Rsa) {
            Some(a) => rsa.push(a),
            None => p.push(
                format!("{jkey}.algorithms[{n}]"),
                format!("{a:?} is not an RSA algorithm (RS256/384/512, PS256/384/512)"),
            ),
        }
    }
    let timeout = duration(p, &format!("{jkey}.timeout"), &j.timeout, false);
    // Everything that decides the cached keys: a reload keeps the cache of
    // a policy whose identity is unchanged.
    let identity = format!(
        "url={:?} file={:?} ca_file={:?} algorithms={rsa:?} timeout={timeout:?}",
        j.url, j.file, j.ca_file
    );
    let timings = [
        duration(
            p,
            &format!("{jkey}.refresh_interval"),
            &j.refresh_interval,
            false,
        ),
        duration(
            p,
            &format!("{jkey}.min_refresh_interval"),
            &j.min_refresh_interval,
            true,
        ),
        timeout,
    ];
    Some(Jwks::new(identity, source, timings, rsa))
}

/// The claim conditions, each with exactly one test.
fn conditions(p: &mut Problems, key: &str, r: &RawJwt) -> Vec<Condition> {
    let mut conditions = Vec::new();
    for (j, c) in r.conditions.iter().enumerate() {
        let ckey = format!("{key}.conditions[{j}]");
        if c.claim.is_empty() {
            p.push(format!("{ckey}.claim"), "must not be empty");
        }
        match (&c.equals, &c.contains, c.one_of.is_empty()) {
            (Some(v), None, true) => conditions.push(Condition::Equals(c.claim.clone(), v.clone())),
            (None, Some(v), true) => {
                conditions.push(Condition::Contains(c.claim.clone(), v.clone()))
            }
            (None, None, false) => {
                conditions.push(Condition::OneOf(c.claim.clone(), c.one_of.clone()))
            }
            _ => p.push(ckey, "exactly one of `equals`, `contains`, `one_of`"),
        }
    }
    conditions
}

fn jwt_key(p: &mut Problems, key: &str, k: &RawJwtKey) -> Option<Key> {
    let Some(alg) = algorithm(&k.algorithm) else {
        p.push(
            format!("{key}.algorithm"),
            format!(
                "{:?} is not one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA",
                k.algorithm
            ),
        );
        return None;
    };
    let given = [
        !k.secret.is_empty(),
        !k.secret_base64.is_empty(),
        !k.pem_file.is_empty(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        p.push(key, "exactly one of `secret`, `secret_base64`, `pem_file`");
        return None;
    }
    let family = alg.family();
    let decoding = if family == AlgorithmFamily::Hmac {
        hmac_key(p, key, k)?
    } else {
        public_key(p, key, k, family)?
    };
    Some(Key {
        kid: (!k.kid.is_empty()).then(|| k.kid.clone()),
        alg,
        key: decoding,
    })
}

/// An HMAC key: a secret of at least 32 bytes, given as is or in base64.
fn hmac_key(p: &mut Problems, key: &str, k: &RawJwtKey) -> Option<DecodingKey> {
    if !k.pem_file.is_empty() {
        p.push(format!("{key}.pem_file"), "HMAC algorithms take a secret");
        return None;
    }
    if !k.secret.is_empty() {
        if k.secret.len() < 32 {
            p.push(
                format!("{key}.secret"),
                "an HMAC secret needs at least 32 bytes",
            );
            return None;
        }
        return Some(DecodingKey::from_secret(k.secret.as_bytes()));
    }
    match DecodingKey::from_base64_secret(&k.secret_base64) {
        Ok(d) => Some(d),
        Err(_) => {
            p.push(format!("{key}.secret_base64"), "not valid base64");
            None
        }
    }
}

/// An asymmetric key: a PEM public key file of the algorithm's family.
fn public_key(
    p: &mut Problems,
    key: &str,
    k: &RawJwtKey,
    family: AlgorithmFamily,
) -> Option<DecodingKey> {
    if k.pem_file.is_empty() {
        p.push(
            format!("{key}.pem_file"),
            "asymmetric algorithms take a PEM public key, not a secret",
        );
        return None;
    }
    let pem = match std::fs::read(&k.pem_file) {
        Ok(b) => b,
        Err(e) => {
            p.push(format!("{key}.pem_file"), format!("{}: {e}", k.pem_file));
            return None;
        }
    };
    let parsed = match family {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
        _ => DecodingKey::from_ed_pem(&pem),
    };
    match parsed {
        Ok(d) => Some(d),
        Err(e) => {
            p.push(
                format!("{key}.pem_file"),
                format!("{}: not a {:?} public key: {e}", k.pem_file, family),
            );
            None
        }
    }
}

fn api_keys(p: &mut Problems, key: &str, r: &RawApiKeys) -> Option<ApiKeys> {
    let mut keys = Vec::new();
    for (j, k) in r.keys.iter().enumerate() {
        let kkey = format!("{key}.keys[{j}]");
        if k.name.is_empty() {
            p.push(format!("{kkey}.name"), "must not be empty");
        }
        match (k.key.is_empty(), k.sha256.is_empty()) {
            (false, true) => keys.push((k.name.clone(), sha256(k.key.as_bytes()))),
            (true, false) => match parse_hex(&k.sha256) {
                Some(h) => keys.push((k.name.clone(), h)),
                None => p.push(format!("{kkey}.sha256"), "expected 64 hex digits"),
            },
            _ => p.push(kkey, "exactly one of `key` and `sha256`"),
        }
    }
    if !r.file.is_empty() {
        match std::fs::read_to_string(&r.file).map_err(|e| e.to_string()) {
            Ok(text) => match ApiKeys::parse_file(&text) {
                Ok(more) => keys.extend(more),
                Err(e) => p.push(format!("{key}.file"), format!("{}: {e}", r.file)),
            },
            Err(e) => p.push(format!("{key}.file"), format!("{}: {e}", r.file)),
        }
    }
    if keys.is_empty() && r.file.is_empty() {
        p.push(key, "needs `keys` or `file`");
    }
    Some(ApiKeys::new(keys))
}

fn forward(p: &mut Problems, key: &str, r: &RawForward) -> Option<ForwardAuth> {
    let tls = if r.url.starts_with("https:") {
        crate::tls::client_config(p, &format!("{key}.ca_file"), &r.ca_file)
    } else {
        None
    };
    let target = match Target::parse(&r.url, tls) {
        Ok(t) => t,
        Err(e) => {
            p.push(format!("{key}.url"), e);
            return None;
        }
    };
    let lower = |names: &[String], field: &str, p: &mut Problems| -> Vec<String> {
        names
            .iter()
            .enumerate()
            .filter_map(|(j, n)| {
                if header_name_ok(n) {
                    Some(n.to_ascii_lowercase())
                } else {
                    p.push(format!("{key}.{field}[{j}]"), "not a valid header name");
                    None
                }
            })
            .collect()
    };
    let request_headers = lower(&r.request_headers, "request_headers", p);
    let response_headers = lower(&r.response_headers, "response_headers", p);
    if r.cache_max_entries == 0 {
        p.push(format!("{key}.cache_max_entries"), "must be greater than 0");
    }
    Some(ForwardAuth::new(
        target,
        duration(p, &format!("{key}.timeout"), &r.timeout, false),
        request_headers,
        response_headers,
        r.fail_open,
        duration(p, &format!("{key}.cache_ttl"), &r.cache_ttl, true),
        r.cache_max_entries as usize,
    ))
}
