//! When a connection that got GOAWAY closes (docs/mux-protocol.md §6).
//!
//! - **Move**: another connection can take the sessions. Close
//!   `MOVE_LINGER` after the last one moved or ended (frames the
//!   application sent before it saw them leave still arrive), at the
//!   latest after `mux.resume_grace`. While moving, look again every
//!   `RECHECK`: if the pool has since run out of usable connections (the
//!   other connections went to the same instance and got their GOAWAY
//!   too), switch to release.
//! - **Release**: nowhere to move. The sessions wait for a resume as after
//!   a cut; the connection closes as soon as the application has been
//!   quiet for `RELEASE_QUIET` (its replies to the last client frames are
//!   in), at the latest `RELEASE_MAX` after the release — so a single
//!   instance restarting is let go at once instead of being held for the
//!   resume grace.

use std::time::Duration;
use tokio::time::Instant;

/// After the last session moved: how long frames still in flight on the
/// old connection are waited for (they were sent before the application
/// saw the session leave, so they arrive within a round trip).
const MOVE_LINGER: Duration = Duration::from_secs(2);

/// Released: close once the application has sent nothing for this long.
/// Generous on purpose: a reply to the last client frames that has not
/// left the application when the Close reaches it is lost with the old
/// process, and a busy (or CPU-starved) application can pause for a few
/// hundred milliseconds between replies — seen under load in the restart
/// tests with 200 ms.
const RELEASE_QUIET: Duration = Duration::from_secs(1);

/// Released: the latest close moment, however chatty the application
/// (one that keeps pushing on its own is never quiet).
const RELEASE_MAX: Duration = Duration::from_secs(5);

/// Moving: how often to ask whether there is still somewhere to move to.
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(super) struct Drain {
    /// When to send the Close.
    close_at: Option<Instant>,
    /// Released: the latest close moment, however chatty the application.
    release_by: Option<Instant>,
    /// Moving: when to look at the pool again.
    recheck: Option<Instant>,
}

impl Drain {
    /// The next moment `due` must be called, if any.
    pub(super) fn next(&self) -> Option<Instant> {
        [self.close_at, self.recheck].into_iter().flatten().min()
    }

    /// GOAWAY, and other connections can take the sessions.
    pub(super) fn moving(&mut self, now: Instant, grace: Duration) {
        self.close_at.get_or_insert(now + grace);
        self.recheck = Some(now + RECHECK);
    }

    /// GOAWAY with nowhere to move (or nowhere any more).
    pub(super) fn release(&mut self, now: Instant) {
        self.recheck = None;
        let by = now + RELEASE_MAX;
        self.release_by = Some(by);
        self.close_at = Some(
            self.close_at
                .map_or(by, |c| c.min(by))
                .min(now + RELEASE_QUIET),
        );
    }

    /// Every session moved or ended.
    pub(super) fn all_moved(&mut self, now: Instant) {
        let linger = now + MOVE_LINGER;
        self.close_at = Some(self.close_at.map_or(linger, |d| d.min(linger)));
    }

    /// A frame from the application: a released connection waits for it
    /// to go quiet (within `release_by`).
    pub(super) fn on_frame(&mut self, now: Instant) {
        if let Some(by) = self.release_by {
            self.close_at = Some((now + RELEASE_QUIET).min(by));
        }
    }

    /// Timer: true when the Close is due now. `nowhere` says whether the
    /// pool has no usable connection left (asked only while moving).
    pub(super) fn due(&mut self, now: Instant, nowhere: impl FnOnce() -> bool) -> bool {
        if self.recheck.is_some_and(|r| r <= now) {
            if nowhere() {
                self.release(now);
            } else {
                self.recheck = Some(now + RECHECK);
            }
        }
        if self.close_at.is_some_and(|c| c <= now) {
            *self = Drain::default();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_closes_once_quiet_and_never_after_the_linger() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        d.release(t0);
        assert_eq!(d.next(), Some(t0 + RELEASE_QUIET));
        // A chatty application pushes the close back, but not past the cap.
        for ms in (100..10_000).step_by(100) {
            d.on_frame(t0 + Duration::from_millis(ms));
        }
        assert_eq!(d.next(), Some(t0 + RELEASE_MAX));
        assert!(d.due(t0 + RELEASE_MAX, || unreachable!()));
        assert_eq!(d.next(), None, "closed once");
    }

    #[test]
    fn moving_turns_into_a_release_when_the_pool_runs_dry() {
        let t0 = Instant::now();
        let mut d = Drain::default();
        d.moving(t0, Duration::from_secs(30));
        assert!(
            !d.due(t0 + RECHECK, || false),
            "somewhere to go: keep moving"
        );
        let t1 = t0 + RECHECK * 2;
        assert!(!d.due(t1, || true));
        assert_eq!(d.next(), Some(t1 + RELEASE_QUIET), "released");
        assert!(d.due(t1 + RELEASE_QUIET, || unreachable!()));
    }
}
