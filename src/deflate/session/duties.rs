//! The edge relay's timers, as the zero-copy relay has them: keepalive
//! pings to both peers with a pong deadline, the idle timeout, and the
//! client token's expiry. The two directions stamp what they see into a
//! shared [`Activity`]; one future here reads it and sleeps until the next
//! deadline, so the directions pay an atomic store per read, not a timer.
//!
//! As in the relay (`relay::timers`), a peer is judged only on what it
//! could have done: while the gateway does not read it (the direction from
//! it waits to write to the other side), its missing pong may be sitting
//! in our receive buffer, so its deadline starts again.

use super::frames::{ping_frame, Writer};
use crate::relay::Settings;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// Index of the client side in [`Activity`]'s arrays.
pub const CLIENT: usize = 0;
/// Index of the upstream side.
pub const UPSTREAM: usize = 1;

/// What the directions of one session report, in milliseconds since its
/// start (atomics: the futures of one task share it by reference, and the
/// task must stay `Send`).
pub struct Activity {
    start: Instant,
    /// Last bytes read from each peer.
    rx: [AtomicU64; 2],
    /// Last complete data message, either way (idle timeout).
    data: AtomicU64,
    /// The direction from this peer waits to write to the other side:
    /// the gateway is not reading this peer meanwhile.
    paused: [AtomicBool; 2],
    /// Complete messages and their plain payload bytes from each peer
    /// (for the access log).
    pub messages: [AtomicU64; 2],
    pub bytes: [AtomicU64; 2],
    /// The Close code each peer sent (0: none, or none yet).
    pub close: [AtomicU32; 2],
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            rx: Default::default(),
            data: AtomicU64::new(0),
            paused: Default::default(),
            messages: Default::default(),
            bytes: Default::default(),
            close: Default::default(),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.duration_since(self.start).as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// A complete data message of `bytes` from `side`.
    pub fn message(&self, side: usize, bytes: u64) {
        self.data.store(self.ms(Instant::now()), Ordering::Relaxed);
        self.messages[side].fetch_add(1, Ordering::Relaxed);
        self.bytes[side].fetch_add(bytes, Ordering::Relaxed);
    }

    /// The direction from `side` waits (or stopped waiting) on a write.
    pub fn pause(&self, side: usize, paused: bool) {
        self.paused[side].store(paused, Ordering::Relaxed);
    }

    /// The Close code `side` sent, if it sent one with a code.
    pub fn close_code(&self, side: usize) -> Option<u16> {
        match self.close[side].load(Ordering::Relaxed) {
            0 => None,
            c => Some(c as u16),
        }
    }
}

pin_project! {
    /// A peer's read half that stamps [`Activity`] on every read.
    pub struct Stamp<'a, R> {
        #[pin]
        inner: R,
        activity: &'a Activity,
        side: usize,
    }
}

impl<'a, R> Stamp<'a, R> {
    pub fn new(inner: R, activity: &'a Activity, side: usize) -> Self {
        Stamp {
            inner,
            activity,
            side,
        }
    }
}

impl<R: AsyncRead> AsyncRead for Stamp<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            let a = *this.activity;
            a.rx[*this.side].store(a.ms(Instant::now()), Ordering::Relaxed);
        }
        r
    }
}

/// Why the timers end a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// No data message either way for `idle_timeout`.
    Idle,
    /// The client's credential expired.
    Expired,
    /// This side did not answer a ping within `pong_timeout`.
    PingTimeout(usize),
}

/// Run the timers until one ends the session (never returns otherwise).
pub async fn run(
    settings: &Settings,
    expires_at: Option<Instant>,
    activity: &Activity,
    writers: [&Writer; 2],
) -> Duty {
    // When each side's outstanding ping was sent (ms), if any.
    let mut ping_sent: [Option<u64>; 2] = [None, None];
    loop {
        let now = Instant::now();
        let now_ms = activity.ms(now);
        if expires_at.is_some_and(|t| t <= now) {
            return Duty::Expired;
        }
        let last_data = activity.at(activity.data.load(Ordering::Relaxed));
        if let Some(idle) = settings.idle_timeout {
            if now.duration_since(last_data) >= idle {
                return Duty::Idle;
            }
        }
        let idle_at = settings.idle_timeout.map(|i| last_data + i);
        let mut next = [expires_at, idle_at].into_iter().flatten().min();
        if let Some(interval) = settings.ping_interval {
            let pong_ms = settings.pong_timeout.as_millis() as u64;
            for side in [CLIENT, UPSTREAM] {
                let rx = activity.rx[side].load(Ordering::Relaxed);
                match ping_sent[side] {
                    // `>=`: stamps are whole milliseconds, and on loopback
                    // the pong often arrives within the millisecond of its
                    // ping (`>` then took an answered ping for a timeout).
                    Some(sent) if rx >= sent => ping_sent[side] = None,
                    Some(sent) if now_ms >= sent + pong_ms => {
                        if !activity.paused[side].load(Ordering::Relaxed) {
                            return Duty::PingTimeout(side);
                        }
                        // Not read by us: its pong may be waiting here.
                        ping_sent[side] = Some(now_ms);
                    }
                    _ => {}
                }
                if ping_sent[side].is_none() && now_ms >= rx + interval.as_millis() as u64 {
                    // A peer that cannot take a ping within the pong
                    // deadline is not reading at all.
                    let ping = ping_frame(side == UPSTREAM);
                    let send = async { writers[side].lock().await.frame(&ping, false).await };
                    // Boxed: only alive while a ping is written (the idle
                    // session's future stays small).
                    match Box::pin(tokio::time::timeout(settings.pong_timeout, send)).await {
                        Ok(_) => ping_sent[side] = Some(activity.ms(Instant::now())),
                        Err(_) => return Duty::PingTimeout(side),
                    }
                }
                let due = match ping_sent[side] {
                    Some(sent) => activity.at(sent + pong_ms),
                    None => activity.at(rx) + interval,
                };
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        match next {
            Some(t) => tokio::time::sleep_until(t.max(now + Duration::from_millis(1))).await,
            None => std::future::pending::<()>().await,
        }
    }
}
