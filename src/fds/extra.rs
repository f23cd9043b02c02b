//! Descriptors beyond the clients' share. The connection cap promises each
//! client its descriptors (`Demand::per_client`); fan-out's direct
//! delivery keeps one more per subscribed plain-TCP session, a duplicate of
//! its client's socket (`fanout::subscriber::direct`). Those come only
//! from what the cap leaves over, so subscribers can never take a
//! descriptor an accepted client or its upstream connect needs. When none
//! is left, a subscriber goes without one and its deliveries take its
//! queue.

use std::sync::atomic::{AtomicU64, Ordering};

/// The descriptors left over, as a count that is taken from and given
/// back.
pub struct Ledger {
    room: AtomicU64,
}

/// One descriptor taken from a [`Ledger`]; given back when dropped.
pub struct Extra {
    ledger: &'static Ledger,
}

impl Ledger {
    pub const fn new(room: u64) -> Ledger {
        Ledger {
            room: AtomicU64::new(room),
        }
    }

    /// Start over with `room` descriptors (once the cap is known).
    pub fn reset(&self, room: u64) {
        self.room.store(room, Ordering::Relaxed);
    }

    pub fn room(&self) -> u64 {
        self.room.load(Ordering::Relaxed)
    }

    /// One descriptor, if any is left.
    pub fn take(&'static self) -> Option<Extra> {
        self.room
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .ok()
            .map(|_| Extra { ledger: self })
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        self.ledger.room.fetch_add(1, Ordering::Relaxed);
    }
}

/// The process's ledger: unbounded until the connection cap is derived
/// (unit tests that never start a gateway), then what the cap leaves over
/// (`connection_cap`).
pub static EXTRA: Ledger = Ledger::new(u64::MAX / 2);

#[cfg(test)]
mod tests {
    use super::Ledger;

    /// Taken until none is left, and each one given back on drop.
    #[test]
    fn extras_are_taken_and_given_back() {
        static L: Ledger = Ledger::new(2);
        let a = L.take().expect("first");
        let b = L.take().expect("second");
        assert!(L.take().is_none(), "none left");
        drop(a);
        let c = L.take().expect("one given back");
        assert_eq!(L.room(), 0);
        drop((b, c));
        assert_eq!(L.room(), 2);
    }
}
