//! Edge authentication through the real gateway: JWTs signed in the test
//! with generated keys (HMAC, RSA, PSS, ECDSA, Ed25519), a JWKS served over
//! HTTPS by a test server (rotation, unknown-`kid` flood), API keys, a real
//! forward-auth service, the browser-style sub-protocol token, identity
//! headers to the upstream and expiry enforced mid-session.

use crate::support::*;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidegate::config::raw::auth::{
    RawApiKey, RawApiKeys, RawAuthPolicy, RawClaimCondition, RawForward, RawJwks, RawJwt, RawJwtKey,
};
use tidegate::config::raw::{RawConfig, RawRoute};
use tokio::net::TcpListener;

const SECRET: &str = "an hmac secret of more than thirty-two bytes";

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims of a token that passes every check of [`jwt_policy`].
pub(crate) fn good_claims() -> Value {
    json!({
        "sub": "alice",
        "iss": "https://issuer.test",
        "aud": "ws-api",
        "exp": now() + 3600,
        "scope": "read ws:connect",
    })
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("token signs")
}

pub(crate) fn hs(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    h
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A fresh RSA key: (private PEM for signing, public PEM for the gateway).
fn rsa_key() -> (String, String) {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generates");
    let private: Pkcs8V1Der = kp.as_der().expect("PKCS#8");
    let public: PublicKeyX509Der = kp.public_key().as_der().expect("SPKI");
    (
        pem("PRIVATE KEY", private.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    )
}

/// A fresh EC or Ed25519 key from rcgen: (private PEM, public PEM).
fn rcgen_key(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(alg).expect("key generates");
    (kp.serialize_pem(), kp.public_key_pem())
}

/// A JWT policy checking iss, aud and `scope` contains `ws:connect`,
/// mapping `sub` → `X-Auth-Subject`.
pub(crate) fn jwt_policy(name: &str, keys: Vec<RawJwtKey>, jwks: Option<RawJwks>) -> RawAuthPolicy {
    RawAuthPolicy {
        name: name.into(),
        sources: vec![
            "bearer".into(),
            "query:access_token".into(),
            "cookie:session".into(),
            "protocol:bearer.".into(),
        ],
        identity_headers: [("sub".to_string(), "X-Auth-Subject".to_string())].into(),
        jwt: Some(RawJwt {
            keys,
            jwks,
            issuers: vec!["https://issuer.test".into()],
            audiences: vec!["ws-api".into()],
            leeway: "5s".into(),
            conditions: vec![RawClaimCondition {
                claim: "scope".into(),
                contains: Some("ws:connect".into()),
                ..RawClaimCondition::default()
            }],
            ..RawJwt::default()
        }),
        ..RawAuthPolicy::default()
    }
}

pub(crate) fn hs_key() -> RawJwtKey {
    RawJwtKey {
        algorithm: "HS256".into(),
        secret: SECRET.into(),
        ..RawJwtKey::default()
    }
}

/// Route `r` on `/` behind `policy`, to `upstream`.
fn config_with(upstream: SocketAddr, policy: RawAuthPolicy) -> RawConfig {
    let mut raw = raw_config(&[ws_url(upstream)]);
    raw.routes[0].auth = policy.name.clone();
    raw.auth_policies = vec![policy];
    raw
}

async fn status_of(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let (resp, _ws) = ws_try(gw.addr, "localhost", path, headers).await;
    resp
}

/// Wait until `tidegate_auth_results_total{route="r", method, result}`
/// is `want` (accepted clients; rejections go through [`rejected_once`]).
async fn auth_metric(gw: &Gateway, method: &str, result: &str, want: f64) {
    wait_metric(
        gw.admin,
        "tidegate_auth_results_total",
        &[("route", "r"), ("method", method), ("result", result)],
        want,
    )
    .await;
}

const AUTH_RESULTS: &str = "tidegate_auth_results_total";
const REJECTIONS: &str = "tidegate_handshake_rejections_total";

/// How a refused handshake must be counted.
struct Refused<'a> {
    route: &'a str,
    /// `method` of `tidegate_auth_results_total`.
    method: &'a str,
    /// `result` of `tidegate_auth_results_total`.
    result: &'a str,
    /// `reason` of `tidegate_handshake_rejections_total`.
    reason: &'a str,
}

/// Handshake on `path` with `headers`, expecting `status`, and expect it
/// counted exactly once under the exact `result` and `reason`: the
/// route's auth results and rejections each go up by one, and that one is
/// the expected label (a misclassified token fails here, even when
/// another case already created the expected series). Returns the
/// response and the scrape after it.
async fn rejected_once(
    gw: &Gateway,
    what: &str,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    want: Refused<'_>,
) -> (HttpResponse, Metrics) {
    let route = [("route", want.route)];
    let result = [
        ("route", want.route),
        ("method", want.method),
        ("result", want.result),
    ];
    let reason = [("route", want.route), ("reason", want.reason)];
    let before = scrape(gw.admin).await;
    let resp = status_of(gw, path, headers).await;
    assert_eq!(resp.status, status, "{what}: {}", resp.body_text());
    // Counted at the handshake; waited for in case that trails the answer.
    let total = before.sum(AUTH_RESULTS, &route) + 1.0;
    wait_metric(gw.admin, AUTH_RESULTS, &route, total).await;
    let total = before.sum(REJECTIONS, &route) + 1.0;
    wait_metric(gw.admin, REJECTIONS, &route, total).await;
    let after = scrape(gw.admin).await;
    assert_eq!(
        after.sum(AUTH_RESULTS, &result) - before.sum(AUTH_RESULTS, &result),
        1.0,
        "{what}: counted once as {} / {}\n{after}",
        want.method,
        want.result
    );
    assert_eq!(
        after.sum(REJECTIONS, &reason) - before.sum(REJECTIONS, &reason),
        1.0,
        "{what}: rejection counted once as {}\n{after}",
        want.reason
    );
    (resp, after)
}

/// A JWT refused on route `r` as `result`, with the 401 `auth_invalid`.
fn invalid_jwt(result: &str) -> Refused<'_> {
    Refused {
        route: "r",
        method: "jwt",
        result,
        reason: "auth_invalid",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_from_every_source_reaches_upstream_as_identity() {
    let (up, mut seen) = raw_upstream(Behaviour::EchoFrames).await;
    let gw = start_gateway(config_with(up, jwt_policy("users", vec![hs_key()], None))).await;
    let token = hs(&good_claims());

    // Bearer, with a spoofed identity header: the gateway's value wins.
    let bearer = format!("Bearer {token}");
    let (resp, ws) = ws_try(
        gw.addr,
        "localhost",
        "/",
        &[
            ("Authorization", &bearer),
            ("X-Auth-Subject", "mallory"),
            ("X-Other", "kept"),
        ],
    )
    .await;
    assert_eq!(resp.status, 101, "{}", resp.body_text());
    let mut ws = ws.expect("101");
    echo_text(&mut ws, "hello").await;
    let req = within("upstream request", seen.recv()).await.expect("seen");
    let subjects: Vec<_> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-auth-subject"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(subjects, vec!["alice"], "spoofed header removed first");
    assert_eq!(req.header("authorization"), None, "credential stripped");
    assert_eq!(req.header("x-other"), Some("kept"));

    // Query parameter: removed from the URL, other parameters kept.
    let path = format!("/room?access_token={token}&x=1");
    let resp = status_of(&gw, &path, &[]).await;
    assert_eq!(resp.status, 101);
    let req = within("upstream request", seen.recv()).await.expect("seen");
    assert_eq!(req.target, "/room?x=1");
    assert_eq!(req.header("x-auth-subject"), Some("alice"));

    // Cookie: the session cookie removed, others kept.
    let cookie = format!("theme=dark; session={token}");
    let resp = status_of(&gw, "/", &[("Cookie", &cookie)]).await;
    assert_eq!(resp.status, 101);
    let req = within("upstream request", seen.recv()).await.expect("seen");
    assert_eq!(req.header("cookie"), Some("theme=dark"));

    auth_metric(&gw, "jwt", "ok", 3.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_style_subprotocol_token_is_taken_and_never_echoed() {
    let (up, mut seen) = raw_upstream(Behaviour::EchoFrames).await;
    let gw = start_gateway(config_with(up, jwt_policy("users", vec![hs_key()], None))).await;
    let offer = format!("bearer.{}, chat", hs(&good_claims()));
    let (resp, ws) = ws_try(
        gw.addr,
        "localhost",
        "/",
        &[
            ("Origin", "https://app.example.com"),
            ("Sec-WebSocket-Protocol", &offer),
        ],
    )
    .await;
    assert_eq!(resp.status, 101, "{}", resp.body_text());
    assert_eq!(resp.header("sec-websocket-protocol"), Some("chat"));
    let req = within("upstream request", seen.recv()).await.expect("seen");
    assert_eq!(req.header("sec-websocket-protocol"), Some("chat"));
    echo_text(&mut ws.expect("101"), "from the browser").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_negative_cases() {
    let (up, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    let gw = start_gateway(config_with(up, jwt_policy("users", vec![hs_key()], None))).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let claims = |patch: Value| {
        let mut c = good_claims();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let good = hs(&good_claims());
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let evil = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims(json!({"sub": "root"})).to_string());
        format!("{}.{}.{}", parts[0], evil, parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs(&claims(json!({"exp": now() - 120}))),
            "expired",
        ),
        (
            "not yet valid",
            hs(&claims(json!({"nbf": now() + 600}))),
            "not_yet_valid",
        ),
        (
            "wrong iss",
            hs(&claims(json!({"iss": "https://evil.test"}))),
            "invalid_claims",
        ),
        (
            "wrong aud",
            hs(&claims(json!({"aud": "other"}))),
            "invalid_claims",
        ),
        ("tampered payload", tampered, "bad_signature"),
        (
            "wrong key",
            sign(
                Header::new(Algorithm::HS256),
                &good_claims(),
                &EncodingKey::from_secret(b"another secret that is long enough!!"),
            ),
            "bad_signature",
        ),
        ("alg none", alg_none, "malformed"),
        ("not a JWT", "abc.def".into(), "malformed"),
        (
            "HS384 against an HS256 key",
            sign(Header::new(Algorithm::HS384), &good_claims(), &key),
            "unknown_key",
        ),
    ];
    for (what, token, result) in &cases {
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str())];
        let (resp, after) = rejected_once(&gw, what, "/", &headers, 401, invalid_jwt(result)).await;
        assert_eq!(
            resp.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{what}"
        );
        assert!(
            !after.text().contains(token.as_str()),
            "{what}: no token in metrics"
        );
    }

    // No credential at all.
    let missing = Refused {
        reason: "auth_missing",
        ..invalid_jwt("missing")
    };
    let (resp, _) = rejected_once(&gw, "no credential", "/", &[], 401, missing).await;
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer error="invalid_request""#)
    );

    // A valid token without the scope: 403.
    let bearer = format!("Bearer {}", hs(&claims(json!({"scope": "read"}))));
    let forbidden = Refused {
        reason: "auth_forbidden",
        ..invalid_jwt("forbidden")
    };
    let headers = [("Authorization", bearer.as_str())];
    let (resp, _) = rejected_once(&gw, "no scope", "/", &headers, 403, forbidden).await;
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "auth_invalid")],
        cases.len() as f64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_keys_fix_the_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write key");
        p.display().to_string()
    };
    let (rsa_private, rsa_public) = rsa_key();
    let (ec_private, ec_public) = rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (ec384_private, ec384_public) = rcgen_key(&rcgen::PKCS_ECDSA_P384_SHA384);
    let (ed_private, ed_public) = rcgen_key(&rcgen::PKCS_ED25519);
    let key = |kid: &str, alg: &str, file: String| RawJwtKey {
        kid: kid.into(),
        algorithm: alg.into(),
        pem_file: file,
        ..RawJwtKey::default()
    };
    let rsa_file = write("rsa.pem", &rsa_public);
    let keys = vec![
        key("rs", "RS256", rsa_file.clone()),
        key("rs512", "RS512", rsa_file.clone()),
        key("ps", "PS256", rsa_file),
        key("ec", "ES256", write("ec.pem", &ec_public)),
        key("ec384", "ES384", write("ec384.pem", &ec384_public)),
        key("ed", "EdDSA", write("ed.pem", &ed_public)),
    ];
    let (up, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    let gw = start_gateway(config_with(up, jwt_policy("users", keys, None))).await;

    let rsa = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).expect("RSA PEM");
    let signed = [
        ("rs", Algorithm::RS256, rsa.clone()),
        ("rs512", Algorithm::RS512, rsa.clone()),
        ("ps", Algorithm::PS256, rsa.clone()),
        (
            "ec",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(ec_private.as_bytes()).expect("EC PEM"),
        ),
        (
            "ec384",
            Algorithm::ES384,
            EncodingKey::from_ec_pem(ec384_private.as_bytes()).expect("EC PEM"),
        ),
        (
            "ed",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ed_private.as_bytes()).expect("Ed PEM"),
        ),
    ];
    for (kid, alg, key) in &signed {
        let bearer = format!("Bearer {}", sign(with_kid(*alg, kid), &good_claims(), key));
        let resp = status_of(&gw, "/", &[("Authorization", &bearer)]).await;
        assert_eq!(resp.status, 101, "{alg:?} token accepted");
    }

    // RS/HS confusion: an HS256 token whose secret is the RSA public key
    // the gateway holds. The key says RS256, so the token finds no key.
    let confused = sign(
        with_kid(Algorithm::HS256, "rs"),
        &good_claims(),
        &EncodingKey::from_secret(rsa_public.as_bytes()),
    );
    let bearer = format!("Bearer {confused}");
    rejected_once(
        &gw,
        "HS256 signed with the RSA public key",
        "/",
        &[("Authorization", &bearer)],
        401,
        invalid_jwt("unknown_key"),
    )
    .await;
    // An RS256 token presented under the ES256 key's kid.
    let wrong_kid = sign(with_kid(Algorithm::RS256, "ec"), &good_claims(), &rsa);
    let bearer = format!("Bearer {wrong_kid}");
    rejected_once(
        &gw,
        "RS256 token under the ES256 kid",
        "/",
        &[("Authorization", &bearer)],
        401,
        invalid_jwt("unknown_key"),
    )
    .await;
    auth_metric(&gw, "jwt", "ok", signed.len() as f64).await;
    auth_metric(&gw, "jwt", "unknown_key", 2.0).await;
}

