//! The application side of `tidegate.mux.v1`: a WebSocket server the
//! gateway's mux connections come to (docs/mux-protocol.md §1), handing
//! the application one [`Incoming`] per OPEN and one [`Session`] per
//! accepted client.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use tidegate_mux::server::{Event, MuxServer};
//! use tidegate_mux::AcceptBody;
//!
//! let server = MuxServer::bind("127.0.0.1:9000").await?;
//! while let Some(incoming) = server.accept().await {
//!     let mut session = incoming.accept(AcceptBody::default());
//!     tokio::spawn(async move {
//!         while let Some(event) = session.recv().await {
//!             if let Event::Text(t) = event {
//!                 let _ = session.send_text(t).await;
//!             }
//!         }
//!     });
//! }
//! # Ok(()) }
//! ```
//!
//! Parts: `conn` (one reader task per mux connection), `outbox` (its
//! batching writer), `session` (the application's handles), `incoming`
//! (an OPEN waiting for an answer), `table` (sessions kept for resume),
//! `http` (the upgrade handshake).

mod conn;
mod fanout;
mod http;
mod incoming;
mod outbox;
mod room;
mod runner;
mod session;
mod table;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

pub use fanout::{Message, PublishError, Publisher};
pub use incoming::Incoming;
pub use room::{Delivery, Room};
pub use runner::{run_until_signal, DRAIN_MAX};
pub use session::{Event, SendError, Session, SessionId, SessionSender};
pub use table::len as held_sessions;

use crate::codec::Frame;
use outbox::Outbox;

/// Limits of a [`MuxServer`]; `Config::default()` is what [`MuxServer::bind`]
/// uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a session of a lost connection waits for a RESUMED OPEN
    /// before the application gets `Closed(1006)` (the gateway's
    /// `mux.resume_grace` is 30 s too).
    pub resume_grace: Duration,
    /// Unread inbound messages per session before it is closed with 1008.
    pub session_queue_messages: usize,
    /// Unread inbound bytes per session before it is closed with 1008 (a
    /// single message always fits an empty queue).
    pub session_queue_bytes: usize,
    /// Largest whole inbound message; a longer one closes the session
    /// with 1009.
    pub max_message_bytes: usize,
    /// Largest mux frame body taken from the gateway (§2); a longer one is
    /// a protocol error (1002).
    pub max_frame_bytes: u32,
    /// Bytes of application data queued per connection before senders wait.
    pub connection_queue_bytes: usize,
    /// OPENs waiting for [`MuxServer::accept`]; beyond this they are
    /// rejected with 503.
    pub accept_queue: usize,
    /// Time allowed for a mux connection's upgrade request.
    pub handshake_timeout: Duration,
    /// The secret the gateway sends in `X-Tidegate-Mux-Secret` (its
    /// `upstreams[].mux_secret`). When set, a mux connection without it is
    /// refused with 401 before anything else is read, so nobody but the
    /// gateway can open or resume (move) sessions. `None` trusts every
    /// peer that reaches the port (loopback or a private network only).
    pub gateway_secret: Option<String>,
    /// Bind with `SO_REUSEPORT` (and `SO_REUSEADDR`), so a new instance can
    /// listen on the port while the old one still serves: the
    /// side-by-side restart of README "Restarting". Unix only; ignored
    /// elsewhere.
    pub reuse_port: bool,
    /// Accept the gateway's offer of extension `fanout` (§10), so
    /// [`Room`] and [`Publisher`] hand broadcasts to the gateway; `false`
    /// keeps every connection on plain v1 (per-session sends).
    pub fanout: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            resume_grace: Duration::from_secs(30),
            session_queue_messages: 256,
            session_queue_bytes: 1 << 20,
            max_message_bytes: 16 << 20,
            max_frame_bytes: 16 << 20,
            connection_queue_bytes: 4 << 20,
            accept_queue: 1024,
            handshake_timeout: Duration::from_secs(10),
            gateway_secret: None,
            reuse_port: false,
            fanout: true,
        }
    }
}

/// What the connection tasks share with the server handle.
pub(crate) struct ServerShared {
    /// Limits, fixed at bind time (except the grace below).
    config: Config,
    /// `resume_grace` in milliseconds, changeable after bind.
    grace_ms: AtomicU64,
    /// New OPENs for [`MuxServer::accept`].
    incoming: mpsc::Sender<Incoming>,
    /// Open mux connections by number, for GOAWAY.
    conns: Mutex<HashMap<u64, Arc<Outbox>>>,
    /// Number of open mux connections, for waiting on zero.
    count: watch::Sender<usize>,
    /// GOAWAY was sent: new mux connections are refused (503), so a
    /// draining instance reaches zero connections.
    draining: AtomicBool,
}

