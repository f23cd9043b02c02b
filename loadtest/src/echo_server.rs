//! `echo-server`: the shared WebSocket upstream of every benchmark.
//!
//! It echoes frame by frame without reassembling messages: each data frame
//! goes back with the same opcode and FIN bit as soon as its bytes arrive,
//! unmasked in chunks, so memory does not grow with message size. Everything
//! parsed from one read is answered with one write, which keeps the
//! upstream's cost per message small and equal for every target in a
//! comparison. Pings are answered, close handshakes completed, and protocol
//! errors closed with 1002 (text payloads are not UTF-8 checked: frames are
//! echoed before the message is complete).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::frame::{self, Header, OP_CLOSE, OP_PING, OP_PONG};
use crate::handshake;
use crate::listen;

/// Read buffer per connection.
const READ_BUF: usize = 16 * 1024;
/// Flush the reply buffer once it holds this much, even mid-read.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Largest frame accepted; larger ones are closed with 1009.
const MAX_FRAME: u64 = 64 * 1024 * 1024;
/// Upgrade must complete within this.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TLS acceptor from PEM certificate chain and key files, for `wss://`.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds `listen`, announces the address on stdout, and serves until the
/// process is stopped; with `tls`, every connection is `wss://`.
pub async fn serve(listen: SocketAddr, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    let suffix = if tls.is_some() { " tls=true" } else { "" };
    let listener = listen::bind_and_announce(listen, "echo-server", suffix).await?;
    loop {
        let sock = listen::accept(&listener).await;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(s)) => connection(s).await,
                        _ => Ok(()),
                    }
                }
                None => connection(sock).await,
            };
        });
    }
}

/// One connection: upgrade, then echo until close or error.
pub async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> anyhow::Result<()> {
    let leftover = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::server(&mut s))
        .await
        .context("handshake timeout")??;
    let mut echo = Echo::new(&leftover);
    // Frames the client sent right behind its request are answered first.
    let mut pending = !leftover.is_empty();
    loop {
        if !pending {
            let n = s.read(&mut echo.buf[echo.end..]).await?;
            if n == 0 {
                return Ok(());
            }
            echo.end += n;
        }
        pending = false;
        let done = echo.process(&mut s).await?;
        if done {
            let _ = s.shutdown().await;
            return Ok(());
        }
    }
}

/// Echo state of one connection.
struct Echo {
    /// Unparsed input lives in `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Replies waiting for the next write.
    out: Vec<u8>,
    /// Data frame whose payload is still arriving: (bytes left, mask, offset).
    streaming: Option<(u64, [u8; 4], usize)>,
}

impl Echo {
    fn new(leftover: &[u8]) -> Self {
        let mut buf = vec![0u8; READ_BUF + leftover.len()];
        buf[..leftover.len()].copy_from_slice(leftover);
        Self {
            buf,
            start: 0,
            end: leftover.len(),
            out: Vec::new(),
            streaming: None,
        }
    }

    /// Answers everything complete in the buffer. Returns true once the
    /// connection is finished (close answered or protocol error sent).
    async fn process<S: AsyncWrite + Unpin>(&mut self, s: &mut S) -> std::io::Result<bool> {
        let done = loop {
            if let Some((left, mask, offset)) = self.streaming {
                let take = left.min((self.end - self.start) as u64) as usize;
                if take == 0 {
                    break false;
                }
                let at = self.out.len();
                self.out
                    .extend_from_slice(&self.buf[self.start..self.start + take]);
                frame::apply_mask(&mut self.out[at..], mask, offset);
                self.start += take;
                self.streaming =
                    (left > take as u64).then_some((left - take as u64, mask, offset + take));
            } else {
                match frame::parse_header(&self.buf[self.start..self.end]) {
                    Ok(None) => break false,
                    Ok(Some(h)) => match self.frame(h) {
                        Step::More => {}
                        Step::Wait => break false,
                        Step::Done => break true,
                    },
                    Err(e) => {
                        self.close_with(e.close_code());
                        break true;
                    }
                }
            }
            if self.out.len() >= WRITE_HIGH_WATER {
                s.write_all(&self.out).await?;
                self.out.clear();
            }
        };
        if !self.out.is_empty() {
            s.write_all(&self.out).await?;
            self.out.clear();
        }
        // Keep room to read: move the unparsed tail to the front.
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        Ok(done)
    }

    /// Handles a frame whose header is complete at `self.start`.
    fn frame(&mut self, h: Header) -> Step {
        let Some(mask) = h.mask else {
            self.close_with(1002);
            return Step::Done;
        };
        if h.len > MAX_FRAME {
            self.close_with(1009);
            return Step::Done;
        }
        if !h.is_control() {
            frame::write_header(&mut self.out, h.fin, h.opcode, None, h.len);
            self.start += h.header_len;
            self.streaming = (h.len > 0).then_some((h.len, mask, 0));
            return Step::More;
        }
        let total = h.header_len + h.len as usize;
        if self.end - self.start < total {
            return Step::Wait;
        }
        let mut body = [0u8; 125];
        let body = &mut body[..h.len as usize];
        body.copy_from_slice(&self.buf[self.start + h.header_len..self.start + total]);
        frame::apply_mask(body, mask, 0);
        self.start += total;
        match h.opcode {
            OP_PING => {
                frame::write_header(&mut self.out, true, OP_PONG, None, h.len);
                self.out.extend_from_slice(body);
                Step::More
            }
            OP_CLOSE => {
                // Echo the peer's code (RFC 6455 §5.5.1), then end.
                let code = if body.len() >= 2 {
                    u16::from_be_bytes([body[0], body[1]])
                } else {
                    1000
                };
                self.close_with(code);
                Step::Done
            }
            _ => Step::More, // pong: nothing to answer
        }
    }

    fn close_with(&mut self, code: u16) {
        frame::write_header(&mut self.out, true, OP_CLOSE, None, 2);
        self.out.extend_from_slice(&code.to_be_bytes());
    }
}

/// What to do after one frame header.
enum Step {
    /// Keep parsing.
    More,
    /// A control frame is incomplete: read more.
    Wait,
    /// The connection is finished.
    Done,
}
