//! Edge-terminated permessage-deflate: the gateway answers the client's
//! offer itself (with the route's levers) and speaks uncompressed to the
//! upstream. This module picks the answer and holds the global memory
//! budget; `codec` owns the zlib streams and `session` the relay that
//! decodes frames on such sessions (the zero-copy relay never sees them).

use super::params::{Params, WindowBits, MAX_WINDOW_BITS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// zlib cannot produce a raw deflate stream with an 8-bit window (it
/// silently uses 9), so the gateway never promises to compress with 8.
pub const MIN_ZLIB_BITS: u8 = 9;

/// A route's edge compression levers (`routes[].deflate`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Always answer `server_no_context_takeover`: the gateway's compressor
    /// exists only while a message is being compressed.
    pub server_no_context_takeover: bool,
    /// Always answer `client_no_context_takeover`: the inflater exists only
    /// while a message is being inflated.
    pub client_no_context_takeover: bool,
    /// Largest window the gateway compresses with (9..=15).
    pub server_max_window_bits: u8,
    /// Largest window asked of clients that say they can take a limit
    /// (8..=15); a client that cannot is inflated with 15 bits.
    pub client_max_window_bits: u8,
    /// zlib level, 0 (store) to 9.
    pub level: u32,
    /// Messages from the upstream shorter than this go uncompressed (RSV1
    /// clear); only whole single-frame messages are measured.
    pub min_size: u64,
}

impl EdgeConfig {
    /// The answer to the first offer the gateway can honour, if any.
    pub fn answer(&self, offers: &[Params]) -> Option<Params> {
        offers.iter().find_map(|o| self.answer_one(o))
    }

    fn answer_one(&self, offer: &Params) -> Option<Params> {
        let server_bits = self
            .server_max_window_bits
            .min(offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS));
        if server_bits < MIN_ZLIB_BITS {
            return None;
        }
        let client_max_window_bits = match offer.client_max_window_bits {
            None => None,
            Some(WindowBits::Any) if self.client_max_window_bits == MAX_WINDOW_BITS => None,
            Some(WindowBits::Any) => Some(WindowBits::Bits(self.client_max_window_bits)),
            Some(WindowBits::Bits(b)) => Some(WindowBits::Bits(b.min(self.client_max_window_bits))),
        };
        let answered_server_bits =
            offer.server_max_window_bits.is_some() || server_bits < MAX_WINDOW_BITS;
        Some(Params {
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: answered_server_bits.then_some(server_bits),
            client_max_window_bits,
        })
    }
}

/// What one session's contexts may hold at most, by the zlib formulas:
/// deflate `(1 << (bits + 2)) + (1 << (8 + 9))` (window, hash and pending
/// buffers at memLevel 8), inflate `(1 << bits) + 7 KiB` of state.
pub fn session_memory(p: &Params) -> u64 {
    let server_bits = p.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS) as u64;
    let client_bits = match p.client_max_window_bits {
        Some(WindowBits::Bits(b)) => b.max(MIN_ZLIB_BITS),
        _ => MAX_WINDOW_BITS,
    } as u64;
    (1 << (server_bits + 2)) + (1 << 17) + (1 << client_bits) + 7 * 1024
}

/// The global compression-memory budget (`limits.deflate_memory`): each
/// edge session reserves its worst case when it negotiates; when the budget
/// cannot take one more, the extension is declined for new sessions (they
/// run uncompressed) and the decline is counted.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Reserve `bytes`, or `None` if the budget is spent.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|n| *n <= self.limit)?;
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Reservation {
                        budget: Arc::clone(self),
                        bytes,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// Memory held for one session; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
