//! Fan-out delivery cost: allocations and time per delivery, counted by a
//! global allocator that counts every `alloc`.
//!
//! 5,000 subscribers of one channel; each round publishes one 128-byte
//! message (encoded once, delivered by reference to every queue) and then
//! drains every queue, as the sessions' client writes would. Allocations
//! are counted around `publish` only. A publish costs a fixed few (the
//! frame buffer, its shared handle, the `Arc`); a delivery costs none —
//! beyond the growth of a queue's first slots, which the warm-up round
//! pays and a subscriber that keeps up keeps.
//!
//! Then the cross-worker path (`src/fanout/worker.rs`): `REMOTE`
//! subscribers attached on another thread's current-thread runtime, so
//! each publish from this thread is one job for that worker, whose task
//! queues the frame for them. Allocations are counted on every thread from
//! the publish until that worker has counted the deliveries.
//!
//! Run: `cargo bench --bench fanout_alloc` (prints; no criterion: its own
//! allocations would be counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;
use tidegate::fanout::{Access, Hub, Limits, Next, SlowPolicy, Source};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SUBSCRIBERS: usize = 5_000;
const ROUNDS: usize = 200;
/// Subscribers on the other worker (each holds a duplicate descriptor of
/// one socket, so this stays under a default descriptor limit).
const REMOTE: usize = 500;

fn main() {
    let registry = prometheus::Registry::new();
    let hub = Hub::new(
        Limits::default(),
        tidegate::fanout::metrics::FanoutMetrics::new(&registry),
    );
    let access = Arc::new(Access::new(
        SlowPolicy::DropOldest,
        1 << 20,
        Arc::from(vec![]),
        None,
    ));
    let subs: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let s = hub.subscriber(Some(i as u32 + 1), Arc::clone(&access));
            s.subscribe(b"bench").expect("subscribes");
            s
        })
        .collect();
    let mut cx = Context::from_waker(Waker::noop());
    let payload = [b'x'; 128];
    let drain = |cx: &mut Context<'_>| {
        for s in &subs {
            while let Next::Frame(f) = s.next(cx) {
                std::hint::black_box(f);
            }
        }
    };
    // Warm-up: each queue gets its first slots.
    hub.publish(b"bench", true, &payload, None, Source::Mux)
        .expect("publishes");
    drain(&mut cx);

    let mut allocs = 0;
    let mut publishing = std::time::Duration::ZERO;
    for _ in 0..ROUNDS {
        let before = ALLOCS.load(Ordering::Relaxed);
        let t = Instant::now();
        let n = hub
            .publish(b"bench", true, &payload, None, Source::Mux)
            .expect("publishes");
        publishing += t.elapsed();
        allocs += ALLOCS.load(Ordering::Relaxed) - before;
        assert_eq!(n, SUBSCRIBERS);
        drain(&mut cx);
    }
    let deliveries = (ROUNDS * SUBSCRIBERS) as f64;
    println!(
        "fanout_alloc: {SUBSCRIBERS} subscribers x {ROUNDS} publishes of 128 B: \
         {allocs} allocations = {:.1} per publish, {:.4} per delivery; \
         {:.1} ns per delivery (publish side)",
        allocs as f64 / ROUNDS as f64,
        allocs as f64 / deliveries,
        publishing.as_nanos() as f64 / deliveries
    );
    let fixed_per_publish = 3.0;
    assert!(
        allocs as f64 <= fixed_per_publish * ROUNDS as f64,
        "a delivery allocated: {allocs} allocations for {ROUNDS} publishes"
    );
    cross_worker(&hub, &access, &payload);
}

/// Publishes from this thread to subscribers living on another worker.
fn cross_worker(hub: &Arc<Hub>, access: &Arc<Access>, payload: &[u8]) {
    let (subs_tx, subs_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let (hub, access) = (Arc::clone(hub), Arc::clone(access));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
                    .await
                    .expect("connect");
                let (server, _) = listener.accept().await.expect("accept");
                let io = tidegate::io::Io::Tcp(server);
                let subs: Vec<_> = (0..REMOTE)
                    .map(|i| {
                        let s =
                            hub.subscriber(Some((SUBSCRIBERS + i) as u32 + 1), Arc::clone(&access));
                        s.subscribe(b"remote").expect("subscribes");
                        // The session is never idle here: frames are queued.
                        s.attach(&io);
                        s
                    })
                    .collect();
                subs_tx.send(subs).expect("main thread waits");
                // The worker's delivery task runs while this waits.
                let _ = stop_rx.await;
                drop((client, io));
            })
        })
    };
    let subs = subs_rx.recv().expect("remote subscribers");
    let mut cx = Context::from_waker(Waker::noop());
    let mut publish_and_drain = |count: &mut u64| {
        let want = hub.metrics.deliveries.get() + REMOTE as u64;
        let before = ALLOCS.load(Ordering::Relaxed);
        let n = hub
            .publish(b"remote", true, payload, None, Source::Mux)
            .expect("publishes");
        assert_eq!(n, REMOTE, "handed to the other worker");
        while hub.metrics.deliveries.get() < want {
            std::thread::yield_now();
        }
        *count += ALLOCS.load(Ordering::Relaxed) - before;
        for s in &subs {
            while let Next::Frame(f) = s.next(&mut cx) {
                std::hint::black_box(f);
            }
        }
    };
    // Warm-up: queues and the worker's inbox get their slots (twice: the
    // inbox and the task's batch swap their deques, so both grow once).
    publish_and_drain(&mut 0);
    publish_and_drain(&mut 0);
    let mut allocs = 0;
    for _ in 0..ROUNDS {
        publish_and_drain(&mut allocs);
    }
    let _ = stop_tx.send(());
    worker.join().expect("worker thread");
    println!(
        "fanout_alloc: cross-worker, {REMOTE} subscribers on another worker x {ROUNDS} publishes: \
         {allocs} allocations = {:.1} per publish, {:.4} per delivery",
        allocs as f64 / ROUNDS as f64,
        allocs as f64 / (ROUNDS * REMOTE) as f64
    );
    assert!(
        allocs as f64 <= 3.0 * ROUNDS as f64,
        "a cross-worker delivery allocated: {allocs} allocations for {ROUNDS} publishes"
    );
}
