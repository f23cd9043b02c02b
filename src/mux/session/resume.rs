//! Which mux connections a resuming session is still tied to
//! (docs/mux-protocol.md §6): the one that has its resumed OPEN, and the
//! ones it is leaving after a GOAWAY — those keep delivering what the
//! application sends there until they close, are told when the session
//! has been accepted elsewhere (so they can close), and forget it when it
//! ends.
//!
//! A connection that was offered the resumed OPEN and then sent GOAWAY
//! (every connection of the pool goes to one instance that is restarting:
//! the first GOAWAY moves the sessions to a sibling, whose own GOAWAY was
//! already on its way) is left like the one the session was on. The
//! application may have answered that OPEN and carried on there, replying
//! to client messages it got on the first connection; forgetting the
//! session on it dropped those replies (a client missed echoes in the
//! restart tests).

use super::Resume;
use crate::mux::conn::Conn;
use std::sync::Arc;

impl Resume {
    /// Connection `conn_id` sent GOAWAY (`goaway`) or ended. `current` is
    /// the connection the session was open on, when it is that one. The
    /// resumed OPEN it may hold is void; the session looks for another
    /// connection.
    pub(super) fn lost(&mut self, id: u32, conn_id: u64, goaway: bool, current: Option<Arc<Conn>>) {
        self.goaway |= goaway;
        if let Some(on) = self.on.take_if(|c| c.id == conn_id) {
            self.leave(id, on, goaway);
        }
        if let Some(old) = current {
            self.leave(id, old, goaway);
        }
    }

    /// After a GOAWAY the application may still send on `conn` for this
    /// session: keep it routable there until the session is accepted
    /// elsewhere. A connection that ended has nothing more to deliver.
    fn leave(&mut self, id: u32, conn: Arc<Conn>, goaway: bool) {
        if goaway {
            if !self.leaving.iter().any(|c| c.id == conn.id) {
                self.leaving.push(conn);
            }
        } else {
            conn.forget(id);
        }
    }

    /// The session was accepted on another connection: the ones it left
    /// close once all their sessions have moved (frames still in flight on
    /// them arrive meanwhile).
    pub(super) fn accepted(self, id: u32) {
        for c in self.leaving {
            c.moved_away(id);
        }
    }

    /// The session is over (ended, or the resume failed): no connection
    /// routes to it any more.
    pub(super) fn forget(self, id: u32) {
        for c in self.on.into_iter().chain(self.leaving) {
            c.forget(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Resume;
    use crate::config::MuxConfig;
    use crate::io::Io;
    use crate::mux::conn::Conn;
    use crate::mux::inbox::Inbox;
    use std::sync::{Arc, Weak};
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

    /// A connection over a loopback socket (nothing is written to it).
    async fn conn() -> (Arc<Conn>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), l.accept());
        let settings = Arc::new(MuxConfig {
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(10),
            open_timeout: Duration::from_secs(5),
            resume_grace: Duration::from_secs(30),
            session_queue_bytes: 1 << 20,
            connection_queue_bytes: 4 << 20,
            resume_buffer_bytes: 1 << 20,
            batch_bytes: 64 << 10,
            write_delay: Duration::ZERO,
            max_frame_bytes: 1 << 20,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        });
        let metrics = crate::metrics::Metrics::new()
            .mux
            .conn("app", "ws://app", 0);
        let io = Io::Tcp(ours.expect("connect"));
        let (c, _rd) = Conn::new(settings, metrics, "ws://app", Weak::new(), io, None);
        (c, theirs.expect("accept").0)
    }

    fn resuming() -> Resume {
        Resume {
            deadline: Instant::now() + Duration::from_secs(30),
            goaway: false,
            on: None,
            waiting: None,
            leaving: Vec::new(),
        }
    }

    /// One instance, two connections A and B: A's GOAWAY moves the session
    /// to B (resumed OPEN sent there), then B's GOAWAY arrives. The
    /// application may have accepted the OPEN on B and be replying there:
    /// B must keep routing the session's frames, and both A and B learn
    /// when it is accepted elsewhere.
    #[tokio::test]
    async fn a_connection_that_had_the_resumed_open_keeps_delivering_after_its_goaway() {
        let ((a, _pa), (b, _pb)) = (conn().await, conn().await);
        let inbox = Arc::new(Inbox::new(None));
        assert!(a.register(7, Arc::clone(&inbox)));
        let mut r = resuming();
        r.lost(7, a.id, true, Some(Arc::clone(&a)));
        assert!(
            b.register(7, Arc::clone(&inbox)),
            "resumed OPEN offered on B"
        );
        r.on = Some(Arc::clone(&b));
        r.lost(7, b.id, true, None);
        assert!(r.on.is_none(), "B takes no resume after its GOAWAY");
        assert_eq!(
            b.session_count(),
            1,
            "B still routes the application's frames to the session"
        );
        assert_eq!(a.session_count(), 1, "so does A");
        let left: Vec<u64> = r.leaving.iter().map(|c| c.id).collect();
        assert_eq!(left, [a.id, b.id]);
        r.accepted(7);
        // Moved, not forgotten: frames in flight still arrive until the
        // connections close.
        assert_eq!((a.session_count(), b.session_count()), (1, 1));
    }

    /// A connection that ended (no GOAWAY) delivers nothing more: it
    /// forgets the session, and the session keeps no hold on it.
    #[tokio::test]
    async fn a_lost_connection_is_forgotten() {
        let (b, _pb) = conn().await;
        let inbox = Arc::new(Inbox::new(None));
        assert!(b.register(9, Arc::clone(&inbox)));
        let mut r = resuming();
        r.on = Some(Arc::clone(&b));
        r.lost(9, b.id, false, None);
        assert_eq!(b.session_count(), 0);
        assert!(r.leaving.is_empty() && r.on.is_none());
    }
}
