//! The handshake phase of a mux route: describe the client's request in an
//! OPEN, send it on a pool connection, and wait for the application's
//! ACCEPT (→ 101) or REJECT (→ its status) before the client hears
//! anything.

use super::conn::{Conn, Out};
use super::inbox::{Event, Inbox};
use super::pool::{next_session_id, Pool};
use crate::handshake::{field, Rejection};
use crate::upstream::{Affinity, MAX_RELAYED_BODY};
use bytes::Bytes;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use tidegate_mux::codec::{Close, Frame, FrameType};
use tidegate_mux::AcceptBody;
use tokio::time::{timeout_at, Instant};

/// An accepted session, ready for its 101.
pub struct Opened {
    pub id: u32,
    pub conn: Arc<Conn>,
    pub inbox: Arc<Inbox>,
    pub accept: AcceptBody,
    /// Index in the upstream's endpoints of the one that accepted.
    pub endpoint: usize,
}

/// Send OPEN and wait for the answer until `deadline`.
/// The connection is chosen by the upstream's balancing policy on
/// `affinity`.
/// `access`: the session's fan-out policy and grants.
pub async fn open(
    pool: &Pool,
    (body, offered): (&Bytes, &[String]),
    affinity: &Affinity<'_>,
    deadline: Instant,
    access: Arc<crate::fanout::Access>,
) -> Result<Opened, Rejection> {
    let id = next_session_id();
    let inbox = Arc::new(Inbox::new(Some(access)));
    let opened = open_on(pool, (body, offered), affinity, deadline, (id, &inbox)).await;
    if opened.is_err() {
        // The application may have subscribed the session before it
        // refused it (or before the answer timed out).
        inbox.end_fanout();
    }
    opened
}

async fn open_on(
    pool: &Pool,
    (body, offered): (&Bytes, &[String]),
    affinity: &Affinity<'_>,
    deadline: Instant,
    (id, inbox): (u32, &Arc<Inbox>),
) -> Result<Opened, Rejection> {
    loop {
        let Some((endpoint, conn)) = pool.pick_until(affinity, deadline).await else {
            return Err(Rejection::MuxUnavailable);
        };
        if !conn.register(id, Arc::clone(inbox)) {
            continue;
        }
        conn.send(Out::frame(&Frame::new(
            FrameType::Open,
            0,
            id,
            body.clone(),
        )));
        let answer = poll_fn(|cx| loop {
            match inbox.pop(cx) {
                // SUBSCRIBE before ACCEPT: the session picks its
                // subscriber up from the inbox when it starts.
                Some(Event::Subscribed(_)) => continue,
                Some(e) => return Poll::Ready(e),
                None => return Poll::Pending,
            }
        });
        let refuse = |conn: &Conn, code: u16, why: &str| {
            conn.send(Out::frame(&Frame::close(id, &Close::new(code, why))));
            conn.forget(id);
        };
        match timeout_at(deadline, answer).await {
            Err(_) => {
                refuse(&conn, 1001, "open timeout");
                return Err(Rejection::UpstreamTimeout);
            }
            Ok(Event::Accept { conn, body }) => {
                let answer = accepted(body, offered);
                if let Err((code, why, _)) = &answer {
                    refuse(&conn, *code, why);
                }
                return answer.map_err(|(_, _, r)| r).map(|accept| Opened {
                    id,
                    conn,
                    inbox: Arc::clone(inbox),
                    accept,
                    endpoint,
                });
            }
            Ok(Event::Reject(r)) => return Err(rejected(r)),
            // The connection went away before answering: try another.
            Ok(Event::Lost { .. }) => {
                conn.forget(id);
                continue;
            }
            Ok(_) => {
                refuse(&conn, 1002, "frame before ACCEPT");
                return Err(Rejection::UpstreamBadResponse);
            }
        }
    }
}

/// Check an ACCEPT: the sub-protocol must be one the client offered, and
/// the application's headers go into the client's 101 — no handshake or
/// hop-by-hop header, nothing that is not a valid header line. `Err`: the
/// CLOSE to send the application and the client's rejection.
fn accepted(
    mut body: AcceptBody,
    offered: &[String],
) -> Result<AcceptBody, (u16, &'static str, Rejection)> {
    if body.protocol.as_ref().is_some_and(|p| !offered.contains(p)) {
        let why = "sub-protocol was not offered";
        return Err((1002, why, Rejection::UpstreamBadResponse));
    }
    body.headers
        .retain(|(n, _)| !crate::upstream::is_handshake_or_hop_header(n));
    if !field::headers_ok(&body.headers) {
        let why = "ACCEPT header is not valid HTTP";
        return Err((1002, why, Rejection::UpstreamInvalidHeader));
    }
    Ok(body)
}

/// A REJECT as the client's answer: its status (400–599) and body, and a
/// Content-Type only if it is a valid header value.
fn rejected(r: tidegate_mux::RejectBody) -> Rejection {
    if !(400..=599).contains(&r.status) || r.body.len() > MAX_RELAYED_BODY {
        return Rejection::UpstreamBadResponse;
    }
    let content_type = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone());
    if content_type
        .as_deref()
        .is_some_and(|v| !field::is_field_value(v))
    {
        return Rejection::UpstreamInvalidHeader;
    }
    Rejection::UpstreamStatus {
        status: r.status,
        content_type,
        body: r.body.into_bytes(),
    }
}
