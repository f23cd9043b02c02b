//! The publisher of the fan-out benchmark (`loadtest/bench-fanout.sh`,
//! issue #17): every client that connects joins one room, and the
//! application broadcasts RATE messages per second of SIZE bytes to it.
//!
//! ```text
//! cargo run --release -p tidegate-mux --example fanout -- \
//!     --listen 127.0.0.1:0 --mode publish --rate 20 --size 128
//! ```
//!
//! Modes, the same broadcast three ways:
//! - `publish`: a mux application whose [`Room`] uses extension `fanout`
//!   — one PUBLISH per broadcast, the gateway delivers;
//! - `sessions`: the same mux application declining `fanout`
//!   (`Config::fanout = false`), so the room sends one MESSAGE per session;
//! - `passthrough`: a plain WebSocket server (fastwebsockets), one
//!   connection per client, one frame per socket per broadcast.
//!
//! Each payload starts with a stamp the load generator reads (`tidegate-
//! loadtest fanout`): the broadcast's sequence number and its send time in
//! nanoseconds since the UNIX epoch, both u64 big-endian; zero padding to
//! SIZE. Broadcasts run only while at least `--min-subscribers` clients
//! (default: one) are connected, so a benchmark's ramp of thousands of
//! connections is not measured under a growing broadcast load. Prints
//! `tidegate-mux fanout listening addr=IP:PORT`; runs until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::Incoming as Body;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tidegate_mux::server::{Config, Event, MuxServer, Room};
use tidegate_mux::AcceptBody;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Bytes of the stamp at the start of each payload.
const STAMP_LEN: usize = 16;
/// Broadcasts a slow passthrough connection may fall behind before it
/// skips some (a bounded queue per socket).
const PASSTHROUGH_BACKLOG: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Publish,
    Sessions,
    Passthrough,
}

struct Args {
    listen: String,
    mode: Mode,
    rate: f64,
    size: usize,
    /// Broadcast only while at least this many clients are connected.
    min_subscribers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:0".into(),
        mode: Mode::Publish,
        rate: 20.0,
        size: 128,
        min_subscribers: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => a.listen = value,
            "--mode" => {
                a.mode = match value.as_str() {
                    "publish" => Mode::Publish,
                    "sessions" => Mode::Sessions,
                    "passthrough" => Mode::Passthrough,
                    other => return Err(format!("unknown mode {other:?}")),
                }
            }
            "--rate" => a.rate = value.parse().map_err(|_| "bad --rate")?,
            "--size" => a.size = value.parse().map_err(|_| "bad --size")?,
            "--min-subscribers" => {
                a.min_subscribers = value.parse().map_err(|_| "bad --min-subscribers")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !(a.rate > 0.0 && a.rate <= 100_000.0) || a.size < STAMP_LEN {
        return Err(format!(
            "--rate in (0, 100000], --size at least {STAMP_LEN}"
        ));
    }
    Ok(a)
}

// One thread: the benchmark pins the application to one core, and a
// publish is then one timer wake-up and one write on the same thread — no
// hand-over to a writer thread and back (issue #17's application-side
// figure).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout: {e}\nusage: fanout [--listen ADDR] [--mode publish|sessions|passthrough] [--rate N] [--size BYTES] [--min-subscribers N]");
            return std::process::ExitCode::from(64);
        }
    };
    let result = match args.mode {
        Mode::Passthrough => passthrough(&args).await,
        Mode::Publish | Mode::Sessions => mux(&args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanout: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn announce(addr: SocketAddr) -> std::io::Result<()> {
    println!("tidegate-mux fanout listening addr={addr}");
    std::io::stdout().flush()
}

/// One stamped payload of `size` bytes.
fn payload(seq: u64, size: usize) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(seq);
    b.put_u64(now);
    b.resize(size, 0);
    b.freeze()
}

/// Calls `send(payload)` RATE times a second while `active()` (enough
/// subscribers), on a task of its own.
///
/// Spawned rather than run as `main`'s own future: on a current-thread
/// runtime a wake-up of the `block_on` future goes through the driver's
/// eventfd (one `write` and one more `epoll_wait` per tick), a spawned
/// task's through the local run queue. The ticks come from a [`Ticker`]
/// (a timerfd), not `tokio::time::interval`: tokio's timer wheel files a
/// 50 ms deadline that crosses a 64 ms boundary of its clock on the
/// second level, and the driver then wakes once more at that boundary to
/// move it down — about 1.8 wake-ups per tick instead of one, each a
/// context switch that costs the application more than its publish.
async fn broadcast_loop(
    args: &Args,
    active: impl Fn() -> bool + Send + 'static,
    mut send: impl FnMut(Bytes) + Send + 'static,
) -> std::io::Result<()> {
    let mut ticker = Ticker::new(Duration::from_secs_f64(1.0 / args.rate))?;
    let size = args.size;
    let task = tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            // A late tick is sent late, not twice (the timerfd counts the
            // missed ones; they are skipped): the stamp says when.
            ticker.tick().await?;
            if active() {
                send(payload(seq, size));
                seq += 1;
            }
        }
    });
    task.await.map_err(std::io::Error::other)?
}

