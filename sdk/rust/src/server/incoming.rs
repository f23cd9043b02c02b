//! A new OPEN waiting for the application's answer (docs/mux-protocol.md
//! §4): ACCEPT turns it into a [`Session`], REJECT refuses the client
//! before its 101. An `Incoming` dropped unanswered is rejected with 503,
//! so the gateway's client never waits for `mux.open_timeout`.

use std::sync::Arc;

use super::session::{Session, SessionId, SessionShared};
use crate::codec::{AcceptBody, OpenBody, RejectBody};

/// An OPEN from the gateway.
pub struct Incoming {
    /// What the client asked for: path, query, headers, identity…
    pub open: OpenBody,
    /// The gateway re-opened a session this process does not know (it was
    /// opened by another instance of the application, or its resume grace
    /// ran out): treat it like a reconnecting client.
    pub resumed: bool,
    /// The session's key, stable across resumes.
    pub id: SessionId,
    /// The session's state and inbound queue until answered.
    pending: Option<Arc<SessionShared>>,
}

impl Incoming {
    pub(crate) fn new(open: OpenBody, resumed: bool, shared: Arc<SessionShared>) -> Incoming {
        Incoming {
            open,
            resumed,
            id: shared.id.clone(),
            pending: Some(shared),
        }
    }

    /// Accept: the gateway answers the client 101 with `body.protocol`
    /// (which must be one of `open.protocols`) and `body.headers`.
    pub fn accept(mut self, body: AcceptBody) -> Session {
        let shared = self
            .pending
            .take()
            .expect("pending is only taken by accept, reject or drop, which consume self");
        shared.accept(&body);
        Session::new(shared, std::mem::take(&mut self.open))
    }

    /// Reject: the client gets `body.status` (400–599), headers and body.
    pub fn reject(mut self, body: RejectBody) {
        if let Some(shared) = self.pending.take() {
            shared.reject(&body);
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(shared) = self.pending.take() {
            shared.reject(&RejectBody {
                status: 503,
                headers: Vec::new(),
                body: "the application did not answer".into(),
            });
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("resumed", &self.resumed)
            .field("open", &self.open)
            .finish()
    }
}
