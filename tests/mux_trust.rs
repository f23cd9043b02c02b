//! Mux trust through the real gateway (issue #14): a hand-written mux
//! application that sends what a hostile or buggy one would — header
//! lines smuggled into ACCEPT/REJECT — and token expiry enforced on mux
//! sessions exactly like passthrough (Close 1008 at `exp`).

use crate::support::mux_app::*;
use crate::support::*;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};
use tidegate::config::raw::auth::{RawAuthPolicy, RawJwt, RawJwtKey};
use tidegate_mux::codec::{self, FrameType};
use tidegate_mux::{AcceptBody, RejectBody};

const SECRET: &str = "an hmac secret of more than thirty-two bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The client's handshake answer, while `answer` is what the app sends to
/// the OPEN it receives.
async fn answer_open(conn: &mut FakeConn, gw: &Gateway, answer: codec::Frame) -> HttpResponse {
    let addr = gw.addr;
    let client = tokio::spawn(async move { ws_try(addr, "localhost", "/", &[]).await.0 });
    let open = conn.expect(FrameType::Open).await;
    let mut answer = answer;
    answer.session = open.session;
    conn.send(&[answer]);
    within("client handshake", client)
        .await
        .expect("client task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_headers_cannot_smuggle_lines_into_the_client_response() {
    let mut app = FakeApp::start().await;
    let gw = start_gateway(mux_config(&[ws_url(app.addr)], 1)).await;
    let mut conn = app.conn().await;
    wait_ready(gw.admin).await;

    let accepts = [
        ("x-note", "a\r\nSet-Cookie: session=attacker"),
        ("x-note", "a\nSet-Cookie: session=attacker"),
        ("Set-Cookie: session=attacker\r\nx-note", "a"),
        ("x note", "a"),
    ];
    for (name, value) in accepts {
        let body = AcceptBody {
            protocol: None,
            headers: vec![(name.into(), value.into())],
        };
        let resp = answer_open(&mut conn, &gw, codec::Frame::accept(0, &body)).await;
        assert_eq!(resp.status, 502, "ACCEPT header {name:?}: {value:?}");
        assert!(resp.header("set-cookie").is_none(), "{:?}", resp.headers);
        // The app is told its session was refused.
        let close = conn.expect(FrameType::Close).await;
        assert_eq!(close_of(&close).0, Some(1002));
    }
    let reject = RejectBody {
        status: 403,
        headers: vec![(
            "content-type".into(),
            "text/plain\r\nSet-Cookie: session=attacker".into(),
        )],
        body: "no".into(),
    };
    let resp = answer_open(&mut conn, &gw, codec::Frame::reject(0, &reject)).await;
    assert_eq!(resp.status, 502, "REJECT content-type with a line break");
    assert!(resp.header("set-cookie").is_none(), "{:?}", resp.headers);
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "upstream_invalid_header")],
        5.0,
    )
    .await;

    // A well-formed ACCEPT still shapes the 101.
    let body = AcceptBody {
        protocol: None,
        headers: vec![("x-app-node".into(), "7; zone=\"a b\"".into())],
    };
    let resp = answer_open(&mut conn, &gw, codec::Frame::accept(0, &body)).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("x-app-node"), Some("7; zone=\"a b\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_sessions_close_with_1008_when_the_token_expires() {
    // The handshake must finish within the token's two seconds.
    let _serial = serial().await;
    let mut app = FakeApp::start().await;
    let mut raw = mux_config(&[ws_url(app.addr)], 1);
    raw.routes[0].auth = "users".into();
    raw.auth_policies = vec![RawAuthPolicy {
        name: "users".into(),
        jwt: Some(RawJwt {
            keys: vec![RawJwtKey {
                algorithm: "HS256".into(),
                secret: SECRET.into(),
                ..RawJwtKey::default()
            }],
            leeway: "0s".into(),
            expiry_grace: "0s".into(),
            ..RawJwt::default()
        }),
        ..RawAuthPolicy::default()
    }];
    let gw = start_gateway(raw).await;
    let mut conn = app.conn().await;
    wait_ready(gw.admin).await;

    let claims = json!({"sub": "alice", "exp": now() + 2});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token signs");
    let addr = gw.addr;
    let client = tokio::spawn(async move {
        let bearer = format!("Bearer {token}");
        ws_try(addr, "localhost", "/", &[("Authorization", &bearer)]).await
    });
    let open = conn.expect(FrameType::Open).await;
    let accept = AcceptBody {
        protocol: None,
        headers: vec![],
    };
    conn.send(&[codec::Frame::accept(open.session, &accept)]);
    let (resp, ws) = within("client handshake", client)
        .await
        .expect("client task");
    assert_eq!(resp.status, 101);
    let mut ws = ws.expect("101");
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    // The application hears why its session ended.
    let close = conn.expect(FrameType::Close).await;
    assert_eq!(close.session, open.session);
    assert_eq!(close_of(&close), (Some(1008), "token expired".to_string()));
    wait_metric(
        gw.admin,
        "tidegate_closes_total",
        &[("route", "r"), ("side", "gateway"), ("code", "1008")],
        1.0,
    )
    .await;
}

/// The gateway proves itself to the application: every mux connection
/// carries `upstreams[].mux_secret`, which `check-config`/`/config` never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_connections_carry_the_secret_and_config_output_hides_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let app = listener.local_addr().expect("app addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mux-secret");
    std::fs::write(&file, "from-a-mounted-secret-0123\n").expect("write secret");
    let mut raw = mux_config(&[ws_url(app)], 1);
    raw.upstreams[0].mux_secret_file = file.display().to_string();
    let gw = start_gateway(raw.clone()).await;
    let (mut tcp, _) = within("the gateway's mux connection", listener.accept())
        .await
        .expect("accept");
    let head = within("its request head", async {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    })
    .await;
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nx-tidegate-mux-secret: from-a-mounted-secret-0123\r\n"),
        "{head}"
    );
    drop(gw);

    raw.upstreams[0].mux_secret_file = String::new();
    raw.upstreams[0].mux_secret = "inline-secret-0123456789".into();
    let config = tidegate::config::Config::from_raw(raw).expect("valid");
    let shown = toml::to_string(&config.raw.redacted()).expect("TOML");
    assert!(!shown.contains("inline-secret-0123456789"), "{shown}");
}