/// A periodic timer on a timerfd: one epoll event per period, one `read`
/// per tick (Linux; the examples run where the gateway does).
struct Ticker {
    fd: AsyncFd<OwnedFd>,
}

impl Ticker {
    fn new(period: Duration) -> std::io::Result<Ticker> {
        use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags};
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let every = period.try_into().map_err(std::io::Error::other)?;
        let spec = Itimerspec {
            it_interval: every,
            it_value: every,
        };
        rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays
        // open, and the same one, for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Ticker { fd })
    }

    /// Wait for the next expiry; returns how many passed since the last
    /// call (more than one when the task was late).
    async fn tick(&mut self) -> std::io::Result<u64> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            match rustix::io::read(ready.get_inner(), &mut buf) {
                // The read took every expiry. Clearing now spares the next
                // tick a read that would only say EAGAIN; tokio clears
                // only the readiness this guard saw, so an expiry the
                // driver reported meanwhile is kept.
                Ok(8) => {
                    ready.clear_ready();
                    return Ok(u64::from_ne_bytes(buf));
                }
                Ok(_) => return Err(std::io::Error::other("short read from timerfd")),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn lock(room: &Mutex<Room>) -> MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|p| p.into_inner())
}

/// `publish` and `sessions`: the same mux application, with and without
/// extension `fanout`.
async fn mux(args: &Args) -> std::io::Result<()> {
    let config = Config {
        fanout: args.mode == Mode::Publish,
        ..Config::default()
    };
    let server = Arc::new(MuxServer::bind_with(args.listen.as_str(), config).await?);
    announce(server.local_addr())?;
    let room = Arc::new(Mutex::new(Room::new("bench")));
    let accepting = {
        let (server, room) = (server.clone(), room.clone());
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let mut session = incoming.accept(AcceptBody::default());
                lock(&room).join(session.sender());
                let room = room.clone();
                tokio::spawn(async move {
                    // Subscribers only listen; read until the close.
                    while let Some(event) = session.recv().await {
                        if let Event::Closed(_) = event {
                            break;
                        }
                    }
                    lock(&room).leave(session.id());
                });
            }
        })
    };
    let min = args.min_subscribers.max(1);
    let r = broadcast_loop(
        args,
        {
            let room = room.clone();
            move || lock(&room).len() >= min
        },
        move |p| {
            lock(&room).broadcast_binary(p, None);
        },
    )
    .await;
    accepting.abort();
    r
}

/// `passthrough`: one WebSocket per client; every broadcast is one frame
/// per socket, each socket's task writing it.
async fn passthrough(args: &Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen.as_str()).await?;
    announce(listener.local_addr()?)?;
    let (tx, _) = broadcast::channel::<Bytes>(PASSTHROUGH_BACKLOG);
    let accepting = {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let rx = tx.subscribe();
                        async move { Ok::<_, std::convert::Infallible>(upgrade(req, rx)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        })
    };
    let min = args.min_subscribers.max(1);
    let r = broadcast_loop(
        args,
        {
            let tx = tx.clone();
            move || tx.receiver_count() >= min
        },
        move |p| {
            let _ = tx.send(p);
        },
    )
    .await;
    accepting.abort();
    r
}

fn upgrade(mut req: Request<Body>, rx: broadcast::Receiver<Bytes>) -> Response<Empty<Bytes>> {
    let Ok((response, fut)) = fastwebsockets::upgrade::upgrade(&mut req) else {
        let mut r = Response::new(Empty::new());
        *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return r;
    };
    tokio::spawn(async move {
        if let Ok(ws) = fut.await {
            subscriber(ws, rx).await;
        }
    });
    response
}

/// Write every broadcast to one socket until the client closes.
async fn subscriber(
    ws: fastwebsockets::WebSocket<TokioIo<hyper::upgrade::Upgraded>>,
    mut rx: broadcast::Receiver<Bytes>,
) {
    let (mut read, mut write) = ws.split(tokio::io::split);
    let reader = async {
        // Nothing to read but the close (pings are answered by the
        // fastwebsockets read half's obligated sends, ignored here).
        let mut ignore = |_: Frame<'_>| std::future::ready(Ok::<(), std::convert::Infallible>(()));
        loop {
            match read.read_frame(&mut ignore).await {
                Ok(f) if f.opcode == OpCode::Close => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let writer = async {
        loop {
            match rx.recv().await {
                Ok(p) => {
                    let frame = Frame::binary(Payload::Borrowed(&p));
                    if write.write_frame(frame).await.is_err() {
                        return;
                    }
                }
                // Too slow: skip what it missed, as the mux room would.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    };
    tokio::select! {
        // The client closed (or broke): stop writing.
        () = reader => {}
        // The broadcast ended or a write failed.
        () = writer => {}
    }
}
