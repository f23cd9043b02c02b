//! A small HTTP/1.1 client for the auth phase (JWKS fetches, forward-auth
//! calls): hyper over TCP, or over tokio-rustls with the gateway's rustls
//! client config for `https://`. One connection per call; every call is
//! bounded in time by the caller and in body size here.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest response body read (a JWKS is a few KiB).
const MAX_BODY: usize = 1 << 20;

/// Where requests go.
#[derive(Clone)]
pub struct Target {
    /// As written with userinfo and query redacted, for logs.
    pub url: String,
    host: String,
    port: u16,
    /// `host[:port]` for the Host header.
    authority: String,
    path_and_query: String,
    /// Present for `https://`.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
}

/// A response, body read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Target {
    /// Parse an `http://` or `https://` URL; `tls` must be given for https.
    pub fn parse(text: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Target, String> {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let secure = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("missing host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut path_and_query = url.path().to_string();
        if let Some(q) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Target {
            url: crate::redact::url(text),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            authority,
            path_and_query,
            tls: if secure { tls } else { None },
        })
    }

    pub fn is_secure(&self) -> bool {
        self.tls.is_some()
    }

    /// The host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// GET with `headers`.
    pub async fn get(&self, headers: &[(String, String)]) -> Result<Response, HttpError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(HttpError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(tcp, headers).await,
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| HttpError::Tls(std::io::Error::other(e)))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(HttpError::Tls)?;
                self.exchange(tls, headers).await
            }
        }
    }

    async fn exchange<I>(&self, io: I, headers: &[(String, String)]) -> Result<Response, HttpError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |e: hyper::Error| HttpError::Http(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(http)?;
        // The connection task ends when the exchange is over or dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::get(self.path_and_query.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONNECTION, "close");
        for (name, value) in headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| HttpError::Http(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| HttpError::Http(e.to_string()))?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
