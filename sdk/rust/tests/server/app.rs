//! The application the tests run on the SDK: echo, with a few paths that
//! make it behave differently, and a log of what it saw.

use std::sync::Arc;

use tidegate_mux::server::{Config, Event, Incoming, MuxServer, Session, SessionId};
use tidegate_mux::{AcceptBody, Close, RejectBody};
use tokio::sync::mpsc;

/// What the application saw, for the tests to check.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// An OPEN reached `accept()`.
    Incoming { id: SessionId, resumed: bool },
    /// A session ended with this close.
    Closed { id: SessionId, close: Close },
}

/// An SDK server with the test application running on it.
pub struct App {
    pub server: Arc<MuxServer>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl App {
    pub async fn start(config: Config) -> App {
        let server = Arc::new(
            MuxServer::bind_with("127.0.0.1:0", config)
                .await
                .expect("bind on port 0"),
        );
        let (tx, seen) = mpsc::unbounded_channel();
        let s = server.clone();
        tokio::spawn(async move {
            while let Some(incoming) = s.accept().await {
                let _ = tx.send(Seen::Incoming {
                    id: incoming.id.clone(),
                    resumed: incoming.resumed,
                });
                tokio::spawn(serve(incoming, tx.clone()));
            }
        });
        App { server, seen }
    }

    /// The next thing the application saw.
    pub async fn next_seen(&mut self) -> Seen {
        super::gateway::patiently("the application", self.seen.recv())
            .await
            .expect("the application task runs")
    }
}

/// `/reject`: REJECT 403. `/hold`: accept, never read (a slow consumer).
/// Otherwise echo; text `!close CODE REASON` closes the session, `!later
/// MS TEXT` sends TEXT after MS milliseconds and `!later MS close CODE`
/// closes then (from another task, through a `SessionSender`).
async fn serve(incoming: Incoming, seen: mpsc::UnboundedSender<Seen>) {
    match incoming.open.path.as_str() {
        "/reject" => {
            incoming.reject(RejectBody {
                status: 403,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: "rejected by app".into(),
            });
        }
        "/hold" => {
            let session = incoming.accept(AcceptBody::default());
            // Keep the session (dropping it would close it), read nothing.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            drop(session);
        }
        _ => {
            let protocol = incoming.open.protocols.first().cloned();
            let session = incoming.accept(AcceptBody {
                protocol,
                headers: vec![("x-app".into(), "test".into())],
            });
            echo(session, seen).await;
        }
    }
}

async fn echo(mut session: Session, seen: mpsc::UnboundedSender<Seen>) {
    while let Some(event) = session.recv().await {
        match event {
            Event::Text(t) => {
                if let Some(cmd) = t.strip_prefix("!later ") {
                    later(&session, cmd);
                } else if let Some(cmd) = t.strip_prefix("!close ") {
                    let (code, reason) = cmd.split_once(' ').unwrap_or((cmd, ""));
                    let code = code.parse().expect("test sends a numeric code");
                    session.close(code, reason).expect("close a live session");
                } else {
                    let _ = session.send_text(t).await;
                }
            }
            Event::Binary(b) => {
                let _ = session.send_binary(b).await;
            }
            Event::Closed(close) => {
                let _ = seen.send(Seen::Closed {
                    id: session.id().clone(),
                    close,
                });
            }
        }
    }
}

fn later(session: &Session, cmd: &str) {
    let (ms, what) = cmd.split_once(' ').expect("!later MS WHAT");
    let ms: u64 = ms.parse().expect("milliseconds");
    let what = what.to_string();
    let sender = session.sender();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        match what.strip_prefix("close ") {
            Some(code) => {
                let code = code.parse().expect("numeric code");
                sender.close(code, "later").expect("session still open");
            }
            None => sender.send_text(what).await.expect("sent after resume"),
        }
    });
}
