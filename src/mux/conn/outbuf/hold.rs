//! The connection task's timer for `mux.write_delay` (see
//! [`super::OutBuf::poll_drive`]).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The connection task's timer for `mux.write_delay`: armed when it takes
/// a handed flush, the flush is written when it fires (or once
/// `OutBuf::batch_full`). tokio's timer has millisecond resolution, so a
/// frame may wait up to about a millisecond longer than the delay.
#[derive(Default)]
pub(in crate::mux::conn) struct Hold {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Hold {
    /// True while the window that started at the first call after the
    /// last flush is open (`cx` is woken when it closes). Only called with
    /// a delay: without one nothing is held.
    pub(super) fn waiting(&mut self, cx: &mut Context<'_>, delay: Duration) -> bool {
        let sleep = match &mut self.sleep {
            Some(sleep) if self.armed => sleep,
            slot => {
                let deadline = Instant::now() + delay;
                let sleep =
                    slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                sleep.as_mut().reset(deadline);
                self.armed = true;
                sleep
            }
        };
        if sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return false;
        }
        true
    }

    /// The flush is being written: the next handed one starts a new window.
    pub(super) fn end(&mut self) {
        self.armed = false;
    }
}
