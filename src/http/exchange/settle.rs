//! How one attempt of an exchange ends: the connection pooled or
//! discarded, the endpoint's outcome reported to its health tracking
//! (passive ejection), and whether the request may be sent again on a
//! new connection.

use super::{Ended, Exchange, HttpError, Progress, Report, Side};
use crate::http::body::ClientEvent;
use crate::http::pool::Conn;
use crate::upstream::Outcome;

impl Exchange<'_> {
    /// What one attempt's outcome means for the exchange: its end, or
    /// `None` to send the request again on a new connection (`retry`: the
    /// first attempt of a request without a body).
    pub(super) fn settle(
        &self,
        side: Side,
        conn: Conn,
        state: &Progress<'_>,
        report: &mut Report,
        retry: bool,
    ) -> Option<Ended> {
        match side {
            Side::Upstream(Ok(done)) => {
                self.upstream
                    .report(conn.endpoint, outcome_of(report.status));
                report.keep_alive = state.body_done && !done.close;
                match state.body_done && done.reusable {
                    true => self.route.pool.put(conn),
                    false => conn.discard(),
                }
                Some(Ended::Answered(std::mem::take(report)))
            }
            Side::Upstream(Err(HttpError::ClientGone)) => {
                conn.discard();
                Some(Ended::Gone(std::mem::take(report)))
            }
            Side::Upstream(Err(e)) => {
                // Safe to send again: the upstream closed a pooled
                // connection before answering (its keep-alive ran out
                // as the request went), nothing reached the client,
                // and sending it twice cannot do anything once would
                // not (idempotent method, no body).
                let retry = retry
                    && conn.reused
                    && e.retryable()
                    && state.out.status == 0
                    && is_idempotent(&self.head.method);
                conn.discard();
                if retry {
                    return None;
                }
                self.upstream
                    .report(report.endpoint.unwrap_or(0), Outcome::ServerError);
                let report = std::mem::take(report);
                Some(match state.out.head_sent {
                    true => Ended::Answered(report),
                    false => Ended::Refused(e, report),
                })
            }
            Side::Client(ClientEvent::Gone) => {
                conn.discard();
                Some(Ended::Gone(std::mem::take(report)))
            }
            Side::Client(ClientEvent::Refused(e)) => {
                conn.discard();
                let report = std::mem::take(report);
                Some(match state.out.head_sent {
                    true => Ended::Answered(report),
                    false => Ended::Refused(e, report),
                })
            }
        }
    }
}

/// RFC 9110 §9.2.2: a request that may be sent twice.
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

fn outcome_of(status: u16) -> Outcome {
    match status {
        500..=599 => Outcome::ServerError,
        _ => Outcome::Ok,
    }
}
