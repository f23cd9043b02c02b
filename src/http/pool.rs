//! Keep-alive connections to the endpoints of one upstream: a bounded
//! stack of idle HTTP/1.1 client connections per endpoint, newest first,
//! each dropped after `pool_idle_timeout` unused — by a reaper task
//! ([`Pool::start_reaper`]) even when no request comes to look, so an idle
//! gateway does not hold sockets the upstream is waiting to see closed. Connections are opened
//! with [`Upstream::open`], so a failed connect is counted (and reported
//! for passive health) exactly like a WebSocket one.
//!
//! A connection goes back only after a clean exchange (request body sent
//! whole, response read to its end); anything else — a cancelled request,
//! a timeout, an error — aborts its task, which closes the socket, so a
//! half-used connection never serves another client.

use super::body::ClientBody;
use crate::upstream::{ConnectError, Upstream};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One upstream HTTP/1.1 connection.
pub struct Conn {
    pub sender: SendRequest<ClientBody>,
    /// Drives the connection; aborting it closes the socket.
    task: JoinHandle<()>,
    /// Index of its endpoint in the upstream's `endpoints`.
    pub endpoint: usize,
    /// Taken from the pool (a request may fail on it because the upstream
    /// closed it meanwhile, and is then worth one retry on a new one).
    pub reused: bool,
}

impl Conn {
    /// Close it now (its request was cancelled or failed).
    pub fn discard(self) {
        self.task.abort();
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The pool of one upstream.
pub struct Pool {
    /// Per endpoint, idle connections, newest last.
    idle: Vec<Mutex<Vec<Idle>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(endpoints: usize, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: (0..endpoints).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// Close idle connections past the idle timeout (or closed by the
    /// upstream) every half timeout, while the pool exists. Needs a tokio
    /// runtime; without one (a pool built in a synchronous test) idle
    /// connections are still expired on checkout and return.
    pub fn start_reaper(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let every = (self.idle_timeout / 2).max(REAP_MIN);
        rt.spawn(reap(Arc::downgrade(self), every));
    }

    /// Discard the idle connections that expired or closed.
    fn reap_once(&self) {
        let now = Instant::now();
        for slot in &self.idle {
            let mut idle = slot.lock().unwrap_or_else(|e| e.into_inner());
            let (keep, expired): (Vec<Idle>, Vec<Idle>) =
                idle.drain(..).partition(|c| self.alive(c, now));
            *idle = keep;
            drop(idle);
            expired.into_iter().for_each(|c| c.conn.discard());
        }
    }

    fn alive(&self, c: &Idle, now: Instant) -> bool {
        now.duration_since(c.since) < self.idle_timeout && !c.conn.sender.is_closed()
    }

    /// An idle connection to endpoint `i` that can take a request now, or
    /// a new one.
    pub async fn checkout(&self, upstream: &Upstream, i: usize) -> Result<Conn, ConnectError> {
        while let Some(mut conn) = self.pop(i) {
            // Usually ready at once; a connection whose last response has
            // only just ended may need a moment.
            let ready = tokio::time::timeout(Duration::from_secs(1), conn.sender.ready()).await;
            if matches!(ready, Ok(Ok(()))) {
                conn.reused = true;
                return Ok(conn);
            }
            conn.discard();
        }
        self.open(upstream, i).await
    }

    /// A new connection to endpoint `i`.
    pub async fn open(&self, upstream: &Upstream, i: usize) -> Result<Conn, ConnectError> {
        let io = upstream.open(i, &upstream.config.endpoints[i]).await?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| ConnectError::Refused(std::io::Error::other(e)))?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP connection ended");
            }
        });
        Ok(Conn {
            sender,
            task,
            endpoint: i,
            reused: false,
        })
    }

    /// Give back a connection after a clean exchange.
    pub fn put(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return conn.discard();
        }
        let Some(slot) = self.idle.get(conn.endpoint) else {
            return conn.discard();
        };
        let mut idle = slot.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Expired ones go first, then the oldest if the stack is full.
        let (keep, expired): (Vec<Idle>, Vec<Idle>) =
            idle.drain(..).partition(|c| self.alive(c, now));
        *idle = keep;
        expired.into_iter().for_each(|c| c.conn.discard());
        if self.max_idle == 0 {
            return conn.discard();
        }
        if idle.len() >= self.max_idle {
            idle.remove(0).conn.discard();
        }
        idle.push(Idle { conn, since: now });
    }

    fn pop(&self, i: usize) -> Option<Conn> {
        let mut idle = self.idle.get(i)?.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while let Some(c) = idle.pop() {
            if self.alive(&c, now) {
                return Some(c.conn);
            }
            c.conn.discard();
        }
        None
    }
}

/// Shortest period of the reaper (a tiny idle timeout in a test must not
/// make it spin).
const REAP_MIN: Duration = Duration::from_millis(50);

/// The reaper: ends with its pool (a reload builds new pools).
async fn reap(pool: Weak<Pool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.reap_once();
    }
}
