use super::*;
use std::sync::Mutex;
use std::task::{Context, Waker};

fn hub(limits: Limits) -> Arc<Hub> {
    let registry = prometheus::Registry::new();
    Hub::new(limits, metrics::FanoutMetrics::new(&registry))
}

fn access(policy: SlowPolicy, queue_bytes: usize) -> Arc<Access> {
    Arc::new(Access::new(policy, queue_bytes, Arc::from(vec![]), None))
}

fn drain(sub: &Subscriber) -> Vec<Vec<u8>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Next::Frame(f) = sub.next(&mut cx) {
        out.push(f.payload().to_vec());
    }
    out
}

#[test]
fn publish_reaches_every_subscriber_but_except_in_order() {
    let h = hub(Limits::default());
    let subs: Vec<_> = (1..=3)
        .map(|id| h.subscriber(Some(id), access(SlowPolicy::DropOldest, 1 << 20)))
        .collect();
    for s in &subs {
        assert_eq!(s.subscribe(b"room.1"), Ok(true));
    }
    assert_eq!(subs[0].subscribe(b"room.1"), Ok(false), "twice is once");
    for i in 0..10u8 {
        let n = h.publish(b"room.1", true, &[i], Some(2), Source::Mux);
        assert_eq!(n, Ok(2));
    }
    let want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
    assert_eq!(drain(&subs[0]), want);
    assert!(drain(&subs[1]).is_empty(), "session 2 was excepted");
    assert_eq!(drain(&subs[2]), want);
    assert_eq!(h.publish(b"nobody", true, b"x", None, Source::Http), Ok(0));
    assert_eq!(h.metrics.deliveries.get(), 20);
}

#[test]
fn gauges_return_to_zero_on_unsubscribe_and_leave() {
    let h = hub(Limits::default());
    let a = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    let b = h.subscriber(None, access(SlowPolicy::DropOldest, 1 << 20));
    assert!(b.key > u64::from(u32::MAX));
    a.subscribe(b"x").unwrap();
    a.subscribe(b"y").unwrap();
    b.subscribe(b"x").unwrap();
    assert_eq!(h.metrics.subscriptions.get(), 3);
    assert_eq!(h.metrics.channels.get(), 2);
    a.unsubscribe(b"y");
    a.unsubscribe(b"never");
    assert_eq!(h.metrics.channels.get(), 1);
    a.leave();
    b.leave();
    assert_eq!(h.metrics.subscriptions.get(), 0);
    assert_eq!(h.metrics.channels.get(), 0);
    assert_eq!(a.subscribe(b"x"), Err(Refusal::Closed), "gone for good");
    assert_eq!(h.publish(b"x", true, b"late", None, Source::Mux), Ok(0));
}

#[test]
fn limits_and_names_are_refusals() {
    let h = hub(Limits {
        max_subscriptions_per_session: 2,
        max_channels: 3,
        ..Limits::default()
    });
    let a = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    assert_eq!(a.subscribe(b"bad name"), Err(Refusal::InvalidName));
    assert_eq!(a.subscribe(b""), Err(Refusal::InvalidName));
    a.subscribe(b"a").unwrap();
    a.subscribe(b"b").unwrap();
    assert_eq!(a.subscribe(b"c"), Err(Refusal::SessionLimit));
    let b = h.subscriber(Some(2), access(SlowPolicy::DropOldest, 1 << 20));
    b.subscribe(b"c").unwrap();
    assert_eq!(b.subscribe(b"d"), Err(Refusal::ChannelLimit));
    assert_eq!(
        b.subscribe(b"a"),
        Ok(true),
        "existing channels still take subscribers"
    );
    assert_eq!(
        h.publish(b"x y", true, b"", None, Source::Http),
        Err(Refusal::InvalidName)
    );
}

#[test]
fn slow_subscriber_policies() {
    let h = hub(Limits::default());
    let frame_cost = SharedFrame::encode(true, b"0123456789").cost();
    let drop = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 3 * frame_cost));
    let close = h.subscriber(Some(2), access(SlowPolicy::Close, 3 * frame_cost));
    drop.subscribe(b"c").unwrap();
    close.subscribe(b"c").unwrap();
    for i in 0..5u8 {
        h.publish(b"c", true, &[b'0' + i; 10], None, Source::Mux)
            .unwrap();
    }
    let got = drain(&drop);
    assert_eq!(got.len(), 3, "the bound holds three frames");
    assert_eq!(got[0], vec![b'2'; 10], "the two oldest were dropped");
    assert_eq!(h.metrics.drops.get(), 2);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(close.next(&mut cx), Next::Overflowed));
    // A frame larger than the whole bound is dropped, not queued.
    h.publish(b"c", false, &[0; 1000], None, Source::Mux)
        .unwrap();
    assert!(drain(&drop).is_empty());
    assert_eq!(h.metrics.drops.get(), 3);
}

