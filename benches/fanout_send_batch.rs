//! Issue #17: is one `io_uring_enter` per batch of broadcast sends cheaper
//! than one `send` system call per subscriber? Measured before building it
//! into the delivery path (docs/performance.md, "Batched sends through
//! io_uring").
//!
//! Like `benches/fanout_send_floor.py`: the sender (this thread, pinned to
//! core 0) holds N loopback TCP connections whose peers a reader thread
//! (pinned to core 1) reads through epoll, as the load generator does. A
//! round sends one FRAME-byte WebSocket frame to every connection, then
//! sleeps so the reader catches up. The variants take turns round by round
//! (their order rotating), so load from elsewhere on the machine falls on
//! all of them alike:
//!
//! - `send`: a loop of non-blocking `send(MSG_DONTWAIT | MSG_NOSIGNAL)`,
//!   what direct delivery does today;
//! - `uring-B`: `IORING_OP_SEND` entries (same flags) pointing at the one
//!   shared frame, B per `submit_and_wait(B)`, completions reaped;
//! - `uring-256-fixed`: the same with the sockets registered as fixed
//!   files (no file lookup per send), for comparison.
//!
//! Measured: the sender thread's CPU (`getrusage(RUSAGE_THREAD)`, user and
//! system apart) over its rounds, per send. On loopback the send also runs
//! the receiver's TCP input in the sender's context, as in the gateway.
//!
//! Run (release): `cargo bench --bench fanout_send_batch -- [N] [ROUNDS] [FRAME]`
//! (defaults 5000 60 136). Loopback only; N + a few descriptors per side.

use io_uring::{opcode, types, IoUring};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// How one variant writes a round's frames.
enum Sender {
    Plain,
    Uring {
        ring: Box<IoUring>,
        batch: usize,
        fixed: bool,
    },
}

/// One variant's account over all its rounds.
struct Tally {
    name: String,
    sender: Sender,
    user_us: f64,
    sys_us: f64,
    sends: u64,
    /// Sends that wrote fewer bytes than the frame (or none: EAGAIN).
    refused: u64,
    walls_ms: Vec<f64>,
}

fn pin(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only
    // read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// (user, system) CPU of the calling thread, in µs.
fn thread_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// Reads every connection through level-triggered epoll until `stop`.
fn reader(conns: Vec<TcpStream>, stop: Arc<AtomicBool>) {
    pin(1);
    // SAFETY: plain epoll calls on descriptors this thread owns.
    unsafe {
        let ep = libc::epoll_create1(0);
        for c in &conns {
            c.set_nonblocking(true)
                .expect("set_nonblocking on a fresh socket");
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: c.as_raw_fd() as u64,
            };
            libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.as_raw_fd(), &mut ev);
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100);
            for ev in events.iter().take(n.max(0) as usize) {
                let fd = ev.u64 as RawFd;
                libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            }
        }
        libc::close(ep);
    }
}

fn send_plain(fds: &[RawFd], frame: &[u8]) -> u64 {
    let mut refused = 0;
    for &fd in fds {
        // SAFETY: `frame` outlives the call; `fd` is an open socket.
        let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), SEND_FLAGS) };
        if n != frame.len() as isize {
            refused += 1;
        }
    }
    refused
}

fn send_uring(ring: &mut IoUring, batch: usize, fixed: bool, fds: &[RawFd], frame: &[u8]) -> u64 {
    let mut refused = 0;
    for (c, chunk) in fds.chunks(batch).enumerate() {
        for (i, &fd) in chunk.iter().enumerate() {
            let slot = (c * batch + i) as u32;
            let entry = if fixed {
                opcode::Send::new(types::Fixed(slot), frame.as_ptr(), frame.len() as u32)
            } else {
                opcode::Send::new(types::Fd(fd), frame.as_ptr(), frame.len() as u32)
            };
            let entry = entry.flags(SEND_FLAGS).build().user_data(slot as u64);
            // SAFETY: the frame outlives the batch: submit_and_wait below
            // returns only when every entry of the batch has completed.
            unsafe { ring.submission().push(&entry) }.expect("ring sized for one batch");
        }
        ring.submit_and_wait(chunk.len()).expect("io_uring_enter");
        for cqe in ring.completion() {
            if cqe.result() != frame.len() as i32 {
                refused += 1;
            }
        }
    }
    refused
}

