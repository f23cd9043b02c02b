//! The edge-compression relay's duties, through the release binary, as the
//! zero-copy relay has them: keepalive pings with a pong deadline (the
//! pongs answering the gateway's own pings stay at the gateway), the idle
//! timeout, token expiry (1008) and the access-log line. The rule that
//! judges a late pong is unit-tested in `deflate::session::duties`.

use crate::auth::{good_claims, hs, hs_key, jwt_policy, now};
use crate::deflate::{read_raw, upgrade, write_raw, OFFER};
use crate::support::*;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use std::net::SocketAddr;
use std::time::Duration;
use tidegate::config::raw::RawConfig;
use tidegate::deflate::codec::Deflater;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Edge compression in front of an echo of frames.
async fn edge_config() -> RawConfig {
    let (up, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    edge_in_front_of(up)
}

fn edge_in_front_of(up: std::net::SocketAddr) -> RawConfig {
    let mut raw = raw_config(&[ws_url(up)]);
    raw.routes[0].permessage_deflate = Some("edge".into());
    raw
}

/// Read frames until a Close: its code and reason.
async fn close_of<S: AsyncRead + Unpin>(s: &mut S) -> (u16, String) {
    within("a Close frame", async {
        loop {
            let (b0, p) = read_raw(s).await.expect("a Close before EOF");
            if b0 & 0x0f == 0x8 {
                let reason = String::from_utf8_lossy(&p[2..]).into_owned();
                return (u16::from_be_bytes([p[0], p[1]]), reason);
            }
        }
    })
    .await
}

/// One compressed text message and its echo.
async fn echo_once<S>(ws: &mut S, text: &str)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wire = Deflater::new(6, 15, false).piece(text.as_bytes(), true);
    write_raw(ws, 0xC1, &wire, true).await;
    // Pongs are skipped: the edge relay passes the upstream's answers to
    // the gateway's own pings on to the client (unsolicited pongs).
    let b0 = loop {
        let (b0, _) = within("echo", read_raw(ws)).await.expect("an echo");
        if b0 != 0x8A {
            break b0;
        }
    };
    assert_eq!(b0 & 0x0f, 0x1, "a text frame back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_pings_and_closes_a_client_that_stops_answering() {
    let _serial = serial().await;
    // The crate's echo answers the gateway's pings (an echo of frames would
    // bounce them, and the client's pongs, back to the client).
    let mut raw = edge_in_front_of(start_echo().await);
    raw.keepalive.ping_interval = "1s".into();
    raw.keepalive.pong_timeout = "1s".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let (resp, ws) = upgrade(gw.addr, Some(OFFER)).await;
    assert_eq!(resp.status, 101, "{}", gw.log());
    let mut ws = ws.expect("upgraded");
    // Answer two pings: the session stays up across them. (The upstream's
    // pongs to the gateway's own pings are passed on to the client, as
    // unsolicited pongs: skipped here.)
    let mut answered = 0;
    while answered < 2 {
        let (b0, payload) = within("a ping", read_raw(&mut ws)).await.expect("a frame");
        if b0 == 0x8A {
            continue;
        }
        assert_eq!(b0, 0x89, "a ping from the gateway");
        write_raw(&mut ws, 0x8A, &payload, true).await;
        answered += 1;
    }
    echo_once(&mut ws, "still here after two pings").await;
    // Then stop answering: the gateway pings once more and drops the
    // socket (a silent peer hears no Close).
    let mut rest = Vec::new();
    let _ = within(
        "the gateway drops the silent client",
        ws.read_to_end(&mut rest),
    )
    .await;
    // The gateway's pings carry its 8-byte payload.
    assert!(
        rest.windows(2).any(|w| w == [0x89, 0x08]),
        "pinged before: {rest:02x?}"
    );
    wait_metric(
        gw.admin,
        "tidegate_ping_timeouts_total",
        &[("route", "r"), ("side", "client")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_idle_timeout_and_access_log() {
    let mut raw = edge_config().await;
    raw.routes[0].idle_timeout = Some("1s".into());
    raw.log.access.enabled = true;
    let file = ConfigFile::new(&raw);
    let env = [("TIDEGATE_LOG", "warn,tidegate::access=info")];
    let gw = GatewayProc::start_with_env(&file, &env).await;

    // A session the client ends: two messages each way, Close 1000.
    let (_, ws) = upgrade(gw.addr, Some(OFFER)).await;
    let mut ws = ws.expect("upgraded");
    echo_once(&mut ws, "hello").await;
    echo_once(&mut ws, "world!").await;
    write_raw(&mut ws, 0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(close_of(&mut ws).await.0, 1000);

    // A session that goes quiet: Close 1001 after the idle timeout.
    let (_, ws) = upgrade(gw.addr, Some(OFFER)).await;
    let mut ws = ws.expect("upgraded");
    echo_once(&mut ws, "then silence").await;
    assert_eq!(close_of(&mut ws).await, (1001, "idle timeout".into()));
    write_raw(&mut ws, 0x88, &1001u16.to_be_bytes(), true).await;

    let log = within("two access lines", async {
        loop {
            let log = gw.log();
            if log.matches("session end").count() >= 2 {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("session end")).collect();
    let by_client = lines[0];
    for want in [
        "mode=\"edge\"",
        "messages_from_client=2",
        "bytes_from_client=11",
        "messages_to_client=2",
        "client_close=1000",
        "closed_by=\"client\"",
    ] {
        assert!(by_client.contains(want), "{want} in {by_client}");
    }
    let idle = lines[1];
    for want in ["closed_by=\"gateway\"", "reason=\"idle timeout\""] {
        assert!(idle.contains(want), "{want} in {idle}");
    }
}

/// A gateway on `raw` behind a JWT policy without leeway, and a client
/// whose token expires 2 s from now, upgraded with compression offered.
async fn client_with_expiring_token(
    mut raw: RawConfig,
) -> (GatewayProc, ConfigFile, BufReader<TcpStream>) {
    let mut policy = jwt_policy("users", vec![hs_key()], None);
    if let Some(jwt) = policy.jwt.as_mut() {
        jwt.leeway = "0s".into();
        jwt.expiry_grace = "0s".into();
    }
    raw.routes[0].auth = policy.name.clone();
    raw.auth_policies = vec![policy];
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let mut claims = good_claims();
    claims["exp"] = serde_json::json!(now() + 2);
    let token = hs(&claims);
    let (resp, ws) = within("handshake", async {
        let tcp = TcpStream::connect(gw.addr).await.expect("connect");
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Sec-WebSocket-Extensions", OFFER),
            ("Authorization", bearer.as_str()),
        ];
        ws_handshake(tcp, "localhost", "/", &headers).await
    })
    .await;
    assert_eq!(resp.status, 101, "{}", gw.log());
    assert!(resp.header("sec-websocket-extensions").is_some());
    (gw, file, ws.expect("upgraded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_session_ends_with_1008_when_the_token_expires() {
    let (gw, _file, mut ws) = client_with_expiring_token(edge_config().await).await;
    echo_once(&mut ws, "before expiry").await;
    assert_eq!(close_of(&mut ws).await, (1008, "token expired".into()));
    wait_metric(
        gw.admin,
        "tidegate_closes_total",
        &[("route", "r"), ("side", "gateway"), ("code", "1008")],
        1.0,
    )
    .await;
}

/// What the [`watching_upstream`] saw of the control frames.
#[derive(Debug, PartialEq)]
enum Heard {
    /// A ping (answered), with its payload.
    Ping(Vec<u8>),
    /// A pong, with its payload.
    Pong(Vec<u8>),
}

/// An upstream that answers pings itself and reports every ping and pong
/// it reads, and echoes data frames.
async fn watching_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Heard>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(watch(tcp, tx.clone()));
        }
    });
    (addr, rx)
}

async fn watch(tcp: TcpStream, tx: mpsc::UnboundedSender<Heard>) {
    let mut reader = BufReader::new(tcp);
    let Some(seen) = read_request(&mut reader).await else {
        return;
    };
    let accept = accept_for(seen.header("sec-websocket-key").unwrap_or_default());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if reader.get_mut().write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = WebSocket::after_handshake(reader, Role::Server);
    ws.set_auto_pong(false);
    while let Ok(frame) = ws.read_frame().await {
        let payload = frame.payload.to_vec();
        let reply = match frame.opcode {
            OpCode::Close => return,
            OpCode::Ping => {
                let _ = tx.send(Heard::Ping(payload.clone()));
                Frame::pong(Payload::Owned(payload))
            }
            OpCode::Pong => {
                let _ = tx.send(Heard::Pong(payload));
                continue;
            }
            _ => Frame::new(frame.fin, frame.opcode, None, Payload::Owned(payload)),
        };
        if ws.write_frame(reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_keeps_the_pongs_to_its_own_pings_and_passes_the_others() {
    let _serial = serial().await;
    let (up, mut heard) = watching_upstream().await;
    let mut raw = edge_in_front_of(up);
    raw.keepalive.ping_interval = "1s".into();
    raw.keepalive.pong_timeout = "1s".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let (resp, ws) = upgrade(gw.addr, Some(OFFER)).await;
    assert_eq!(resp.status, 101, "{}", gw.log());
    let mut ws = ws.expect("upgraded");
    // Answer two of the gateway's pings; a pong here would be the
    // upstream's answer to one of the gateway's pings, passed on.
    let mut stray = Vec::new();
    let mut answered = 0;
    while answered < 2 {
        let (b0, payload) = within("a ping", read_raw(&mut ws)).await.expect("a frame");
        if b0 == 0x8A {
            stray.push(payload);
            continue;
        }
        assert_eq!(b0, 0x89, "a ping from the gateway");
        write_raw(&mut ws, 0x8A, &payload, true).await;
        answered += 1;
    }
    // The gateway pinged the upstream too (it was silent as long).
    // The first thing it heard: a pong would be the client's answer to
    // one of the gateway's pings, passed on.
    let first = within("the upstream pinged", heard.recv()).await;
    let gateway_ping = match first.expect("upstream alive") {
        Heard::Ping(p) => p,
        Heard::Pong(p) => panic!("a pong reached the upstream: {p:02x?}"),
    };
    // The client's own control frames pass both ways unchanged: its
    // unsolicited pong reaches the upstream, the upstream's answer to its
    // ping comes back. Whatever the upstream answered before comes first.
    write_raw(&mut ws, 0x8A, b"a note", true).await;
    write_raw(&mut ws, 0x89, b"are you there", true).await;
    loop {
        let (b0, payload) = within("my pong", read_raw(&mut ws)).await.expect("a frame");
        match b0 {
            0x89 => write_raw(&mut ws, 0x8A, &payload, true).await,
            0x8A if payload == b"are you there" => break,
            0x8A => stray.push(payload),
            _ => panic!("only control frames: {b0:02x}"),
        }
    }
    echo_once(&mut ws, "and data still flows").await;
    assert!(
        stray.is_empty(),
        "pongs to the gateway's pings: {stray:02x?}"
    );
    // The upstream heard the client's pong and ping, none of the pongs
    // that answered the gateway's pings.
    let mut pongs = Vec::new();
    while let Ok(h) = heard.try_recv() {
        match h {
            Heard::Pong(p) => pongs.push(p),
            Heard::Ping(p) => assert!(p == gateway_ping || p == b"are you there", "{p:02x?}"),
        }
    }
    assert_eq!(pongs, vec![b"a note".to_vec()]);
}

/// A session ended by the gateway while both peers have stopped reading
/// (here: its token expires) still ends: its Closes wait behind the frames
/// being written for at most `limits.close_timeout`, then the session is
/// torn down. (Before, the edge relay waited for the client's writer,
/// held by a write that could never finish, and the session stayed.)
#[tokio::test]
async fn an_edge_session_whose_peers_stopped_reading_still_ends() {
    let mut raw = edge_config().await;
    raw.routes[0].max_message_size = Some(64 << 20);
    raw.limits.close_timeout = "1s".into();
    let (gw, _file, ws) = client_with_expiring_token(raw).await;
    // 32 MiB that do not compress, echoed by the upstream: once the
    // client's socket is full (it never reads) the gateway's write to it
    // waits, then the upstream's, then the client's own.
    let mut x = 0x9e37_79b9u32;
    let message: Vec<u8> = (0..32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let (_rd, mut wr) = tokio::io::split(ws);
    let writer = tokio::spawn(async move {
        write_raw(&mut wr, 0x82, &message, true).await;
        wr
    });
    wait_metric(
        gw.admin,
        "tidegate_connections_active",
        &[("route", "r")],
        1.0,
    )
    .await;
    // Expiry at 2 s, then at most the 1 s close timeout.
    wait_metric(
        gw.admin,
        "tidegate_connections_active",
        &[("route", "r")],
        0.0,
    )
    .await;
    writer.abort();
}