#[test]
fn subscription_after_a_publish_does_not_get_it() {
    let h = hub(Limits::default());
    let early = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    early.subscribe(b"c").unwrap();
    h.publish(b"c", true, b"first", None, Source::Mux).unwrap();
    let late = h.subscriber(Some(2), access(SlowPolicy::DropOldest, 1 << 20));
    late.subscribe(b"c").unwrap();
    h.publish(b"c", true, b"second", None, Source::Mux).unwrap();
    assert_eq!(drain(&early).len(), 2);
    assert_eq!(drain(&late), vec![b"second".to_vec()]);
}

#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl ChannelHook for Log {
    fn first_local(&self, channel: &str) {
        self.0.lock().unwrap().push(format!("+{channel}"));
    }
    fn last_local(&self, channel: &str) {
        self.0.lock().unwrap().push(format!("-{channel}"));
    }
}

#[test]
fn the_hook_sees_first_and_last_local_subscribers() {
    let h = hub(Limits::default());
    let log = Arc::new(Log::default());
    assert!(h.set_hook(log.clone()));
    let a = h.subscriber(Some(1), access(SlowPolicy::DropOldest, 1 << 20));
    let b = h.subscriber(Some(2), access(SlowPolicy::DropOldest, 1 << 20));
    a.subscribe(b"c").unwrap();
    b.subscribe(b"c").unwrap();
    a.leave();
    b.unsubscribe(b"c");
    assert_eq!(*log.0.lock().unwrap(), vec!["+c", "-c"]);
}

#[test]
fn header_values_split_on_commas() {
    let got: Vec<&str> = header_channels(" room5, user.42 ,,").collect();
    assert_eq!(got, vec!["room5", "user.42"]);
}

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
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
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

/// Wakes by changing the channel it is subscribed to: what a session on
/// another worker does while a broadcast is under way.
struct Resubscribe {
    hub: Arc<Hub>,
    other: Arc<Subscriber>,
    done: std::sync::mpsc::Sender<()>,
}

impl std::task::Wake for Resubscribe {
    fn wake(self: Arc<Self>) {
        self.hub.subscribe(&self.other, b"big").expect("subscribes");
        self.hub.unsubscribe(&self.other, b"big");
        self.hub.subscribe(&self.other, b"big").expect("subscribes");
        let _ = self.done.send(());
    }
}

/// A subscribe and an unsubscribe made while a broadcast is under way (on
/// the broadcasting thread itself: a waker it calls) complete: the
/// broadcast does not hold the registry's lock while it delivers. The
/// subscriber added meanwhile does not get that broadcast's frame.
#[test]
fn subscriptions_change_during_a_broadcast() {
    let h = hub(Limits::default());
    let subs: Vec<_> = (1..=2_000)
        .map(|id| {
            let s = h.subscriber(Some(id), access(SlowPolicy::DropOldest, 1 << 20));
            s.subscribe(b"big").unwrap();
            s
        })
        .collect();
    let other = h.subscriber(Some(9_999), access(SlowPolicy::DropOldest, 1 << 20));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waker = Waker::from(Arc::new(Resubscribe {
        hub: Arc::clone(&h),
        other: Arc::clone(&other),
        done: done_tx,
    }));
    // The middle subscriber's session waits with that waker.
    assert!(matches!(
        subs[1_000].next(&mut Context::from_waker(&waker)),
        Next::Empty
    ));
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    let publishing = {
        let h = Arc::clone(&h);
        std::thread::spawn(move || {
            let n = h.publish(b"big", true, b"x", None, Source::Mux);
            let _ = result_tx.send(n);
        })
    };
    // Bounded waits: with the lock held across the sends the waker's
    // subscribe would never get the write lock.
    let wait = std::time::Duration::from_secs(30);
    done_rx
        .recv_timeout(wait)
        .expect("the subscribe during the broadcast completed");
    assert_eq!(
        result_rx
            .recv_timeout(wait)
            .expect("the broadcast completed"),
        Ok(2_000)
    );
    publishing.join().expect("publisher");
    assert!(drain(&other).is_empty(), "subscribed after it started");
    assert_eq!(drain(&subs[1_999]), vec![b"x".to_vec()]);
    assert_eq!(h.metrics.subscriptions.get(), 2_001);
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
