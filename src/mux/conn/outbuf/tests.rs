use super::*;
use crate::mux::conn::writer::Writer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Wake;
use std::time::Duration;
use tidegate_mux::codec::KIND_BINARY;
use tokio::io::AsyncReadExt;

use tokio::net::{TcpListener, TcpStream};

/// Counts the allocations of the thread that asked for it (the other
/// tests of this binary run on other threads and are not counted). A
/// `GlobalAlloc` cannot be written without `unsafe`; it only forwards to
/// the system allocator.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A buffer writing to a real loopback socket, its connection task's
/// waker registered, and the application's end of the socket.
async fn buffer(limit: usize) -> (OutBuf, TcpStream, Arc<Counter>) {
    delayed(limit, Duration::ZERO, 64 * 1024).await
}

/// As [`buffer`], with `mux.write_delay` = `delay` and `batch_bytes` = `soon`.
async fn delayed(limit: usize, delay: Duration, soon: usize) -> (OutBuf, TcpStream, Arc<Counter>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let gw = TcpStream::connect(addr).await.expect("connect");
    let (app, _) = listener.accept().await.expect("accept");
    let (_rd, wr) = tokio::io::split(Io::Tcp(gw));
    let out = OutBuf::new(Writer::new(wr, false, 64 * 1024), limit, delay, soon);
    let conn = Arc::new(Counter::default());
    let waker = Waker::from(Arc::clone(&conn));
    assert!(out
        .poll_drive(&mut Context::from_waker(&waker), &mut Hold::default())
        .is_pending());
    (out, app, conn)
}

fn frame(session: u32, body: Bytes) -> Frame {
    Frame::message(session, KIND_BINARY, true, body)
}

fn cost(body: &[u8]) -> usize {
    body.len() + crate::mux::QUEUED_FRAME_COST
}

use crate::io::Io;

/// Frames of several sessions appended before the flusher's flush leave
/// in one WebSocket message, in order; only the first appender flushes.
#[tokio::test]
async fn appends_before_the_flush_leave_in_one_message() {
    let (out, mut app, _) = buffer(1 << 20).await;
    let cx = Context::from_waker(Waker::noop());
    let mut waiting = 0;
    let mut owners = Vec::new();
    for (session, body) in [(1, &b"one"[..]), (2, b"two"), (3, b"three")] {
        let f = frame(session, Bytes::from_static(body));
        let pushed = out.push_data(f, cost(body), &cx, &mut waiting);
        owners.push(pushed.ok().expect("room"));
    }
    assert_eq!(owners, [true, false, false], "the first appender flushes");
    assert_eq!(out.flush(), Flushed::Done);
    assert_eq!(out.charged(), 0, "written frames release their charge");
    let payload = 3 * HEADER + 3 + 3 + 5;
    let mut got = vec![0u8; 2 + 4 + payload];
    app.read_exact(&mut got).await.expect("one message");
    assert_eq!(got[0], 0x82, "one final binary frame");
    assert_eq!(got[1], 0x80 | payload as u8, "masked, all three frames");
    assert_eq!(&got[6 + HEADER..6 + HEADER + 3], b"one");
    assert_eq!(&got[got.len() - 5..], b"three");
}

const HEADER: usize = tidegate_mux::codec::HEADER_LEN;

/// Append `body` for `session`; true if the caller became the flusher.
fn push(out: &OutBuf, session: u32, body: &'static [u8], waiting: &mut u32) -> bool {
    let cx = Context::from_waker(Waker::noop());
    let f = frame(session, Bytes::from_static(body));
    out.push_data(f, cost(body), &cx, waiting)
        .ok()
        .expect("room")
}

/// Poll the connection task's part once, with `conn`'s waker.
fn drive(out: &OutBuf, conn: &Arc<Counter>, hold: &mut Hold) {
    let waker = Waker::from(Arc::clone(conn));
    let polled = out.poll_drive(&mut Context::from_waker(&waker), hold);
    assert!(polled.is_pending(), "the writer is not done");
}

/// Read one masked WebSocket message of `payload` (< 126) bytes.
async fn read_message(app: &mut TcpStream, payload: usize) -> Vec<u8> {
    let mut got = vec![0u8; 2 + 4 + payload];
    app.read_exact(&mut got).await.expect("one message");
    assert_eq!(got[1], 0x80 | payload as u8, "masked, every frame in it");
    got
}

/// A flusher that hands its flush over writes nothing itself: the
/// connection task is woken, and the frames other sessions append before
/// that task runs leave in the same message as the flusher's.
#[tokio::test]
async fn a_handed_over_flush_takes_what_was_appended_before_the_task_ran() {
    let (out, mut app, conn) = buffer(1 << 20).await;
    let mut waiting = 0;
    assert!(
        push(&out, 1, b"one", &mut waiting),
        "the first appender owns the flush"
    );
    out.hand_over();
    assert_eq!(conn.count(), 1, "the connection task is woken once");
    for (session, body) in [(2, &b"two"[..]), (3, b"three")] {
        assert!(
            !push(&out, session, body, &mut waiting),
            "the flush is still owned"
        );
    }
    assert!(out.charged() > 0, "nothing is written before the task runs");
    drive(&out, &conn, &mut Hold::default());
    assert_eq!(out.charged(), 0, "the task wrote everything");
    let got = read_message(&mut app, 3 * HEADER + 3 + 3 + 5).await;
    assert_eq!(&got[6 + HEADER..6 + HEADER + 3], b"one");
    assert_eq!(&got[got.len() - 5..], b"three");
}