// ---------------------------------------------------------------------------
// JWKS over HTTPS

/// A JWKS server over TLS: serves the current body, counts fetches.
struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(ca: &TestCa) -> JwksServer {
    let leaf = leaf(ca, &["localhost"]);
    let cert = rustls_pki_types::CertificateDer::from(leaf.der.clone());
    let key =
        <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            leaf.key_pem.as_bytes(),
        )
        .expect("the test CA's key PEM parses");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind JWKS");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(Mutex::new(String::from(r#"{"keys":[]}"#)));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (Arc::clone(&body), Arc::clone(&fetches));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let (b, f) = (Arc::clone(&b), Arc::clone(&f));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    f.fetch_add(1, Ordering::SeqCst);
                    let text = b.lock().expect("body lock").clone();
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    JwksServer {
        addr,
        body,
        fetches,
    }
}

fn jwk_of(private_pem: &str, kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA PEM");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("JWK");
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).expect("JWK JSON")
}

fn jwks_config(server: &JwksServer, ca_file: &Path, min_refresh: &str) -> RawJwks {
    RawJwks {
        url: format!("https://localhost:{}/jwks.json", server.addr.port()),
        ca_file: ca_file.display().to_string(),
        min_refresh_interval: min_refresh.into(),
        ..RawJwks::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_over_https_rotation_and_unknown_kid_flood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).expect("write CA");
    let (k1_private, _) = rsa_key();
    let (k2_private, _) = rsa_key();
    let k1 = EncodingKey::from_rsa_pem(k1_private.as_bytes()).expect("k1");
    let k2 = EncodingKey::from_rsa_pem(k2_private.as_bytes()).expect("k2");

    // Rotation: k1 published, then k2 added; a k2 token is accepted once
    // the gateway refreshes (on the unknown kid, spacing 1s).
    let server = jwks_server(&ca).await;
    *server.body.lock().expect("lock") = json!({"keys": [jwk_of(&k1_private, "k1")]}).to_string();
    let (up, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    let policy = jwt_policy("users", vec![], Some(jwks_config(&server, &ca_file, "1s")));
    let gw = start_gateway(config_with(up, policy)).await;
    let t1 = format!(
        "Bearer {}",
        sign(with_kid(Algorithm::RS256, "k1"), &good_claims(), &k1)
    );
    assert_eq!(
        status_of(&gw, "/", &[("Authorization", &t1)]).await.status,
        101
    );
    *server.body.lock().expect("lock") = json!({"keys": [
        jwk_of(&k1_private, "k1"), jwk_of(&k2_private, "k2")
    ]})
    .to_string();
    let t2 = format!(
        "Bearer {}",
        sign(with_kid(Algorithm::RS256, "k2"), &good_claims(), &k2)
    );
    within("k2 accepted after a refresh", async {
        loop {
            if status_of(&gw, "/", &[("Authorization", &t2)]).await.status == 101 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(server.fetches.load(Ordering::SeqCst) >= 2);

    // Flood: a long spacing; many made-up kids cost no extra fetch.
    let server = jwks_server(&ca).await;
    *server.body.lock().expect("lock") = json!({"keys": [jwk_of(&k1_private, "k1")]}).to_string();
    let (up, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    let policy = jwt_policy("users", vec![], Some(jwks_config(&server, &ca_file, "1h")));
    let gw = start_gateway(config_with(up, policy)).await;
    assert_eq!(
        status_of(&gw, "/", &[("Authorization", &t1)]).await.status,
        101
    );
    for i in 0..25 {
        let bogus = format!(
            "Bearer {}",
            sign(
                with_kid(Algorithm::RS256, &format!("bogus-{i}")),
                &good_claims(),
                &k2
            )
        );
        let what = format!("made-up kid {i}");
        let headers = [("Authorization", bogus.as_str())];
        rejected_once(&gw, &what, "/", &headers, 401, invalid_jwt("unknown_key")).await;
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "one fetch for the first token, none for the flood"
    );
    auth_metric(&gw, "jwt", "unknown_key", 25.0).await;
}

// ---------------------------------------------------------------------------
// API keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_by_hash_with_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("keys.txt");
    let hash: String = tidegate::auth::apikey::sha256(b"file-key-0123456789")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&file, format!("# service keys\nbilling:{hash}\n")).expect("write keys");
    let policy = RawAuthPolicy {
        name: "services".into(),
        sources: vec!["header:X-Api-Key".into()],
        identity_headers: [("sub".to_string(), "X-Auth-Subject".to_string())].into(),
        api_keys: Some(RawApiKeys {
            keys: vec![RawApiKey {
                name: "search".into(),
                key: "inline-key-0123456789".into(),
                ..RawApiKey::default()
            }],
            file: file.display().to_string(),
        }),
        ..RawAuthPolicy::default()
    };
    let (up, mut seen) = raw_upstream(Behaviour::EchoFrames).await;
    let gw = start_gateway(config_with(up, policy)).await;
    for (key, name) in [
        ("inline-key-0123456789", "search"),
        ("file-key-0123456789", "billing"),
    ] {
        let resp = status_of(&gw, "/", &[("X-Api-Key", key)]).await;
        assert_eq!(resp.status, 101);
        let req = within("upstream request", seen.recv()).await.expect("seen");
        assert_eq!(req.header("x-auth-subject"), Some(name));
        assert_eq!(req.header("x-api-key"), None, "key stripped");
    }
    let unknown = Refused {
        method: "api_key",
        ..invalid_jwt("unknown_api_key")
    };
    rejected_once(
        &gw,
        "a guessed key",
        "/",
        &[("X-Api-Key", "guess")],
        401,
        unknown,
    )
    .await;
    auth_metric(&gw, "api_key", "ok", 2.0).await;
    auth_metric(&gw, "api_key", "unknown_api_key", 1.0).await;
}

// ---------------------------------------------------------------------------
// Forward auth

/// An auth service: `Bearer good` → 200 with `X-User: alice`, else 401.
async fn auth_service() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind auth");
    let addr = listener.local_addr().expect("addr");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    c.fetch_add(1, Ordering::SeqCst);
                    let ok = req
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v == "Bearer good");
                    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                    if ok {
                        resp.headers_mut()
                            .insert("x-user", "alice".parse().expect("value"));
                        resp.headers_mut()
                            .insert("x-secret-internal", "no".parse().expect("value"));
                    } else {
                        *resp.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, calls)
}

fn forward_policy(name: &str, url: String, fail_open: bool) -> RawAuthPolicy {
    RawAuthPolicy {
        name: name.into(),
        sources: vec!["bearer".into()],
        forward: Some(RawForward {
            url,
            timeout: "2s".into(),
            response_headers: vec!["X-User".into()],
            fail_open,
            cache_ttl: "60s".into(),
            ..RawForward::default()
        }),
        ..RawAuthPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allows_denies_caches_and_fails_closed() {
    let (service, calls) = auth_service().await;
    let (up, mut seen) = raw_upstream(Behaviour::EchoFrames).await;
    let mut raw = config_with(
        up,
        forward_policy("fwd", format!("http://{service}/check"), false),
    );
    let down = refused_port().await;
    raw.auth_policies.push(forward_policy(
        "down",
        format!("http://{down}/check"),
        false,
    ));
    raw.auth_policies
        .push(forward_policy("open", format!("http://{down}/check"), true));
    for (name, path) in [("down", "/down"), ("open", "/open")] {
        raw.routes.push(RawRoute {
            name: name.into(),
            path: path.into(),
            upstream: "up".into(),
            auth: name.into(),
            ..RawRoute::default()
        });
    }
    let gw = start_gateway(raw).await;

    for _ in 0..2 {
        let resp = status_of(
            &gw,
            "/",
            &[("Authorization", "Bearer good"), ("X-User", "mallory")],
        )
        .await;
        assert_eq!(resp.status, 101);
        let req = within("upstream request", seen.recv()).await.expect("seen");
        assert_eq!(
            req.header("x-user"),
            Some("alice"),
            "service's value, not the client's"
        );
        assert_eq!(
            req.header("x-secret-internal"),
            None,
            "only selected headers"
        );
        assert_eq!(req.header("authorization"), None);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "second answer from the cache"
    );

    let denied = Refused {
        route: "r",
        method: "forward",
        result: "denied",
        reason: "auth_denied",
    };
    let bad = [("Authorization", "Bearer bad")];
    rejected_once(&gw, "the service's 401 is relayed", "/", &bad, 401, denied).await;

    let unavailable = Refused {
        route: "down",
        method: "forward",
        result: "unavailable",
        reason: "auth_unavailable",
    };
    let good = [("Authorization", "Bearer good")];
    let what = "auth service down: fail closed";
    rejected_once(&gw, what, "/down", &good, 503, unavailable).await;
    let resp = status_of(&gw, "/open", &good).await;
    assert_eq!(resp.status, 101, "fail_open lets the client in");
    wait_metric(
        gw.admin,
        "tidegate_auth_results_total",
        &[("route", "open"), ("result", "fail_open")],
        1.0,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Expiry mid-session, configuration

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_closes_the_session_with_1008() {
    let (up, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    let mut policy = jwt_policy("users", vec![hs_key()], None);
    if let Some(jwt) = policy.jwt.as_mut() {
        jwt.leeway = "0s".into();
        jwt.expiry_grace = "0s".into();
    }
    let gw = start_gateway(config_with(up, policy)).await;
    let mut claims = good_claims();
    claims["exp"] = json!(now() + 2);
    let bearer = format!("Bearer {}", hs(&claims));
    let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[("Authorization", &bearer)]).await;
    assert_eq!(resp.status, 101);
    let mut ws = ws.expect("101");
    echo_text(&mut ws, "before expiry").await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    wait_metric(
        gw.admin,
        "tidegate_closes_total",
        &[("route", "r"), ("side", "gateway"), ("code", "1008")],
        1.0,
    )
    .await;
}

#[test]
fn bad_auth_config_reports_every_problem_and_redacts_secrets() {
    let mut raw = raw_config(&["ws://127.0.0.1:1".to_string()]);
    raw.routes[0].auth = "nope".into();
    raw.auth_policies = vec![RawAuthPolicy {
        name: "bad".into(),
        sources: vec!["form:x".into()],
        jwt: Some(RawJwt {
            keys: vec![
                RawJwtKey {
                    algorithm: "none".into(),
                    secret: "x".into(),
                    ..RawJwtKey::default()
                },
                RawJwtKey {
                    algorithm: "HS256".into(),
                    secret: "short".into(),
                    ..RawJwtKey::default()
                },
            ],
            ..RawJwt::default()
        }),
        ..RawAuthPolicy::default()
    }];
    let err = tidegate::config::Config::from_raw(raw.clone()).expect_err("invalid");
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    for want in [
        "routes[0].auth",
        "auth_policies[0].sources[0]",
        "auth_policies[0].jwt.keys[0].algorithm",
        "auth_policies[0].jwt.keys[1].secret",
    ] {
        assert!(keys.contains(&want), "{want} reported: {keys:?}");
    }
    raw.auth_policies[0].jwt.as_mut().expect("jwt").keys[1].secret = SECRET.into();
    let printed = toml::to_string(&raw.redacted()).expect("serialises");
    assert!(!printed.contains(SECRET), "secret redacted:\n{printed}");
    assert!(printed.contains("<redacted>"));
}
