//! The access log: one line per session, written when it ends, under the
//! tracing target `tidegate::access` (so `TIDEGATE_LOG` can route, raise
//! or silence it apart from the operational log).
//!
//! Off the hot path: a session keeps one `Option<Box<Record>>`, `None`
//! unless its route logs (`log.access.enabled`, `routes[].access_log`),
//! the sample picked it (`access_log_sample`) and the log filter lets the
//! target through. Only such sessions pay for the record (client address,
//! subject, endpoint, running totals); the totals are added where the
//! relay already flushes its per-connection tallies into the metrics, and
//! the line is written once, at the end.

use std::net::SocketAddr;
use std::time::Duration;

/// The tracing target of access lines.
pub const TARGET: &str = "tidegate::access";

/// What a logged session remembers for its line.
#[derive(Debug)]
pub struct Record {
    /// The client's address as the gateway saw it.
    client: SocketAddr,
    /// Who authenticated (JWT `sub`, API key name); `None` without auth.
    subject: Option<Box<str>>,
    /// The upstream endpoint URL the session went to.
    endpoint: Box<str>,
    messages_from_client: u64,
    bytes_from_client: u64,
    messages_to_client: u64,
    bytes_to_client: u64,
    /// Close code the client sent, if it sent one.
    client_close: Option<u16>,
    /// Close code the upstream (application) sent, if it sent one.
    upstream_close: Option<u16>,
    /// Who ended the session first: `client`, `upstream` or `gateway`.
    closed_by: Option<Closer>,
    /// The first cause of the end, a fixed text.
    reason: Option<&'static str>,
}

impl Record {
    /// A record for a new session, or `None` when this session is not
    /// logged (route off, not sampled, or the target filtered out) — the
    /// common case costs no allocation.
    pub fn start(
        sample: f64,
        client: SocketAddr,
        subject: Option<&str>,
        endpoint: &str,
    ) -> Option<Box<Record>> {
        if sample <= 0.0 || !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return None;
        }
        if sample < 1.0 && rand::random::<f64>() >= sample {
            return None;
        }
        Some(Box::new(Record::new(client, subject, endpoint)))
    }

    /// A record with nothing counted yet.
    fn new(client: SocketAddr, subject: Option<&str>, endpoint: &str) -> Record {
        Record {
            client,
            subject: subject.map(Box::from),
            endpoint: Box::from(endpoint),
            messages_from_client: 0,
            bytes_from_client: 0,
            messages_to_client: 0,
            bytes_to_client: 0,
            client_close: None,
            upstream_close: None,
            closed_by: None,
            reason: None,
        }
    }

    /// Add a tally flushed from the client side (messages, payload bytes).
    pub fn from_client(&mut self, messages: u64, bytes: u64) {
        self.messages_from_client += messages;
        self.bytes_from_client += bytes;
    }

    /// Add a tally flushed towards the client.
    pub fn to_client(&mut self, messages: u64, bytes: u64) {
        self.messages_to_client += messages;
        self.bytes_to_client += bytes;
    }

    /// `side` ended the session (`code`: its Close code, if it sent one;
    /// `reason`: why, a fixed text). The first call decides `closed_by`.
    pub fn closed(&mut self, side: Closer, code: Option<u16>, reason: &'static str) {
        match side {
            Closer::Client => self.client_close = self.client_close.or(code),
            Closer::Upstream => self.upstream_close = self.upstream_close.or(code),
            Closer::Gateway => {}
        }
        if self.closed_by.is_none() {
            self.closed_by = Some(side);
            self.reason = Some(reason);
        }
    }

    /// Close codes seen at the end (the relay knows them only then).
    pub fn codes(&mut self, client: Option<u16>, upstream: Option<u16>) {
        self.client_close = self.client_close.or(client);
        self.upstream_close = self.upstream_close.or(upstream);
    }

    /// Write the line (`mode`: `passthrough` or `mux`).
    pub fn emit(&self, route: &str, mode: &'static str, duration: Duration) {
        tracing::info!(
            target: TARGET,
            route,
            mode,
            client = %self.client,
            subject = self.subject.as_deref().unwrap_or("-"),
            endpoint = &*self.endpoint,
            duration_ms = duration.as_millis() as u64,
            messages_from_client = self.messages_from_client,
            bytes_from_client = self.bytes_from_client,
            messages_to_client = self.messages_to_client,
            bytes_to_client = self.bytes_to_client,
            client_close = self.client_close,
            upstream_close = self.upstream_close,
            closed_by = self.closed_by.unwrap_or(Closer::Gateway).label(),
            reason = self.reason.unwrap_or("closed by the gateway"),
            "session end"
        );
    }
}

/// One plain HTTP request, for its access line.
#[derive(Debug)]
pub struct HttpLine<'a> {
    pub route: &'a str,
    pub client: SocketAddr,
    pub subject: Option<&'a str>,
    /// The endpoint URL that answered, `-` when none did.
    pub endpoint: &'a str,
    pub method: &'a str,
    /// The path as sent, without the query (a query may hold a token).
    pub path: &'a str,
    /// What the client got (the gateway's own refusals included).
    pub status: u16,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub duration: Duration,
}

/// Write the line of a finished plain HTTP request, when the route logs
/// and the sample picks it (`mode` is `http`; nothing is allocated when
/// it is not logged).
pub fn http_request(line: &HttpLine<'_>, sample: f64) {
    if sample <= 0.0 || !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    if sample < 1.0 && rand::random::<f64>() >= sample {
        return;
    }
    tracing::info!(
        target: TARGET,
        route = line.route,
        mode = "http",
        client = %line.client,
        subject = line.subject.unwrap_or("-"),
        endpoint = line.endpoint,
        method = line.method,
        path = line.path,
        status = line.status,
        duration_ms = line.duration.as_millis() as u64,
        bytes_from_client = line.bytes_from_client,
        bytes_to_client = line.bytes_to_client,
        "request end"
    );
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    Client,
    Upstream,
    Gateway,
}

impl Closer {
    pub fn label(self) -> &'static str {
        match self {
            Closer::Client => "client",
            Closer::Upstream => "upstream",
            Closer::Gateway => "gateway",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let client = "127.0.0.1:1".parse().expect("literal address");
        Record::new(client, None, "ws://a")
    }

    #[test]
    fn the_first_closer_wins_and_codes_are_kept() {
        let mut r = record();
        r.closed(Closer::Upstream, Some(4000), "upstream closed");
        r.closed(Closer::Client, Some(1000), "client closed");
        r.codes(Some(1001), None);
        assert_eq!(r.closed_by, Some(Closer::Upstream));
        assert_eq!(r.reason, Some("upstream closed"));
        assert_eq!((r.client_close, r.upstream_close), (Some(1000), Some(4000)));
    }

    #[test]
    fn no_record_when_the_route_does_not_log() {
        let addr = "127.0.0.1:1".parse().expect("literal address");
        assert!(Record::start(0.0, addr, None, "ws://a").is_none());
    }
}