/// With `mux.write_delay`, the connection task holds a handed flush until
/// its timer fires; frames appended meanwhile leave in the same message.
#[tokio::test]
async fn a_held_flush_is_written_when_the_delay_ends() {
    let delay = Duration::from_millis(20);
    let (out, mut app, conn) = delayed(1 << 20, delay, 64 * 1024).await;
    let mut waiting = 0;
    assert!(push(&out, 1, b"one", &mut waiting));
    out.hand_over();
    let mut hold = Hold::default();
    drive(&out, &conn, &mut hold);
    assert!(out.charged() > 0, "the task holds the flush for the delay");
    assert!(
        !push(&out, 2, b"two", &mut waiting),
        "the held flush is still owned"
    );
    let woken = conn.count();
    tokio::time::sleep(2 * delay).await;
    assert!(conn.count() > woken, "the delay's end wakes the task");
    drive(&out, &conn, &mut hold);
    assert_eq!(out.charged(), 0, "written when the delay ended");
    let got = read_message(&mut app, 2 * HEADER + 3 + 3).await;
    assert_eq!(&got[got.len() - 3..], b"two");
}

/// A held flush does not wait once a whole `batch_bytes` message is
/// queued: the append that fills it wakes the connection task, which
/// writes at once.
#[tokio::test]
async fn a_held_flush_with_a_full_batch_is_written_at_once() {
    let body: &'static [u8] = &[5u8; 100];
    held_until_full(3 * cost(body), 3, body).await;
}

/// Nor once `HOLD_FRAMES` frames wait, however small.
#[tokio::test]
async fn a_held_flush_with_enough_frames_is_written_at_once() {
    held_until_full(64 * 1024, HOLD_FRAMES as u32, b"x").await;
}

/// Appends `frames` frames of `body` to a flush held for a minute: the
/// last one wakes the connection task, whose next poll writes them all.
async fn held_until_full(soon: usize, frames: u32, body: &'static [u8]) {
    let (out, _app, conn) = delayed(1 << 20, Duration::from_secs(60), soon).await;
    let mut waiting = 0;
    assert!(push(&out, 1, body, &mut waiting));
    out.hand_over();
    let mut hold = Hold::default();
    drive(&out, &conn, &mut hold);
    assert!(out.charged() > 0, "held: one frame is not a full batch");
    for session in 2..frames {
        push(&out, session, body, &mut waiting);
    }
    let woken = conn.count();
    push(&out, frames, body, &mut waiting);
    assert_eq!(
        conn.count(),
        woken + 1,
        "the append that fills the batch wakes the task"
    );
    drive(&out, &conn, &mut hold);
    assert_eq!(out.charged(), 0, "written without waiting for the delay");
}

/// Past `connection_queue_bytes` a frame is refused and its session
/// waits (registered once however often it asks); a write that frees
/// room wakes it.
#[tokio::test]
async fn a_full_buffer_refuses_and_wakes_the_waiter_once_written() {
    let body = Bytes::from(vec![5u8; 400]);
    let limit = 2 * cost(&body) + 10;
    let (out, mut app, _) = buffer(limit).await;
    let session = Arc::new(Counter::default());
    let waker = Waker::from(Arc::clone(&session));
    let cx = Context::from_waker(&waker);
    let mut waiting = 0;
    for _ in 0..2 {
        let pushed = out.push_data(frame(1, body.clone()), cost(&body), &cx, &mut waiting);
        assert!(pushed.is_ok(), "fits");
    }
    for _ in 0..3 {
        let refused = out.push_data(frame(1, body.clone()), cost(&body), &cx, &mut waiting);
        assert!(refused.is_err(), "over the bound");
    }
    assert_eq!(out.lock().space.len(), 1, "one registration per round");
    assert_eq!(session.count(), 0);
    assert_eq!(out.flush(), Flushed::Done);
    assert_eq!(session.count(), 1, "woken when the write freed room");
    let mut got = vec![0u8; 2 * (HEADER + 400)];
    app.read_exact(&mut got[..100]).await.expect("written");
    let again = out.push_data(frame(1, body.clone()), cost(&body), &cx, &mut waiting);
    assert!(matches!(again, Ok(true)), "room again, and flusher again");
    assert_eq!(waiting, 0, "no longer waiting");
}

