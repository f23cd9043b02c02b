//! Direct delivery to real sockets (`Subscriber::deliver`, the
//! cross-worker batch, `[fanout] send_batch`): what reaches a client's end
//! of a loopback pair, and what is left to the session.

use super::*;
use std::task::{Context, Waker};

/// A client socket pair on loopback: the gateway's side as the session
/// holds it, and the client's end to read from.
async fn client_pair() -> (crate::io::Io, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (gateway_side, _) = listener.accept().await.expect("accept");
    (crate::io::Io::Tcp(gateway_side), client)
}

/// A current-thread runtime, as each gateway worker runs.
fn worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn read_exactly(client: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; n];
    let read = client.read_exact(&mut buf);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("frame within 10 s")
        .expect("read");
    buf
}

/// On a current-thread worker, an idle session's frame goes straight to
/// its socket: nothing is queued, the delivery is counted; a session that
/// is not idle (`clear` false) gets it through its queue.
#[tokio::test(flavor = "current_thread")]
async fn an_idle_subscriber_on_this_thread_is_written_directly() {
    let h = hub(Limits::default());
    let sub = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    sub.subscribe(b"room.1").unwrap();
    let (io, mut client) = client_pair().await;
    sub.attach(&io);
    sub.set_clear(true);
    assert_eq!(
        h.publish(b"room.1", true, b"hello", None, Source::Mux),
        Ok(1)
    );
    assert_eq!(read_exactly(&mut client, 7).await, b"\x81\x05hello");
    assert!(drain(&sub).is_empty(), "written, not queued");
    assert_eq!(sub.take_rest(), (None, 1), "one frame sent directly");
    assert_eq!(h.metrics.deliveries.get(), 1);

    sub.set_clear(false);
    assert_eq!(
        h.publish(b"room.1", true, b"queued", None, Source::Mux),
        Ok(1)
    );
    assert_eq!(drain(&sub), vec![b"queued".to_vec()]);
    // Gone: the duplicate descriptor is given back, nothing is written.
    sub.set_clear(true);
    sub.leave();
    assert_eq!(
        h.publish(b"room.1", true, b"late", None, Source::Mux),
        Ok(0)
    );
    drop(io);
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let eof = client.read_to_end(&mut rest);
    tokio::time::timeout(std::time::Duration::from_secs(10), eof)
        .await
        .expect("EOF within 10 s: no descriptor kept the socket open")
        .expect("EOF");
    assert!(
        rest.is_empty(),
        "the socket closed with its session: {rest:?}"
    );
}

/// On a work-stealing runtime the session's task may run on another
/// thread while a publish writes: no direct writes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_direct_writes_on_a_work_stealing_runtime() {
    let h = hub(Limits::default());
    let sub = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    sub.subscribe(b"room.1").unwrap();
    let (io, _client) = client_pair().await;
    sub.attach(&io);
    sub.set_clear(true);
    assert_eq!(
        h.publish(b"room.1", true, b"hello", None, Source::Mux),
        Ok(1)
    );
    assert_eq!(drain(&sub), vec![b"hello".to_vec()]);
}

