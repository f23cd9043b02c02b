//! Cross-worker delivery: one wake-up per worker per publish.
//!
//! With `runtime.layout = "thread_per_core"` and several workers, a
//! channel's subscribers live on every worker, and only a session's own
//! worker may write to its socket (subscriber.rs, "Direct delivery"). A
//! publish on worker A used to queue the frame for each subscriber of
//! worker B and wake each session's task from A: one cross-thread
//! wake-up, poll and queue entry per delivery.
//!
//! Now each worker that has subscribers has a [`Worker`]: an inbox of
//! jobs and one task on that worker draining it. A subscriber records its
//! worker (`home`) when its session attaches. A publish hands each other
//! worker with subscribers one job — the shared frame and the channel's
//! subscriber list (an `Arc` snapshot, not a copy) — and wakes its task
//! once; that task then offers the frame to the subscribers living there,
//! with the publisher's own rules (written directly when the session is
//! idle, else queued and the session woken — a local wake-up).
//!
//! Order: a subscriber's worker is set once, when it attaches. Frames
//! published before that went to its queue; a frame handed to its worker
//! is offered later and goes behind them (a direct send needs an empty
//! queue). One publisher's jobs reach a worker's inbox in publish order
//! and are handled in that order.
//!
//! Bounds: an inbox holds at most [`MAX_JOBS`] jobs and [`MAX_BYTES`] of
//! frames; a publish finding a worker's inbox full skips that worker, and
//! its subscribers' deliveries are counted as drops (a worker that cannot
//! keep up with its publishers sheds the newest, as a subscriber's
//! `drop_oldest` queue sheds its oldest).

use super::{Hub, SharedFrame, Subscriber, Tally};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

/// Publishes a worker may be behind before a publish skips it.
pub const MAX_JOBS: usize = 1024;
/// Bytes of frames (each job charged its frame's queue cost) a worker's
/// inbox may hold before a publish skips it.
pub const MAX_BYTES: usize = 64 << 20;
/// Workers that get batches (numbered 1..=MAX_WORKERS in the order they
/// first attach a subscriber); subscribers of any further thread are
/// queued and woken one by one by the publisher.
pub const MAX_WORKERS: u32 = 64;

/// A publish's subscribers per worker, indexed by worker number.
pub(super) type PerWorker = [u32; MAX_WORKERS as usize + 1];

/// A channel's subscribers as a publish sees them: a snapshot taken under
/// the hub's lock, shared with the workers' jobs.
pub(super) type Subscribers = Arc<Vec<Arc<Subscriber>>>;