/// Empty frames are charged too: the byte bound is a frame bound.
#[tokio::test]
async fn empty_frames_fill_the_bound() {
    let limit = 10 * crate::mux::QUEUED_FRAME_COST;
    let (out, _app, _) = buffer(limit).await;
    let cx = Context::from_waker(Waker::noop());
    let mut waiting = 0;
    let fits = (0..20)
        .take_while(|_| {
            out.push_data(frame(1, Bytes::new()), cost(&[]), &cx, &mut waiting)
                .is_ok()
        })
        .count();
    assert_eq!(fits, 10);
}

/// A write the application does not take parks on the connection task:
/// frames appended meanwhile wait, small ones copied out of the buffer
/// they were read into, and the connection task finishes the write once
/// the application reads.
#[tokio::test]
async fn a_blocked_write_parks_on_the_connection_task() {
    let (out, mut app, conn) = buffer(64 << 20).await;
    let cx = Context::from_waker(Waker::noop());
    let mut waiting = 0;
    let big = Bytes::from(vec![1u8; 16 << 20]);
    let pushed = out.push_data(frame(1, big.clone()), cost(&big), &cx, &mut waiting);
    assert!(matches!(pushed, Ok(true)));
    assert_eq!(out.flush(), Flushed::Parked, "16 MiB do not fit the socket");
    let arena = Bytes::from(vec![2u8; 256 * 1024]);
    let small = arena.slice(0..10);
    let large = arena.slice(0..crate::mux::COPY_QUEUED_BELOW);
    for body in [small, large] {
        let pushed = out.push_data(frame(2, body.clone()), cost(&body), &cx, &mut waiting);
        assert!(matches!(pushed, Ok(false)), "parked: only append");
    }
    let starts: Vec<*const u8> = out
        .lock()
        .entries
        .iter()
        .map(|e| match &e.out {
            Out::Frame { body, .. } => body.as_ptr(),
            _ => unreachable!("only frames were queued"),
        })
        .collect();
    assert_ne!(starts[0], arena.as_ptr(), "small and waiting: copied");
    assert_eq!(starts[1], arena.as_ptr(), "large: as it was");
    // The application reads; the socket wakes the connection task, which
    // takes the flush over.
    // 16 MiB frame: a 14-byte masked header; the two waiting ones: 8.
    let total = 14 + HEADER + big.len() + 8 + 2 * HEADER + 10 + crate::mux::COPY_QUEUED_BELOW;
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; total];
        app.read_exact(&mut got).await.map(|_| got.len())
    });
    let waker = Waker::from(Arc::clone(&conn));
    let mut cx = Context::from_waker(&waker);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while busy(&out) {
        assert!(tokio::time::Instant::now() < deadline, "the flush finishes");
        assert!(out.poll_drive(&mut cx, &mut Hold::default()).is_pending());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(conn.count() > 0, "the socket woke the connection task");
    let read = reader.await.expect("reader task");
    assert_eq!(read.ok(), Some(total));
}

fn busy(out: &OutBuf) -> bool {
    let st = out.lock();
    !st.entries.is_empty() || st.flushing
}

/// In the steady state an append and its share of a flush allocate
/// nothing: no channel node, no boxed waiter, no slice vector.
#[tokio::test]
async fn appends_and_flushes_allocate_nothing() {
    let (out, app, _) = buffer(1 << 20).await;
    // The application reads on a thread of its own (not counted).
    let mut app = app.into_std().expect("std socket");
    app.set_nonblocking(false).expect("blocking");
    let drain = std::thread::spawn(move || {
        let mut sink = vec![0u8; 1 << 20];
        while std::io::Read::read(&mut app, &mut sink).is_ok_and(|n| n > 0) {}
    });
    let body = Bytes::from_static(&[7u8; 64]);
    let (mut counted, mut rounds) = (0, 0);
    for round in 0..110 {
        let mut flushed = Flushed::Done;
        let n = allocations(|| {
            let cx = Context::from_waker(Waker::noop());
            let mut waiting = 0;
            let mut owner = false;
            for i in 0..300 {
                let f = frame(i, body.clone());
                owner |= out.push_data(f, cost(&body), &cx, &mut waiting).ok() == Some(true);
            }
            assert!(owner);
            flushed = out.flush();
        });
        // The first rounds grow the deques to their working size; a round
        // whose write blocked copied its waiting payloads (by design).
        if round >= 10 && flushed == Flushed::Done {
            counted += n;
            rounds += 1;
        }
        // A slow reader (a loaded machine) blocked the write: let the
        // runtime see the socket again and finish it, as the connection
        // task would (not counted: the blocked path copies by design).
        while flushed == Flushed::Parked && busy(&out) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            std::future::poll_fn(|cx| {
                let _ = out.poll_drive(cx, &mut Hold::default());
                Poll::Ready(())
            })
            .await;
        }
    }
    assert!(
        rounds >= 50,
        "only {rounds} of 100 rounds were written at once"
    );
    assert_eq!(
        counted, 0,
        "{rounds} flushes of 300 frames allocated {counted} times"
    );
    drop(out);
    drain.join().expect("reader thread");
}
