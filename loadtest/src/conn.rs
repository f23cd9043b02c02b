//! Opening one WebSocket connection: TCP (optionally from a chosen source
//! address), TLS for `wss://`, then the upgrade.
//!
//! Every step has a timeout and a typed error with a bounded label, so a
//! storm of failures is reported as a short tally, not a wall of text.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::handshake::{self, HandshakeError};
use crate::target::Target;

/// How long TCP connect + TLS + upgrade may take before the attempt fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection attempt failed.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("TCP connect: {0}")]
    Tcp(io::Error),
    #[error("binding source address {0}: {1}")]
    Bind(IpAddr, io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("connect + handshake took longer than {CONNECT_TIMEOUT:?}")]
    Timeout,
}

impl ConnError {
    /// Bounded label for error tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Tcp(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                "tcp_no_ephemeral_port"
            }
            Self::Tcp(e) if e.raw_os_error() == Some(libc::EMFILE) => "tcp_too_many_open_files",
            Self::Tcp(e) if e.kind() == io::ErrorKind::ConnectionRefused => "tcp_refused",
            Self::Tcp(_) => "tcp_other",
            Self::Bind(..) => "bind",
            Self::Tls(_) => "tls",
            Self::Handshake(h) => h.label(),
            Self::Timeout => "timeout",
        }
    }
}

/// A client connection, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the TLS handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(t) => {
                t.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Everything needed to open connections to one target; cheap to clone.
#[derive(Clone)]
pub struct Connector {
    /// Where to connect.
    pub target: Arc<Target>,
    /// Present for `wss://` targets.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Source addresses to spread connections over (empty: let the kernel pick).
    sources: Arc<[IpAddr]>,
}

/// An open, upgraded connection.
pub struct Connected {
    /// The socket, after the 101.
    pub stream: Stream,
    /// Frame bytes that arrived together with the 101.
    pub leftover: Vec<u8>,
}

impl Connector {
    /// `tls` must be given for a `wss://` target.
    pub fn new(
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        sources: Vec<IpAddr>,
    ) -> anyhow::Result<Self> {
        let tls = match (target.tls, tls) {
            (true, Some(cfg)) => {
                let name = ServerName::try_from(target.host.clone())?;
                Some((TlsConnector::from(cfg), name))
            }
            (true, None) => anyhow::bail!("wss:// target without a TLS configuration"),
            (false, _) => None,
        };
        Ok(Self {
            target: Arc::new(target),
            tls,
            sources: sources.into(),
        })
    }

    /// Opens connection number `index` (which picks its source address).
    pub async fn connect(&self, index: usize) -> Result<Connected, ConnError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner(index))
            .await
            .unwrap_or(Err(ConnError::Timeout))
    }

    async fn connect_inner(&self, index: usize) -> Result<Connected, ConnError> {
        let mut stream = self.open_inner(index).await?;
        let leftover = handshake::client(&mut stream, &self.target).await?;
        Ok(Connected { stream, leftover })
    }

    /// Opens connection number `index` without the upgrade: TCP and TLS
    /// only, for the HTTP scenarios.
    pub async fn open(&self, index: usize) -> Result<Stream, ConnError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.open_inner(index))
            .await
            .unwrap_or(Err(ConnError::Timeout))
    }

    async fn open_inner(&self, index: usize) -> Result<Stream, ConnError> {
        let addr = self.target.addr;
        let tcp = match self.sources.get(index % self.sources.len().max(1)) {
            Some(&src) => {
                let socket = match addr {
                    SocketAddr::V4(_) => TcpSocket::new_v4(),
                    SocketAddr::V6(_) => TcpSocket::new_v6(),
                }
                .map_err(ConnError::Tcp)?;
                socket
                    .bind(SocketAddr::new(src, 0))
                    .map_err(|e| ConnError::Bind(src, e))?;
                socket.connect(addr).await.map_err(ConnError::Tcp)?
            }
            None => TcpStream::connect(addr).await.map_err(ConnError::Tcp)?,
        };
        // Pipelined small frames must leave at once, not wait for Nagle.
        tcp.set_nodelay(true).map_err(ConnError::Tcp)?;
        Ok(match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ConnError::Tls)?;
                Stream::Tls(Box::new(tls))
            }
            None => Stream::Plain(tcp),
        })
    }
}
