//! A WebSocket echo server on fastwebsockets: the upstream of `tidegate
//! demo`, of `tidegate echo`, of the conformance runs and of the load tests.
//!
//! It reassembles fragmented messages (so UTF-8 is checked on whole text
//! messages, as RFC 6455 requires of an endpoint) and sends each back as one
//! message. A text message `!close CODE [REASON]` makes it close the
//! session with that code, so clients can see an upstream close pass
//! through the gateway.
//!
//! A plain HTTP request is answered too, so `curl` through `tidegate
//! demo` shows HTTP proxying: GET and HEAD get a short text, any other
//! method gets its request body streamed back.

use crate::frame::{self, Violation};
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, WebSocketError};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest message the echo accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// Serve until `stop` is cancelled.
pub async fn serve(listener: TcpListener, stop: CancellationToken) {
    loop {
        let Some((tcp, _)) = crate::io::accept_until(&listener, &stop, "echo", drop).await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(upgrade);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

/// What the echo answers with: nothing, a text, or the request's body.
type EchoBody = BoxBody<Bytes, hyper::Error>;

/// The answer to a plain HTTP request: a text for GET and HEAD, the body
/// streamed back for anything else.
fn plain(req: Request<Incoming>) -> Response<EchoBody> {
    let builder = Response::builder().status(200);
    let response = match *req.method() {
        hyper::Method::GET | hyper::Method::HEAD => builder
            .header("content-type", "text/plain; charset=utf-8")
            .body(
                Full::new(Bytes::from_static(
                    b"tidegate echo upstream: open a WebSocket on this URL, or POST a body to have it echoed\n",
                ))
                .map_err(|never| match never {})
                .boxed(),
            ),
        _ => builder
            .header("content-type", "application/octet-stream")
            .body(req.into_body().boxed()),
    };
    response.expect("static response parts are valid")
}

fn empty() -> EchoBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Ok(plain(req));
    }
    // Choose the first sub-protocol offered, so negotiation can be seen.
    let protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_string());
    match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((mut response, fut)) => {
            if let Some(p) = protocol.and_then(|p| p.parse().ok()) {
                response.headers_mut().insert("sec-websocket-protocol", p);
            }
            tokio::spawn(async move {
                if let Ok(mut ws) = fut.await {
                    ws.set_max_message_size(MAX_MESSAGE);
                    // Close frames are checked here: fastwebsockets does not
                    // refuse a Close payload over 125 bytes.
                    ws.set_auto_close(false);
                    let _ = echo(FragmentCollector::new(ws)).await;
                }
            });
            Ok(response.map(|_| empty()))
        }
        Err(_) => Ok(Response::builder()
            .status(400)
            .body(empty())
            .expect("static response parts are valid")),
    }
}

async fn echo<S>(mut ws: FragmentCollector<S>) -> Result<(), WebSocketError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = match ws.read_frame().await {
            Ok(f) => f,
            Err(e) => {
                // Tell the peer why, where RFC 6455 gives a code for it.
                let code = match e {
                    WebSocketError::InvalidUTF8 => Some(1007),
                    WebSocketError::FrameTooLarge => Some(1009),
                    WebSocketError::ConnectionClosed
                    | WebSocketError::UnexpectedEOF
                    | WebSocketError::IoError(_) => None,
                    _ => Some(1002),
                };
                if let Some(code) = code {
                    let _ = ws.write_frame(Frame::close(code, b"")).await;
                }
                return Err(e);
            }
        };
        match frame.opcode {
            OpCode::Close => {
                let reply = close_reply(&frame.payload);
                let _ = ws.write_frame(reply).await;
                return Ok(());
            }
            OpCode::Text => {
                if let Some(cmd) = frame.payload.strip_prefix(b"!close ") {
                    let text = String::from_utf8_lossy(cmd).to_string();
                    let (code, reason) = text.split_once(' ').unwrap_or((text.as_str(), ""));
                    let code = code.trim().parse::<u16>().unwrap_or(1000);
                    ws.write_frame(Frame::close(code, reason.as_bytes()))
                        .await?;
                    // Wait for the peer's reply (or its going away).
                    while let Ok(f) = ws.read_frame().await {
                        if f.opcode == OpCode::Close {
                            break;
                        }
                    }
                    return Ok(());
                }
                ws.write_frame(frame).await?;
            }
            OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// The answer to a Close (RFC 6455 §5.5.1, §7.4): echo its code, or 1002 /
/// 1007 when the Close itself is invalid.
fn close_reply(payload: &[u8]) -> Frame<'static> {
    if payload.len() as u64 > frame::MAX_CONTROL_PAYLOAD {
        return Frame::close(Violation::ControlTooLong.close_code(), b"");
    }
    match frame::parse_close(payload) {
        Ok(None) => Frame::close_raw(Vec::new().into()),
        Ok(Some((code, reason))) => Frame::close(code, reason.as_bytes()),
        Err(v) => Frame::close(v.close_code(), b""),
    }
}
