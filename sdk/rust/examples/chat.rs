//! A mux chat application: a session whose path is `/ROOM` is in room
//! ROOM, its query names it (`?nick=ada`), and every message one member
//! sends goes to everyone in the room as `nick: text`.
//!
//! ```text
//! cargo run -p tidegate-mux --example chat -- --listen 127.0.0.1:9001
//! ```
//!
//! Built on [`Room`]: when the gateway offers extension `fanout` a room is
//! a gateway channel — joining is one SUBSCRIBE and a broadcast one
//! PUBLISH that the gateway delivers to every member, encoded once.
//! Otherwise a broadcast is a `try_send` per member that never waits for
//! one of them (a member whose connection queue is full, or that is being
//! resumed, misses that message; the room goes on). Same code either way. A session that arrives resumed after a
//! restart of this process is rebuilt from its OPEN like a new one, without
//! the "joined" notice. SIGTERM: GOAWAY and drain (`run_until_signal`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use tidegate_mux::server::{run_until_signal, Event, Incoming, MuxServer, Room, DRAIN_MAX};
use tidegate_mux::AcceptBody;

/// Rooms by name.
type Rooms = Arc<Mutex<HashMap<String, Room>>>;

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
    run_until_signal(&server, DRAIN_MAX, move |incoming| {
        member(incoming, rooms.clone())
    })
    .await
}

fn lock(rooms: &Rooms) -> MutexGuard<'_, HashMap<String, Room>> {
    rooms.lock().unwrap_or_else(|p| p.into_inner())
}

async fn member(incoming: Incoming, rooms: Rooms) {
    let name = incoming.open.path.clone();
    // Per-session state comes from the OPEN only, so a resumed session
    // (incoming.resumed: the client never left) is rebuilt the same way.
    let nick = incoming
        .open
        .param("nick")
        .unwrap_or_else(|| format!("guest-{}", incoming.id.id % 10_000));
    let resumed = incoming.resumed;
    let protocol = incoming.open.protocols.first().cloned();
    let mut session = incoming.accept(AcceptBody {
        protocol,
        headers: Vec::new(),
    });
    let me = session.id().clone();
    {
        let mut rooms = lock(&rooms);
        let room = rooms
            .entry(name.clone())
            .or_insert_with(|| Room::new(&name));
        room.join(session.sender());
        if !resumed {
            room.broadcast_text(&format!("* {nick} joined"), Some(&me));
        }
    }
    while let Some(event) = session.recv().await {
        let line = match event {
            Event::Text(t) => format!("{nick}: {t}"),
            Event::Binary(b) => format!("{nick}: {}", String::from_utf8_lossy(&b)),
            // The last event: the code says who closed and why.
            Event::Closed(c) => format!("* {nick} left ({})", c.code.unwrap_or(1005)),
        };
        if let Some(room) = lock(&rooms).get_mut(&name) {
            room.broadcast_text(&line, None);
        }
    }
    let mut rooms = lock(&rooms);
    if let Some(room) = rooms.get_mut(&name) {
        room.leave(&me);
        if room.is_empty() {
            rooms.remove(&name);
        }
    }
}