impl ServerShared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Outbox>>> {
        // Single map operations under the lock: poisoning carries no meaning.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(&self, conn: u64, outbox: Arc<Outbox>) {
        fanout::register(conn, outbox.clone());
        let mut c = self.conns();
        c.insert(conn, outbox);
        self.count.send_replace(c.len());
    }

    pub(crate) fn unregister(&self, conn: u64) {
        fanout::unregister(conn);
        let mut c = self.conns();
        c.remove(&conn);
        self.count.send_replace(c.len());
    }

    pub(crate) fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms.load(Ordering::Relaxed))
    }
}

/// Numbers mux connections process-wide: sessions move between
/// connections of different servers of one process.
pub(crate) fn next_conn_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A listening mux endpoint. Dropping it stops accepting connections;
/// connections already up keep serving their sessions.
pub struct MuxServer {
    /// Where the gateway connects.
    local_addr: SocketAddr,
    /// New OPENs, in arrival order; a lock so `accept` takes `&self`.
    incoming: AsyncMutex<mpsc::Receiver<Incoming>>,
    /// State shared with connection tasks.
    shared: Arc<ServerShared>,
    /// The accept loop (it owns the listener), stopped by
    /// [`MuxServer::goaway`] and on drop.
    accept_task: JoinHandle<()>,
}

impl MuxServer {
    /// Listen on `addr` with the default [`Config`].
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<MuxServer> {
        MuxServer::bind_with(addr, Config::default()).await
    }

    /// Listen on `addr` with `config`.
    pub async fn bind_with(addr: impl ToSocketAddrs, config: Config) -> io::Result<MuxServer> {
        let listener = listen(addr, config.reuse_port).await?;
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(config.accept_queue.max(1));
        let shared = Arc::new(ServerShared {
            grace_ms: AtomicU64::new(duration_ms(config.resume_grace)),
            config,
            incoming: tx,
            conns: Mutex::new(HashMap::new()),
            count: watch::Sender::new(0),
            draining: AtomicBool::new(false),
        });
        let accept_task = tokio::spawn(http::accept_loop(listener, shared.clone()));
        Ok(MuxServer {
            local_addr,
            incoming: AsyncMutex::new(rx),
            shared,
            accept_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next OPEN that needs an answer (new sessions, and resumed ones
    /// this process does not hold). `None` never happens while the server
    /// lives; it is there for symmetry with other receivers.
    pub async fn accept(&self) -> Option<Incoming> {
        self.incoming.lock().await.recv().await
    }

    /// Send GOAWAY on every mux connection (before a redeploy): the gateway
    /// moves their sessions elsewhere — or, with nowhere to move them,
    /// closes the connections at once and holds the sessions for the next
    /// instance — then closes the connections. Returns the number of
    /// connections told. Stops listening first, so the gateway's next
    /// connections reach whoever listens on the port now; a handshake
    /// already under way is refused with 503.
    pub fn goaway(&self, reason: &str) -> usize {
        self.shared.draining.store(true, Ordering::Release);
        self.accept_task.abort();
        let conns: Vec<Arc<Outbox>> = self.shared.conns().values().cloned().collect();
        conns
            .iter()
            .filter(|o| o.push_control(Frame::goaway(reason)))
            .count()
    }

    /// Publishes to channels from any task (extension `fanout`; see
    /// [`Publisher::publish`]).
    pub fn publisher(&self) -> Publisher {
        Publisher::default()
    }

    /// Send `msg` to every session subscribed to `channel` but `except`:
    /// one PUBLISH per gateway instance, per-session sends where a
    /// gateway lacks `fanout`. Never waits.
    pub fn publish(
        &self,
        channel: &str,
        msg: &Message,
        except: Option<&SessionId>,
    ) -> Result<Delivery, PublishError> {
        self.publisher().publish(channel, msg, except)
    }

    /// Mux connections currently open.
    pub fn connection_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Wait until no mux connection is open (after [`MuxServer::goaway`],
    /// the gateway closes them once their sessions moved).
    pub async fn wait_connections_closed(&self) {
        let mut rx = self.shared.count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Change the resume grace for connections that end from now on.
    pub fn set_resume_grace(&self, grace: Duration) {
        self.shared
            .grace_ms
            .store(duration_ms(grace), Ordering::Relaxed);
    }
}

impl Drop for MuxServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// The listening socket: plain, or with `SO_REUSEPORT` for a side-by-side
/// restart.
async fn listen(addr: impl ToSocketAddrs, reuse_port: bool) -> io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr).await;
    }
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        match socket.bind(a) {
            Ok(()) => return socket.listen(1024),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