/// Two current-thread workers: a publish on one reaches the other's idle
/// subscriber through that worker's batch — written by its own worker, in
/// publish order — and is counted once per delivery.
#[test]
fn a_publish_reaches_another_workers_subscriber_through_its_batch() {
    let h = hub(Limits::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let remote = {
        let h = Arc::clone(&h);
        std::thread::spawn(move || {
            worker_runtime().block_on(async move {
                let sub = h.subscriber(Some(2), access(SlowPolicy::DropOldest, 1 << 20));
                sub.subscribe(b"room.1").unwrap();
                let (io, mut client) = client_pair().await;
                sub.attach(&io);
                sub.set_clear(true);
                ready_tx.send(()).expect("test thread waits");
                let got = read_exactly(&mut client, 3 * 10).await;
                (got, sub.take_rest())
            })
        })
    };
    let rt = worker_runtime();
    let want: Vec<u8> = (0..10u8).flat_map(|i| [0x81, 1, i]).collect();
    rt.block_on(async {
        let sub = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
        sub.subscribe(b"room.1").unwrap();
        let (io, mut client) = client_pair().await;
        sub.attach(&io);
        sub.set_clear(true);
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the other worker's subscriber within 30 s");
        for i in 0..10u8 {
            let n = h.publish(b"room.1", true, &[i], None, Source::Mux);
            assert_eq!(n, Ok(2), "one here, one handed to the other worker");
        }
        assert_eq!(read_exactly(&mut client, 3 * 10).await, want);
    });
    let (got, rest) = remote.join().expect("the other worker");
    assert_eq!(got, want, "every frame, in order, on the other worker");
    assert_eq!(rest, (None, 10), "written directly by the other worker");
    assert_eq!(h.metrics.deliveries.get(), 20);
}

/// A socket that fills up: the sends that come back short or refused
/// leave their tail and the later frames to the session, and the client
/// still reads every frame whole and in order — with plain sends and with
/// io_uring batches (`uring.rs`) alike.
#[tokio::test(flavor = "current_thread")]
async fn a_full_socket_gets_the_rest_then_the_queue_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SUBS: usize = 3;
    const FRAMES: usize = 200;
    for mode in [SendBatch::None, SendBatch::IoUring] {
        let h = hub(Limits {
            send_batch: mode,
            ..Limits::default()
        });
        let payload = |i: usize| vec![b'a' + (i % 26) as u8; 60_000 + i];
        let mut pairs = Vec::new();
        for key in 0..SUBS {
            let sub = h.subscriber(Some(key as u32), access(SlowPolicy::DropOldest, 64 << 20));
            sub.subscribe(b"big").unwrap();
            let (io, client) = client_pair().await;
            sub.attach(&io);
            sub.set_clear(true);
            pairs.push((sub, io, client));
        }
        // Nobody reads while these go out: the sockets fill.
        for i in 0..FRAMES {
            assert_eq!(
                h.publish(b"big", false, &payload(i), None, Source::Mux),
                Ok(SUBS)
            );
        }
        let expected: Vec<u8> = (0..FRAMES)
            .flat_map(|i| SharedFrame::encode(false, &payload(i)).wire().to_vec())
            .collect();
        for (sub, io, mut client) in pairs {
            let reading = tokio::spawn(async move {
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.expect("read");
                got
            });
            // The session's part: the tail first, then the queue.
            let (rest, sent) = sub.take_rest();
            let mut cx = Context::from_waker(Waker::noop());
            let mut queued = Vec::new();
            while let Next::Frame(f) = sub.next(&mut cx) {
                queued.push(f);
            }
            assert!(
                sent < FRAMES as u64 && !queued.is_empty(),
                "{mode:?}: the socket filled ({sent} sent directly)"
            );
            let crate::io::Io::Tcp(mut tcp) = io else {
                unreachable!("client_pair gives TCP")
            };
            if let Some(rest) = rest {
                tcp.write_all(&rest).await.expect("write the rest");
            }
            for f in queued {
                tcp.write_all(f.wire()).await.expect("write a queued frame");
            }
            sub.leave();
            drop(tcp);
            let got = tokio::time::timeout(std::time::Duration::from_secs(30), reading)
                .await
                .expect("the client reads to the end within 30 s")
                .expect("reader task");
            assert!(
                got == expected,
                "{mode:?}: every frame whole and in order ({} of {} bytes)",
                got.len(),
                expected.len()
            );
        }
    }
}