/// One publish for one worker.
struct Job {
    frame: SharedFrame,
    /// The channel's subscribers; the worker offers the frame to those
    /// whose `home` it is.
    subs: Subscribers,
    except: Option<u64>,
    /// For the delivery counters and the latency histogram.
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Inbox {
    jobs: VecDeque<Job>,
    /// Cost of the frames in `jobs`.
    bytes: usize,
    /// The worker task, waiting for jobs.
    waker: Option<Waker>,
    /// The worker task exists (it ends with its runtime).
    running: bool,
}

/// One worker thread's delivery batches.
pub(super) struct Worker {
    /// 1..=MAX_WORKERS: what a subscriber's `home` holds.
    index: u32,
    inbox: Mutex<Inbox>,
}

/// Every worker ever made, by `index - 1` (a gateway has one per worker
/// thread; the list never shrinks).
static WORKERS: RwLock<Vec<Arc<Worker>>> = RwLock::new(Vec::new());

thread_local! {
    /// This thread's worker, once a subscriber attached here.
    static HERE: RefCell<Option<Arc<Worker>>> = const { RefCell::new(None) };
}

/// The number of this thread's worker; 0 if it has none.
pub(super) fn current() -> u32 {
    HERE.with(|h| h.borrow().as_ref().map_or(0, |w| w.index))
}

/// A subscriber's worker number; 0 if it has none (not attached, or not
/// on a current-thread worker).
pub(super) fn home(sub: &Subscriber) -> u32 {
    sub.home.load(Ordering::Relaxed)
}

/// Record the current thread as `sub`'s worker, when it is a
/// current-thread runtime (on a work-stealing one the session's task moves
/// between threads), starting the worker's task if need be. Called by the
/// session's task as it attaches its client.
pub(super) fn settle(sub: &Subscriber) {
    if home(sub) != 0 {
        return;
    }
    let current = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    if !current {
        return;
    }
    if let Some(index) = here() {
        sub.home.store(index, Ordering::Relaxed);
    }
}

/// This thread's worker, made and its task started if need be.
fn here() -> Option<u32> {
    HERE.with(|h| {
        let mut h = h.borrow_mut();
        let worker = match &*h {
            Some(w) => Arc::clone(w),
            None => {
                let mut all = WORKERS.write().unwrap_or_else(|e| e.into_inner());
                let index = u32::try_from(all.len()).ok()? + 1;
                if index > MAX_WORKERS {
                    return None;
                }
                let w = Arc::new(Worker {
                    index,
                    inbox: Mutex::default(),
                });
                all.push(Arc::clone(&w));
                *h = Some(Arc::clone(&w));
                w
            }
        };
        let mut inbox = worker.lock();
        if !inbox.running {
            // First here, or the runtime that ran the task is gone and
            // this thread runs a new one.
            inbox.running = true;
            drop(inbox);
            tokio::spawn(run(Arc::clone(&worker)));
        }
        Some(worker.index)
    })
}

/// Hand `frame` to every worker with subscribers in `counts` (but the
/// publisher's own): one job and at most one wake-up each. Returns the
/// deliveries handed over; those of a worker whose inbox is full are
/// counted as drops.
pub(super) fn hand_off(
    counts: &PerWorker,
    frame: &SharedFrame,
    subs: &Subscribers,
    except: Option<u64>,
    hub: &Arc<Hub>,
) -> usize {
    let all = WORKERS.read().unwrap_or_else(|e| e.into_inner());
    let (mut handed, mut skipped) = (0, 0);
    for (index, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
        let Some(worker) = index.checked_sub(1).and_then(|i| all.get(i)) else {
            continue;
        };
        let waker = {
            let mut inbox = worker.lock();
            let cost = frame.cost();
            if !inbox.running || inbox.jobs.len() >= MAX_JOBS || inbox.bytes + cost > MAX_BYTES {
                skipped += n as usize;
                continue;
            }
            inbox.bytes += cost;
            inbox.jobs.push_back(Job {
                frame: frame.clone(),
                subs: Arc::clone(subs),
                except,
                hub: Arc::clone(hub),
            });
            handed += n as usize;
            inbox.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
    if skipped > 0 {
        hub.metrics.drops.inc_by(skipped as u64);
    }
    handed
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Queue operations only; a panic there leaves the inbox whole.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Move every waiting job into `batch` (an empty deque whose slots are
    /// reused), or register the task.
    fn take(&self, batch: &mut VecDeque<Job>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inbox = self.lock();
        if inbox.jobs.is_empty() {
            if !inbox
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inbox.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut inbox.jobs, batch);
        inbox.bytes = 0;
        Poll::Ready(())
    }

    /// Offer one publish to the subscribers living on this worker.
    fn handle(&self, job: Job, here: ThreadId) {
        let mut tally = Tally::default();
        let pick = |sub: &Subscriber| home(sub) == self.index && Some(sub.key) != job.except;
        let mode = job.hub.limits.send_batch;
        super::uring::offer_all(&job.subs, &job.frame, here, mode, pick, &mut tally);
        job.hub.count(&tally, &job.frame);
    }
}

/// Marks the worker's task gone when its runtime drops it.
struct Running(Arc<Worker>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut inbox = self.0.lock();
        inbox.running = false;
        inbox.jobs.clear();
        inbox.bytes = 0;
        inbox.waker = None;
    }
}

/// The worker's task: handle jobs as they come, yielding between batches
/// so the worker's sessions run too.
async fn run(worker: Arc<Worker>) {
    let running = Running(worker);
    let worker = &running.0;
    let mut batch = VecDeque::new();
    let here = std::thread::current().id();
    loop {
        poll_fn(|cx| worker.take(&mut batch, cx)).await;
        while let Some(job) = batch.pop_front() {
            worker.handle(job, here);
        }
        tokio::task::yield_now().await;
    }
}
