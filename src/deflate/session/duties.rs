//! The edge relay's timers, as the zero-copy relay has them: keepalive
//! pings to both peers with a pong deadline, the idle timeout, and the
//! client token's expiry. The two directions stamp what they see into a
//! shared [`Activity`]; one future here reads it and sleeps until the next
//! deadline, so the directions pay an atomic store per read, not a timer.
//!
//! A peer is judged by the relay's own rule (`relay::silence_excused`),
//! only on what it could have done: bytes it took after our writes to it
//! had to wait count as a sign of life (its pong may sit behind them), and
//! while the gateway does not read it (the direction from it waits to
//! write to the other side) its pong may be sitting in our receive buffer.
//! The gateway's pings carry a per-session payload, so the directions know
//! the pongs that answer them and keep them (they are no one else's news).

use super::frames::{ping_frame, Writer};
use crate::relay::{silence_excused, Settings};
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
    /// Last sign of life of each peer: bytes read from it, or bytes it
    /// took after a write to it had to wait.
    rx: [AtomicU64; 2],
    /// Last complete data message, either way (idle timeout).
    data: AtomicU64,
    /// The direction from this peer waits to write to the other side:
    /// the gateway is not reading this peer meanwhile.
    paused: [AtomicBool; 2],
    /// A write to this peer waits: it does not take our bytes.
    blocked: [AtomicBool; 2],
    /// The payload of the gateway's keepalive pings on this session.
    token: [u8; 8],
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
            blocked: Default::default(),
            token: rand::random(),
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

    /// A write to `side` has to wait (or stopped waiting).
    pub fn block(&self, side: usize, blocked: bool) {
        self.blocked[side].store(blocked, Ordering::Relaxed);
    }

    /// `side` took bytes of a write that had to wait: it is reading.
    pub fn took(&self, side: usize) {
        self.rx[side].store(self.ms(Instant::now()), Ordering::Relaxed);
    }

    /// The payload of the gateway's own pings.
    pub fn ping_payload(&self) -> &[u8] {
        &self.token
    }

    /// Whether a pong answers one of the gateway's own pings.
    pub fn own_pong(&self, payload: &[u8]) -> bool {
        payload == self.token
    }

    /// Whether `side`'s silence may be the gateway's doing (the relay's
    /// rule); `unsent`: our ping to it still waits behind a frame.
    fn excused(&self, side: usize, unsent: bool) -> bool {
        let load = |v: &[AtomicBool; 2]| v[side].load(Ordering::Relaxed);
        silence_excused(load(&self.blocked), load(&self.paused), unsent)
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
            for side in [CLIENT, UPSTREAM] {
                let keep = Keepalive {
                    side,
                    interval,
                    pong_timeout: settings.pong_timeout,
                    activity,
                    writer: writers[side],
                };
                let due = match keep.step(&mut ping_sent[side]).await {
                    Ok(due) => due,
                    Err(duty) => return duty,
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

/// One side's keepalive, as the timers see it at one moment.
struct Keepalive<'a> {
    side: usize,
    interval: Duration,
    pong_timeout: Duration,
    activity: &'a Activity,
    writer: &'a Writer,
}

/// How a ping's write went.
enum Ping {
    /// Written, at this many ms.
    Sent(u64),
    /// A frame to this peer held the writer for a whole pong timeout.
    Held,
    /// The ping itself did not go out within a pong timeout.
    Stuck,
}

impl Keepalive<'_> {
    /// Clear an answered ping, judge a late one, send a due one. Returns
    /// when to look again, or the end of the session.
    async fn step(&self, sent: &mut Option<u64>) -> Result<Instant, Duty> {
        let a = self.activity;
        let pong_ms = self.pong_timeout.as_millis() as u64;
        let now_ms = a.ms(Instant::now());
        let rx = a.rx[self.side].load(Ordering::Relaxed);
        match *sent {
            // `>=`: stamps are whole milliseconds, and on loopback the pong
            // often arrives within the millisecond of its ping (`>` then
            // took an answered ping for a timeout).
            Some(at) if rx >= at => *sent = None,
            Some(at) if now_ms >= at + pong_ms => {
                if !a.excused(self.side, false) {
                    return Err(Duty::PingTimeout(self.side));
                }
                // Not the peer's fault: a full pong timeout more.
                *sent = Some(now_ms);
            }
            _ => {}
        }
        if sent.is_none() && now_ms >= rx + self.interval.as_millis() as u64 {
            // Boxed: only alive while a ping is written (the idle
            // session's future stays small).
            match Box::pin(self.ping()).await {
                Ping::Sent(at) => *sent = Some(at),
                Ping::Stuck => return Err(Duty::PingTimeout(self.side)),
                // The frame ahead of the ping moved: the peer reads. Or it
                // did not, but the peer is not ours to blame (the relay's
                // rule, the ping unsent): ask again.
                Ping::Held if a.rx[self.side].load(Ordering::Relaxed) >= now_ms => {}
                Ping::Held if a.excused(self.side, true) => {}
                Ping::Held => return Err(Duty::PingTimeout(self.side)),
            }
        }
        let rx = a.rx[self.side].load(Ordering::Relaxed);
        Ok(match *sent {
            Some(at) => a.at(at + pong_ms),
            None => a.at(rx) + self.interval,
        })
    }

    /// Write a ping; neither the wait for the writer nor the write may
    /// take longer than a pong timeout (a peer that takes no byte of ours
    /// for that long is not reading at all).
    async fn ping(&self) -> Ping {
        let frame = ping_frame(self.side == UPSTREAM, self.activity.ping_payload());
        let Ok(mut out) = tokio::time::timeout(self.pong_timeout, self.writer.lock()).await else {
            return Ping::Held;
        };
        // A failed write ends the direction writing to this peer too.
        match tokio::time::timeout(self.pong_timeout, out.frame(&frame, false)).await {
            Ok(_) => Ping::Sent(self.activity.ms(Instant::now())),
            Err(_) => Ping::Stuck,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Io;
    use std::sync::Arc;

    /// The relay's rule, on the edge relay's facts: a late pong is excused
    /// only while the gateway does not read the peer *and* the peer takes
    /// our bytes; bytes it took after a write had to wait are a sign of
    /// life. (Before, a peer the gateway did not read was excused even
    /// when it took nothing either: two stalled peers held a session.)
    /// One keepalive step on a ping sent at `sent`: its verdict, and the
    /// ping's time after it.
    async fn judge(keep: &Keepalive<'_>, mut sent: Option<u64>) -> (Result<(), Duty>, Option<u64>) {
        (keep.step(&mut sent).await.map(|_| ()), sent)
    }

    #[tokio::test]
    async fn a_late_pong_is_judged_by_the_relays_rule() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _peer = listener.accept().await.expect("accept");
        let activity = Arc::new(Activity::new());
        let (_r, w) = tokio::io::split(Io::Tcp(tcp));
        let writer = super::super::frames::writer(w, CLIENT, &activity);
        let keep = Keepalive {
            side: CLIENT,
            interval: Duration::from_secs(30),
            pong_timeout: Duration::ZERO,
            activity: &activity,
            writer: &writer,
        };
        // A ping went out at 1 ms and nothing came back since.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let late = || Some(1);
        let timeout = Err(Duty::PingTimeout(CLIENT));

        assert_eq!(
            judge(&keep, late()).await.0,
            timeout,
            "silent, read and writable"
        );
        // Not read by us (the other side does not take what it sent).
        activity.pause(CLIENT, true);
        let (r, sent) = judge(&keep, late()).await;
        assert!(r.is_ok() && sent > late(), "deadline starts again");
        // ... but it does not take our bytes either: both stalled.
        activity.block(CLIENT, true);
        assert_eq!(judge(&keep, late()).await.0, timeout, "paused and blocked");
        // It took bytes after a write had to wait: alive.
        activity.pause(CLIENT, false);
        activity.took(CLIENT);
        assert_eq!(
            judge(&keep, late()).await,
            (Ok(()), None),
            "a slow reader reads"
        );
    }
}