/// One subscriber to `room.1`, idle on this thread, with its client's end;
/// broadcasts go through io_uring batches.
async fn one_batched_subscriber() -> (
    Arc<Hub>,
    Arc<Subscriber>,
    crate::io::Io,
    tokio::net::TcpStream,
) {
    let h = hub(Limits {
        send_batch: SendBatch::IoUring,
        ..Limits::default()
    });
    let sub = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    sub.subscribe(b"room.1").unwrap();
    let (io, client) = client_pair().await;
    sub.attach(&io);
    sub.set_clear(true);
    (h, sub, io, client)
}

/// Run a test on a thread of its own: a ring fault leaves the thread's
/// ring off, which must not reach the tests after it (`--test-threads 1`
/// runs them all on one thread).
fn on_own_thread<F: std::future::Future<Output = ()> + 'static>(test: fn() -> F) {
    std::thread::spawn(move || worker_runtime().block_on(test()))
        .join()
        .expect("the test thread");
}

/// A kernel that refuses the ring (`uring.rs`): broadcasts go one send at
/// a time, every frame arrives once, and the fallback is counted.
#[test]
fn a_refused_ring_sends_one_by_one() {
    on_own_thread(|| async {
        let (h, sub, _io, mut client) = one_batched_subscriber().await;
        uring::inject(uring::Fault::Refused);
        for text in [b"a", b"b"] {
            assert_eq!(h.publish(b"room.1", true, text, None, Source::Mux), Ok(1));
        }
        assert_eq!(read_exactly(&mut client, 6).await, b"\x81\x01a\x81\x01b");
        assert_eq!(sub.take_rest(), (None, 2), "both sent directly");
        assert_eq!(h.metrics.send_batch_fallbacks.get(), 2);
    });
}

/// A ring that fails before the kernel took the batch: the batch's frame
/// is sent plainly in its place, once, and later broadcasts go one by one.
#[test]
fn a_batch_the_kernel_never_took_is_sent_plainly_once() {
    on_own_thread(|| async {
        let (h, sub, _io, mut client) = one_batched_subscriber().await;
        let publish = |text: &[u8]| h.publish(b"room.1", true, text, None, Source::Mux);
        assert_eq!(publish(b"a"), Ok(1), "through the ring");
        assert_eq!(h.metrics.send_batch_fallbacks.get(), 0);
        uring::inject(uring::Fault::Untaken);
        assert_eq!(publish(b"b"), Ok(1));
        assert_eq!(publish(b"c"), Ok(1));
        let want = b"\x81\x01a\x81\x01b\x81\x01c";
        assert_eq!(read_exactly(&mut client, want.len()).await, want);
        assert!(drain(&sub).is_empty(), "nothing queued to repeat");
        assert_eq!(sub.take_rest(), (None, 3));
        assert_eq!(h.metrics.send_batch_fallbacks.get(), 2);
        assert_eq!(h.metrics.lost.get(), 0);
    });
}

/// A ring that fails after the kernel took the batch, its completions
/// lost: whether the frame went out is unknown, so it is not resent; the
/// session must close with 1011, and gets nothing more.
#[test]
fn a_batch_whose_outcome_is_lost_closes_its_session_with_1011() {
    on_own_thread(|| async {
        let (h, sub, _io, mut client) = one_batched_subscriber().await;
        uring::inject(uring::Fault::Unfinished);
        assert_eq!(
            h.publish(b"room.1", true, b"a", None, Source::Mux),
            Ok(0),
            "not counted as reached"
        );
        // The kernel did send it here; the gateway cannot know that.
        assert_eq!(read_exactly(&mut client, 3).await, b"\x81\x01a");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(sub.next(&mut cx), Next::Overflowed));
        assert_eq!(sub.closing(), Closing::Lost);
        assert_eq!(
            (sub.closing().code(), sub.closing().reason()),
            (1011, "published frame lost")
        );
        assert_eq!(h.metrics.lost.get(), 1);
        assert_eq!(h.metrics.slow_closes.get(), 0);
        assert_eq!(h.publish(b"room.1", true, b"b", None, Source::Mux), Ok(0));
        assert!(drain(&sub).is_empty());
    });
}
