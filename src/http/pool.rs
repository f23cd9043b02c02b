//! Keep-alive connections to the endpoints of one upstream: a bounded
//! stack of idle HTTP/1.1 connections per endpoint, newest first, each
//! dropped after `pool_idle_timeout` unused — by a reaper task
//! ([`Pool::start_reaper`]) even when no request comes to look, so an idle
//! gateway does not hold sockets the upstream is waiting to see closed.
//! Connections are opened with [`Upstream::open`], so a failed connect is
//! counted (and reported for passive health) exactly like a WebSocket one.
//!
//! An idle connection is the bare socket ([`Conn`]): no task drives it and
//! no buffer waits on it. It is registered with the I/O driver of the
//! worker thread that opened it (`runtime.layout = "thread_per_core"`), so
//! it is kept and handed out per worker: a request on worker B never gets
//! worker A's socket, whose every readiness event would otherwise pass
//! through A's thread and wake B's task from there. Whether the upstream
//! closed it meanwhile is seen when it is taken out or reaped
//! ([`Conn::is_quiet`]).
//!
//! A connection goes back only after a clean exchange (request body sent
//! whole, response read to its end, nothing more on the wire); anything
//! else — a cancelled request, a timeout, an error — drops it, which
//! closes the socket, so a half-used connection never serves another
//! client.

pub use super::upstream_conn::Conn;
use crate::upstream::{ConnectError, Upstream};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The pool of one upstream.
pub struct Pool {
    /// Per endpoint, idle connections by worker (grown as workers put
    /// connections back), newest last. `max_idle` bounds the endpoint's
    /// total over every worker.
    idle: Vec<Mutex<Vec<Vec<Idle>>>>,
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
            let mut workers = slot.lock().unwrap_or_else(|e| e.into_inner());
            for idle in workers.iter_mut() {
                idle.retain_mut(|c| self.alive(c, now));
            }
        }
    }

    /// Young enough and still silent; a connection found dead here is
    /// dropped (closed) by the caller's `retain_mut` or `pop`.
    fn alive(&self, c: &mut Idle, now: Instant) -> bool {
        now.duration_since(c.since) < self.idle_timeout && c.conn.is_quiet()
    }

    /// An idle connection to endpoint `i` that can take a request now, or
    /// a new one.
    pub async fn checkout(&self, upstream: &Upstream, i: usize) -> Result<Conn, ConnectError> {
        if let Some(mut conn) = self.pop(i) {
            conn.reused = true;
            return Ok(conn);
        }
        // Boxed: a new connection is the rare case, and its connect (and
        // TLS) future would otherwise be part of every exchange's future,
        // which an idle event stream holds for its whole life.
        Box::pin(self.open(upstream, i)).await
    }

    /// A new connection to endpoint `i`.
    pub async fn open(&self, upstream: &Upstream, i: usize) -> Result<Conn, ConnectError> {
        let io = upstream.open(i, &upstream.config.endpoints[i]).await?;
        Ok(Conn::new(io, i))
    }

    /// Give back a connection after a clean exchange.
    pub fn put(&self, mut conn: Conn) {
        if !conn.is_quiet() {
            return conn.discard();
        }
        let Some(slot) = self.idle.get(conn.endpoint) else {
            return conn.discard();
        };
        if self.max_idle == 0 {
            return conn.discard();
        }
        let mut workers = slot.lock().unwrap_or_else(|e| e.into_inner());
        if workers.len() <= conn.worker {
            workers.resize_with(conn.worker + 1, Vec::new);
        }
        let now = Instant::now();
        // Expired ones go first; then, at the endpoint's bound, the oldest
        // of the worker holding the most. Giving up one of another worker's
        // rather than the one coming back keeps a worker whose load grew
        // from opening a connection per request while another worker's
        // connections, idle since a burst, hold the whole bound.
        let idle = &mut workers[conn.worker];
        idle.retain_mut(|c| self.alive(c, now));
        let total: usize = workers.iter().map(Vec::len).sum();
        if total >= self.max_idle {
            let own = conn.worker;
            let fullest = (0..workers.len())
                .max_by_key(|&w| (workers[w].len(), w == own))
                .unwrap_or(own);
            if !workers[fullest].is_empty() {
                workers[fullest].remove(0).conn.discard();
            }
        }
        workers[conn.worker].push(Idle { conn, since: now });
    }

    /// The newest live idle connection to endpoint `i` that the calling
    /// worker opened.
    fn pop(&self, i: usize) -> Option<Conn> {
        let mut workers = self.idle.get(i)?.lock().unwrap_or_else(|e| e.into_inner());
        let idle = workers.get_mut(crate::server::workers::current())?;
        let now = Instant::now();
        while let Some(mut c) = idle.pop() {
            if self.alive(&mut c, now) {
                return Some(c.conn);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Io;
    use tokio::net::{TcpListener, TcpStream};

    /// A pooled connection opened by `worker`, and its far end (kept open,
    /// so the connection stays quiet and reusable).
    async fn conn(listener: &TcpListener, worker: usize) -> (Conn, TcpStream) {
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        let mut c = Conn::new(Io::Tcp(near), 0);
        c.worker = worker;
        (c, far)
    }

    fn held(pool: &Pool) -> Vec<usize> {
        let workers = pool.idle[0].lock().unwrap();
        workers.iter().map(Vec::len).collect()
    }

    /// A worker hands out only its own connections; at the endpoint's
    /// bound a connection coming back to a worker with none displaces one
    /// of the fullest worker's, not itself (else that worker would open
    /// a connection per request while the others' idle ones hold the
    /// bound).
    #[tokio::test]
    async fn each_worker_gets_its_own_and_the_bound_is_shared() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(1, 2, Duration::from_secs(60));
        let mut far = Vec::new();
        for _ in 0..2 {
            let (c, f) = conn(&listener, 1).await;
            pool.put(c);
            far.push(f);
        }
        assert_eq!(held(&pool), [0, 2]);
        // This test's thread is worker 0: worker 1's are not for it.
        assert!(pool.pop(0).is_none());
        let (c, f) = conn(&listener, 0).await;
        far.push(f);
        pool.put(c);
        assert_eq!(held(&pool), [1, 1], "worker 1's oldest made room");
        let back = pool.pop(0).expect("worker 0's own connection");
        assert_eq!(back.worker, 0);
        assert_eq!(held(&pool), [0, 1]);
    }
}
