//! The connection timer's promises: a ready future is never timed out, a
//! wait ends at its own deadline whatever an earlier wait left armed —
//! never sooner (an earlier deadline kept armed), never much later (a
//! later one moved back). Lower bounds on elapsed time only: a loaded
//! machine can make a wait late, never early. Upper bounds are guards
//! far beyond the expected time, there to turn a hang into a failure.

use super::*;
use std::future::pending;
use tokio::time::{sleep, timeout};

/// Far beyond any wait below.
const GUARD: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_ready_future_is_not_timed_out_and_arms_nothing() {
    let mut timer = ConnTimer::new();
    let unarmed = timer.sleep.deadline();
    assert_eq!(timer.within(Duration::ZERO, async { 7 }).await, Ok(7));
    assert_eq!(timer.sleep.deadline(), unarmed, "the timer was touched");
}

#[tokio::test]
async fn a_wait_that_never_ends_times_out() {
    let mut timer = ConnTimer::new();
    let r = timeout(
        GUARD,
        timer.within(Duration::from_millis(50), pending::<()>()),
    )
    .await;
    assert_eq!(r.expect("timed out within the guard"), Err(TimedOut));
}

#[tokio::test]
async fn an_earlier_deadline_left_armed_does_not_cut_a_later_wait() {
    let mut timer = ConnTimer::new();
    let first = timer.within(Duration::from_millis(200), sleep(Duration::from_millis(1)));
    assert_eq!(first.await, Ok(()));
    // The 200 ms deadline stays armed (it is earlier): it fires during
    // this wait, which must go on to its own deadline.
    let started = Instant::now();
    let r = timeout(
        GUARD,
        timer.within(Duration::from_millis(600), pending::<()>()),
    )
    .await;
    assert_eq!(r.expect("timed out within the guard"), Err(TimedOut));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "timed out after {waited:?}, before its own deadline"
    );
    // And a wait that ends in time is not cut either.
    let r = timer.within(
        Duration::from_millis(600),
        sleep(Duration::from_millis(300)),
    );
    assert_eq!(r.await, Ok(()));
}

#[tokio::test]
async fn a_later_deadline_left_armed_is_moved_back() {
    let mut timer = ConnTimer::new();
    let first = timer.within(Duration::from_secs(3600), sleep(Duration::from_millis(1)));
    assert_eq!(first.await, Ok(()));
    let r = timeout(
        GUARD,
        timer.within(Duration::from_millis(50), pending::<()>()),
    )
    .await;
    assert_eq!(
        r.expect("the hour-long deadline was kept: the wait did not end"),
        Err(TimedOut)
    );
}

#[tokio::test]
async fn a_deadline_that_fired_unwatched_does_not_end_the_next_wait() {
    let mut timer = ConnTimer::new();
    let first = timer.within(Duration::from_millis(20), sleep(Duration::from_millis(1)));
    assert_eq!(first.await, Ok(()));
    // The 20 ms deadline passes while nothing waits on the timer.
    sleep(Duration::from_millis(100)).await;
    let r = timer.within(Duration::from_secs(20), sleep(Duration::from_millis(100)));
    assert_eq!(r.await, Ok(()));
}
