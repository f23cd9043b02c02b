//! Who may be subscribed to what: a route's allow patterns and, when the
//! route names a `channels_claim`, the channels the client's token grants.
//! Every subscription passes here, wherever it came from (the token's
//! claim, the upstream's 101 header, a SUBSCRIBE frame), so a client can
//! never be subscribed to a channel its token does not grant.

use super::SlowPolicy;
use std::sync::Arc;

/// A channel pattern of a route's `fanout.allow`: `*` matches any run of
/// characters (also none); everything else matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Box<str>);

impl Pattern {
    pub fn new(p: &str) -> Pattern {
        Pattern(p.into())
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative `*` matching with one backtrack point (linear for patterns
/// with a single `*`, quadratic at worst; names are ≤ 128 bytes).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// What a route's fan-out settings decide for one session.
#[derive(Debug)]
pub struct Access {
    /// What happens when the session's subscriber queue is full.
    pub policy: SlowPolicy,
    /// The subscriber queue's bound in bytes (each frame charged its size
    /// plus `QUEUED_FRAME_COST`).
    pub queue_bytes: usize,
    /// The route's allow patterns; empty allows any valid name.
    allow: Arc<[Pattern]>,
    /// `Some` when the route names a `channels_claim`: the channels the
    /// token grants (none if it has no such claim).
    granted: Option<Box<[Box<str>]>>,
}

impl Access {
    pub fn new(
        policy: SlowPolicy,
        queue_bytes: usize,
        allow: Arc<[Pattern]>,
        granted: Option<Vec<String>>,
    ) -> Access {
        Access {
            policy,
            queue_bytes,
            allow,
            granted: granted.map(|g| g.into_iter().map(Box::from).collect()),
        }
    }

    /// The access of one session: the route's own (shared), or — when the
    /// route names a `channels_claim` — a copy holding what the token
    /// grants (nothing, if the session has no identity or no such claim).
    pub fn for_session(
        route: &Arc<Access>,
        claim: bool,
        identity: Option<&crate::auth::Identity>,
    ) -> Arc<Access> {
        if !claim {
            return Arc::clone(route);
        }
        let granted = identity
            .and_then(|i| i.channels.clone())
            .unwrap_or_default();
        Arc::new(Access {
            policy: route.policy,
            queue_bytes: route.queue_bytes,
            allow: Arc::clone(&route.allow),
            granted: Some(granted.into_iter().map(Box::from).collect()),
        })
    }

    /// May a session with this access be subscribed to `channel`?
    pub fn permits(&self, channel: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|p| p.matches(channel));
        let granted = self
            .granted
            .as_ref()
            .is_none_or(|g| g.iter().any(|c| &**c == channel));
        allowed && granted
    }

    /// The channels the token grants, to subscribe at the start.
    pub fn granted(&self) -> &[Box<str>] {
        self.granted.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s: &str| Pattern::new(s);
        assert!(p("room.*").matches("room.5"));
        assert!(p("room.*").matches("room."));
        assert!(!p("room.*").matches("rooms.5"));
        assert!(p("*").matches("anything"));
        assert!(p("user.*.inbox").matches("user.42.inbox"));
        assert!(!p("user.*.inbox").matches("user.42.outbox"));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(p("exact").matches("exact"));
        assert!(!p("exact").matches("exactly"));
    }

    #[test]
    fn claim_and_patterns_must_both_allow() {
        let allow: Arc<[Pattern]> = vec![Pattern::new("room.*")].into();
        let a = Access::new(
            SlowPolicy::DropOldest,
            1024,
            Arc::clone(&allow),
            Some(vec!["room.1".into(), "admin".into()]),
        );
        assert!(a.permits("room.1"));
        assert!(!a.permits("room.2"), "not in the claim");
        assert!(
            !a.permits("admin"),
            "in the claim, not allowed by the route"
        );
        let open = Access::new(SlowPolicy::DropOldest, 1024, allow, None);
        assert!(open.permits("room.2"));
        assert!(!open.permits("lobby"));
        let any = Access::new(SlowPolicy::Close, 1024, Arc::from(vec![]), None);
        assert!(any.permits("lobby"));
    }
}
