//! The session's channel subscriptions (mux extension `fanout`): kept
//! while the session is between connections and replayed on the one it is
//! resumed on, so the application never sees a resume.

use super::{Link, SessionShared};
use crate::codec::Frame;
use crate::server::outbox::Outbox;
use crate::server::session::SendError;

impl SessionShared {
    /// Subscribe to `channel` (already checked); `Ok(true)` when the
    /// gateway carries the subscription. See `SessionSender::subscribe`.
    pub(crate) fn subscribe(&self, channel: &str) -> Result<bool, SendError> {
        self.channel_op(channel, true)
    }

    pub(crate) fn unsubscribe(&self, channel: &str) -> Result<bool, SendError> {
        self.channel_op(channel, false)
    }

    fn channel_op(&self, channel: &str, subscribe: bool) -> Result<bool, SendError> {
        let mut st = self.lock();
        if self.is_finished() {
            return Err(SendError::Closed);
        }
        let changed = if subscribe {
            st.channels.insert(channel.to_string())
        } else {
            st.channels.remove(channel)
        };
        if changed {
            match &st.link {
                Link::Attached { outbox, .. } => {
                    let outbox = outbox.clone();
                    if !push_channel_op(&outbox, self.id.id, channel, subscribe) {
                        // The connection ended and its reader has not
                        // detached us yet: send it after the resume.
                        st.channel_ops.push((channel.to_string(), subscribe));
                    }
                }
                Link::Detached { .. } => st.channel_ops.push((channel.to_string(), subscribe)),
                Link::Finished => {}
            }
        }
        Ok(st.fanout)
    }

    /// Is the session subscribed to `channel`?
    pub(crate) fn has_channel(&self, channel: &str) -> bool {
        self.lock().channels.contains(channel)
    }

    /// The channels the session is subscribed to.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.lock().channels.iter().cloned().collect()
    }

    /// Does the session's gateway carry its subscriptions (`fanout`)?
    pub(crate) fn is_fanout(&self) -> bool {
        self.lock().fanout
    }
}

/// SUBSCRIBE or UNSUBSCRIBE on a connection that negotiated `fanout`;
/// elsewhere subscriptions are the application's own (per-session sends).
/// False when the connection has ended.
pub(super) fn push_channel_op(
    outbox: &Outbox,
    session: u32,
    channel: &str,
    subscribe: bool,
) -> bool {
    !outbox.fanout
        || outbox.push_control(if subscribe {
            Frame::subscribe(session, channel)
        } else {
            Frame::unsubscribe(session, channel)
        })
}
