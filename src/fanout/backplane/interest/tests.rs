//! `apply` against a fake client that stalls or refuses chosen SUBs, with
//! a short batch limit (the task's is `APPLY_TIMEOUT`, 5 s).

use super::*;
use prometheus::Registry;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Subscribes instantly, except that call number `stall_at` never
/// completes (a stalled server) and call number `fail_at` is refused.
struct Fake {
    calls: AtomicUsize,
    stall_at: Option<usize>,
    fail_at: Option<usize>,
    connected: bool,
}

impl Fake {
    fn new(stall_at: Option<usize>, fail_at: Option<usize>) -> Fake {
        Fake {
            calls: AtomicUsize::new(0),
            stall_at,
            fail_at,
            connected: true,
        }
    }
}

impl Subscriptions for Fake {
    type Sub = futures_util::stream::Pending<Message>;
    type Error = &'static str;

    fn connected(&self) -> bool {
        self.connected
    }

    async fn subscribe(&self, _subject: String) -> Result<Self::Sub, Self::Error> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if Some(n) == self.stall_at {
            std::future::pending::<()>().await;
        }
        if Some(n) == self.fail_at {
            return Err("refused");
        }
        Ok(futures_util::stream::pending())
    }

    async fn flush(&self) -> bool {
        true
    }
}

/// The batch limit here: long enough for a batch that does not stall.
const LIMIT: Duration = Duration::from_millis(300);

fn wanting(channels: &[&str]) -> Pending {
    let p = Pending::default();
    for c in channels {
        p.set(c, true);
    }
    p
}

#[tokio::test]
async fn a_batch_that_times_out_keeps_its_unsent_changes_for_the_retry() {
    let m = BackplaneMetrics::new(&Registry::new());
    let pending = wanting(&["a", "b", "c", "d"]);
    let mut streams = StreamMap::new();
    // The second SUB of the batch hangs until the batch times out.
    let stalling = Fake::new(Some(1), None);
    let first = apply(&stalling, &pending, "p.", &mut streams, &m, LIMIT).await;
    assert_eq!(first, Applied::Retry);
    assert_eq!(streams.len(), 1, "only the SUB before the stall was made");
    assert_eq!(
        pending.len(),
        3,
        "the stalled SUB and the two never tried are pending again"
    );
    assert_eq!(m.subscribe_failures.get(), 1);
    assert_eq!(m.subjects.get(), 1);

    // The retry, with the server answering again, makes the rest.
    let answering = Fake::new(None, None);
    let retry = apply(&answering, &pending, "p.", &mut streams, &m, LIMIT).await;
    assert_eq!(retry, Applied::Done);
    assert_eq!(streams.len(), 4);
    assert_eq!(pending.len(), 0);
    assert_eq!(m.subjects.get(), 4);
    assert_eq!(answering.calls.load(Ordering::Relaxed), 3, "one SUB each");
}

#[tokio::test]
async fn a_refused_sub_is_retried_and_a_newer_change_wins_over_it() {
    let m = BackplaneMetrics::new(&Registry::new());
    let pending = wanting(&["a", "b"]);
    let mut streams = StreamMap::new();
    let refusing = Fake::new(None, Some(0));
    let first = apply(&refusing, &pending, "p.", &mut streams, &m, LIMIT).await;
    assert_eq!(first, Applied::Retry);
    assert_eq!((streams.len(), pending.len()), (1, 1));
    let refused: Box<str> = {
        let p = pending.lock();
        p.keys().next().expect("one pending").clone()
    };

    // The last subscriber left meanwhile: the retry must not subscribe.
    pending.set(&refused, false);
    pending.restore(HashMap::from([(refused.clone(), true)]));
    let retry = apply(
        &Fake::new(None, None),
        &pending,
        "p.",
        &mut streams,
        &m,
        LIMIT,
    )
    .await;
    assert_eq!(retry, Applied::Done);
    assert!(!streams.contains_key(&refused));
    assert_eq!(streams.len(), 1);
}

#[tokio::test]
async fn nothing_is_taken_while_disconnected() {
    let m = BackplaneMetrics::new(&Registry::new());
    let pending = wanting(&["a"]);
    let mut streams = StreamMap::new();
    let mut down = Fake::new(None, None);
    down.connected = false;
    assert_eq!(
        apply(&down, &pending, "p.", &mut streams, &m, LIMIT).await,
        Applied::Waiting
    );
    assert_eq!((streams.len(), pending.len()), (0, 1));
    assert_eq!(m.subscribe_failures.get(), 0);
}