fn main() {
    // `cargo bench` passes `--bench`; take the first numeric arguments.
    let args: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(5000);
    let rounds = args.get(1).copied().unwrap_or(60);
    let size = args.get(2).copied().unwrap_or(136).max(4);
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local_addr");
    let mut ours = Vec::with_capacity(n);
    let mut theirs = Vec::with_capacity(n);
    for _ in 0..n {
        theirs.push(TcpStream::connect(addr).expect("connect loopback"));
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        ours.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader_stop = stop.clone();
    let reader = std::thread::spawn(move || reader(theirs, reader_stop));
    pin(0);
    let fds: Vec<RawFd> = ours.iter().map(|s| s.as_raw_fd()).collect();
    let mut frame = vec![b'x'; size];
    frame[0] = 0x81;
    frame[1] = 0x7e;
    frame[2..4].copy_from_slice(&((size - 4) as u16).to_be_bytes());

    let mut tallies = vec![Tally::new("send", Sender::Plain)];
    for batch in [64, 256, 1024] {
        let ring = IoUring::new(batch as u32).expect("io_uring_setup");
        tallies.push(Tally::new(
            &format!("uring-{batch}"),
            Sender::Uring {
                ring: Box::new(ring),
                batch,
                fixed: false,
            },
        ));
    }
    let ring = IoUring::new(256).expect("io_uring_setup");
    ring.submitter()
        .register_files(&fds)
        .expect("register files");
    tallies.push(Tally::new(
        "uring-256-fixed",
        Sender::Uring {
            ring: Box::new(ring),
            batch: 256,
            fixed: true,
        },
    ));

    // Warm-up: the first sends grow the socket buffers.
    for t in &mut tallies {
        t.round(&fds, &frame);
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in &mut tallies {
        *t = Tally::new(
            &t.name.clone(),
            std::mem::replace(&mut t.sender, Sender::Plain),
        );
    }
    let k = tallies.len();
    for r in 0..rounds {
        for j in 0..k {
            tallies[(r + j) % k].round(&fds, &frame);
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread");

    println!(
        "{n} connections, {rounds} rounds per variant, {size}-byte frame, sender on core 0, reader on core 1 (epoll)"
    );
    let base = tallies[0].per_send();
    for t in &mut tallies {
        t.walls_ms.sort_by(f64::total_cmp);
        let (u, s) = (t.user_us / t.sends as f64, t.sys_us / t.sends as f64);
        println!(
            "{:16} CPU per send {:.3} us (user {:.3}, sys {:.3}) = {:.3}x send; round wall p50 {:.1} ms; refused/short {}",
            t.name,
            u + s,
            u,
            s,
            (u + s) / base,
            t.walls_ms[t.walls_ms.len() / 2],
            t.refused
        );
    }
}

impl Tally {
    fn new(name: &str, sender: Sender) -> Tally {
        Tally {
            name: name.to_string(),
            sender,
            user_us: 0.0,
            sys_us: 0.0,
            sends: 0,
            refused: 0,
            walls_ms: Vec::new(),
        }
    }

    fn round(&mut self, fds: &[RawFd], frame: &[u8]) {
        let (u0, s0) = thread_cpu();
        let start = Instant::now();
        self.refused += match &mut self.sender {
            Sender::Plain => send_plain(fds, frame),
            Sender::Uring { ring, batch, fixed } => send_uring(ring, *batch, *fixed, fds, frame),
        };
        self.walls_ms.push(start.elapsed().as_secs_f64() * 1e3);
        let (u1, s1) = thread_cpu();
        self.user_us += u1 - u0;
        self.sys_us += s1 - s0;
        self.sends += fds.len() as u64;
    }

    fn per_send(&self) -> f64 {
        (self.user_us + self.sys_us) / self.sends as f64
    }
}
