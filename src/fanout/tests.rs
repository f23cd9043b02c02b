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

mod sockets;
