//! The HTTP publish API: a listener of its own (`[fanout.publish]`, off by
//! default) where back-end jobs publish without holding a WebSocket.
//!
//! - `POST /publish/{channel}`: the body is the message; `Content-Type:
//!   text/*` or `application/json` makes it a text frame (it must then be
//!   UTF-8), anything else binary.
//! - `POST /publish`: a JSON array of `{"channel", "text"}` or
//!   `{"channel", "base64"}` objects, checked whole before any is
//!   published.
//!
//! Every request needs `Authorization: Bearer <token>` (401 otherwise,
//! before the body is read, and nothing is delivered); the token is
//! compared in constant time and never logged. The answer is JSON with the
//! number of local subscribers reached. hyper serves it, as the admin
//! listener: this is plain HTTP/1.1 for trusted back-ends, not the client
//! data path, so its parser's limits plus the body bound here suffice.

use super::{Hub, Refusal, Source};
use crate::config::fanout::PublishConfig;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bind and serve in the background; returns the bound address.
pub async fn serve(
    config: &Arc<PublishConfig>,
    hub: Arc<Hub>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(config.addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "fan-out publish API listening");
    let config = Arc::clone(config);
    tokio::spawn(async move {
        loop {
            // Process exit stops serving.
            let Some((tcp, _)) =
                crate::io::accept_until(&listener, &stop, "fanout_publish", drop).await
            else {
                return;
            };
            let (hub, config) = (Arc::clone(&hub), Arc::clone(&config));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (hub, config) = (Arc::clone(&hub), Arc::clone(&config));
                    async move { Ok::<_, Infallible>(handle(&hub, &config, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = conn.await;
            });
        }
    });
    Ok(local)
}

/// A refused request: its status and message.
struct Refused(StatusCode, &'static str);

async fn handle(
    hub: &Hub,
    config: &PublishConfig,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match route(hub, config, req).await {
        Ok(reached) => json(StatusCode::OK, format!("{{\"subscribers\":{reached}}}\n")),
        Err(Refused(status, why)) => {
            let reason = match status {
                StatusCode::UNAUTHORIZED => Some(Refusal::Unauthorized),
                StatusCode::PAYLOAD_TOO_LARGE => Some(Refusal::TooLarge),
                StatusCode::BAD_REQUEST => Some(Refusal::BadRequest),
                _ => None,
            };
            if let Some(r) = reason {
                tracing::debug!(reason = r.label(), "publish request refused");
                hub.metrics.rejected(r);
            }
            let mut response = json(status, format!("{{\"error\":{why:?}}}\n"));
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    "www-authenticate",
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Check, read and publish; the number of subscribers reached.
async fn route(
    hub: &Hub,
    config: &PublishConfig,
    req: Request<Incoming>,
) -> Result<usize, Refused> {
    let path = req.uri().path();
    let channel = match path.strip_prefix("/publish") {
        Some("") => None,
        Some(rest) => match rest.strip_prefix('/') {
            Some(c) => Some(c.to_string()),
            None => return Err(Refused(StatusCode::NOT_FOUND, "not found")),
        },
        None => return Err(Refused(StatusCode::NOT_FOUND, "not found")),
    };
    if req.method() != Method::POST {
        return Err(Refused(StatusCode::METHOD_NOT_ALLOWED, "POST only"));
    }
    if !authorized(req.headers(), &config.token) {
        return Err(Refused(StatusCode::UNAUTHORIZED, "bearer token required"));
    }
    let text = is_text(req.headers());
    let body = read_body(req, config.max_body_bytes).await?;
    match channel {
        Some(channel) => publish_one(hub, &channel, text, body),
        None => publish_batch(hub, &body, config.max_batch),
    }
}

fn publish_one(hub: &Hub, channel: &str, text: bool, body: Bytes) -> Result<usize, Refused> {
    if text && std::str::from_utf8(&body).is_err() {
        return Err(Refused(StatusCode::BAD_REQUEST, "text body is not UTF-8"));
    }
    hub.publish(channel.as_bytes(), text, &body, None, Source::Http)
        .map_err(|_| Refused(StatusCode::BAD_REQUEST, "invalid channel name"))
}

/// One message of a batch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    channel: String,
    text: Option<String>,
    base64: Option<String>,
}

fn publish_batch(hub: &Hub, body: &[u8], max: usize) -> Result<usize, Refused> {
    let items: Vec<Item> = serde_json::from_slice(body).map_err(|_| {
        Refused(
            StatusCode::BAD_REQUEST,
            "expected a JSON array of {channel, text | base64}",
        )
    })?;
    if items.len() > max {
        return Err(Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too many messages in one batch",
        ));
    }
    // Decode and check all first: a bad item publishes nothing.
    let mut messages = Vec::with_capacity(items.len());
    for item in &items {
        if !tidegate_mux::codec::valid_channel(item.channel.as_bytes()) {
            return Err(Refused(StatusCode::BAD_REQUEST, "invalid channel name"));
        }
        let message = match (&item.text, &item.base64) {
            (Some(t), None) => (true, t.as_bytes().to_vec()),
            (None, Some(b)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| Refused(StatusCode::BAD_REQUEST, "bad base64"))?;
                (false, bytes)
            }
            _ => {
                return Err(Refused(
                    StatusCode::BAD_REQUEST,
                    "each item needs text or base64",
                ))
            }
        };
        messages.push(message);
    }
    let mut reached = 0;
    for (item, (text, payload)) in items.iter().zip(messages) {
        reached += hub
            .publish(item.channel.as_bytes(), text, &payload, None, Source::Http)
            .unwrap_or(0);
    }
    Ok(reached)
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn authorized(headers: &hyper::HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// `text/*` and `application/json` publish text frames.
fn is_text(headers: &hyper::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/") || mime == "application/json"
}

/// The whole body, at most `max` bytes (413 above it, before reading when
/// `Content-Length` says so).
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Refused> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refused(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Refused(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))
        }
        Err(_) => Err(Refused(StatusCode::BAD_REQUEST, "body could not be read")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = hyper::HeaderMap::new();
        assert!(!authorized(&h, "sixteen-chars-ok"));
        h.insert("authorization", "Bearer sixteen-chars-ok".parse().unwrap());
        assert!(authorized(&h, "sixteen-chars-ok"));
        assert!(!authorized(&h, "sixteen-chars-ok!"));
        assert!(!authorized(&h, "sixteen-chars-o"));
        h.insert("authorization", "Basic sixteen-chars-ok".parse().unwrap());
        assert!(!authorized(&h, "sixteen-chars-ok"));
    }

    #[test]
    fn text_content_types() {
        let mut h = hyper::HeaderMap::new();
        assert!(!is_text(&h));
        for (ct, text) in [
            ("text/plain; charset=utf-8", true),
            ("application/json", true),
            ("Application/JSON", true),
            ("application/octet-stream", false),
        ] {
            h.insert("content-type", ct.parse().unwrap());
            assert_eq!(is_text(&h), text, "{ct}");
        }
    }
}
