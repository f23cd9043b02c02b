//! A mux chat application: every session whose path is `/ROOM` is in room
//! ROOM, and every message one of them sends goes to every session of the
//! room (the sender included).
//!
//! ```text
//! cargo run -p tidegate-mux --example chat -- --listen 127.0.0.1:9001
//! ```
//!
//! Broadcast never waits for one member: a member whose connection queue
//! is full (it reads slower than the room talks) is closed with 1008; a
//! member being resumed on another connection misses what is said
//! meanwhile.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tidegate_mux::server::{Event, Incoming, MuxServer, SendError, SessionId, SessionSender};
use tidegate_mux::AcceptBody;

/// Members of each room, by session.
type Rooms = Arc<Mutex<HashMap<String, HashMap<SessionId, SessionSender>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: chat [--listen ADDR]");
                std::process::exit(64);
            }
        }
    }
    let server = MuxServer::bind(listen.as_str()).await?;
    println!("tidegate-mux chat listening addr={}", server.local_addr());
    std::io::stdout().flush()?;
    let rooms = Rooms::default();
    while let Some(incoming) = server.accept().await {
        tokio::spawn(member(incoming, rooms.clone()));
    }
    Ok(())
}

fn lock(
    rooms: &Rooms,
) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<SessionId, SessionSender>>> {
    rooms.lock().unwrap_or_else(|p| p.into_inner())
}

async fn member(incoming: Incoming, rooms: Rooms) {
    let room = incoming.open.path.clone();
    let protocol = incoming.open.protocols.first().cloned();
    let mut session = incoming.accept(AcceptBody {
        protocol,
        headers: Vec::new(),
    });
    let me = session.id().clone();
    lock(&rooms)
        .entry(room.clone())
        .or_default()
        .insert(me.clone(), session.sender());
    while let Some(event) = session.recv().await {
        let members: Vec<SessionSender> = match lock(&rooms).get(&room) {
            Some(m) => m.values().cloned().collect(),
            None => Vec::new(),
        };
        for m in members {
            let sent = match &event {
                Event::Text(t) => m.try_send_text(t.clone()),
                Event::Binary(b) => m.try_send_binary(b.clone()),
                Event::Closed(_) => Ok(()),
            };
            if sent == Err(SendError::Full) {
                let _ = m.close(1008, "slow consumer");
            }
        }
        if matches!(event, Event::Closed(_)) {
            break;
        }
    }
    let mut rooms = lock(&rooms);
    if let Some(members) = rooms.get_mut(&room) {
        members.remove(&me);
        if members.is_empty() {
            rooms.remove(&room);
        }
    }
}
