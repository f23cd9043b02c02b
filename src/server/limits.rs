//! Per-client limits, checked at accept before a byte is read: the budget
//! of connections still in TLS or their request head (over all clients and
//! per source address), connections held per address, and the rate of new
//! connections per address (`governor`). One host trickling heads
//! (slowloris) or opening sockets it never uses fills its own budget, not
//! everyone's.
//!
//! The source is the socket peer: tidegate speaks no PROXY protocol yet,
//! and a forwarded address is only known after the head is read, too late
//! for a budget that protects reading heads.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Keyed rate-limiter state is pruned of idle addresses this often (in
/// admissions), so its memory follows the active clients.
const PRUNE_EVERY: u32 = 4096;

/// Why a connection was refused at accept; the `reason` label of
/// `tidegate_listener_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("too many handshakes in progress")]
    Handshakes,
    #[error("too many handshakes in progress from this address")]
    IpHandshakes,
    #[error("too many connections from this address")]
    IpConnections,
    #[error("too many new connections per second from this address")]
    IpRate,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Limited::Handshakes => "handshake_limit",
            Limited::IpHandshakes => "ip_handshake_limit",
            Limited::IpConnections => "ip_connection_limit",
            Limited::IpRate => "ip_rate_limit",
        }
    }

    /// What a plain-HTTP client is told (TLS clients are just closed: a
    /// TLS handshake costs more than the refusal is worth).
    pub fn response(self) -> &'static [u8] {
        match self {
            Limited::Handshakes => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
            _ => b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
        }
    }
}

/// What one address holds now.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    handshakes: usize,
    connections: usize,
}

/// The limits and their counters, fixed at start-up like the global cap.
pub struct ClientLimits {
    handshakes: Arc<Semaphore>,
    max_handshakes_per_ip: usize,
    max_connections_per_ip: Option<usize>,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    held: Mutex<HashMap<IpAddr, Held>>,
    admissions: AtomicU32,
}

/// The right to finish a handshake; dropped when the head has been read
/// and the policy decided.
pub struct HandshakeSlot {
    _permit: OwnedSemaphorePermit,
    owner: Arc<ClientLimits>,
    ip: IpAddr,
}

/// The address's share of `max_connections_per_ip`, held for the whole
/// connection; `None` when that limit is off (nothing is tracked).
pub struct ConnectionSlot(Option<(Arc<ClientLimits>, IpAddr)>);

impl ClientLimits {
    pub fn new(limits: &crate::config::Limits) -> Arc<ClientLimits> {
        let rate = limits
            .handshake_rate_per_ip
            .and_then(|(per_second, burst)| {
                let quota = Quota::per_second(NonZeroU32::new(per_second)?)
                    .allow_burst(NonZeroU32::new(burst)?);
                Some(RateLimiter::keyed(quota))
            });
        Arc::new(ClientLimits {
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            max_handshakes_per_ip: limits.max_handshakes_per_ip,
            max_connections_per_ip: limits.max_connections_per_ip,
            rate,
            held: Mutex::new(HashMap::new()),
            admissions: AtomicU32::new(0),
        })
    }

    /// Admit a new connection from `ip`, or say which limit it hit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(HandshakeSlot, ConnectionSlot), Limited> {
        if let Some(rate) = &self.rate {
            if self
                .admissions
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(PRUNE_EVERY)
            {
                rate.retain_recent();
            }
            rate.check_key(&ip).map_err(|_| Limited::IpRate)?;
        }
        let permit = Arc::clone(&self.handshakes)
            .try_acquire_owned()
            .map_err(|_| Limited::Handshakes)?;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let entry = held.entry(ip).or_default();
        if entry.handshakes >= self.max_handshakes_per_ip {
            return Err(Limited::IpHandshakes);
        }
        let tracked = match self.max_connections_per_ip {
            Some(max) if entry.connections >= max => return Err(Limited::IpConnections),
            Some(_) => {
                entry.connections += 1;
                true
            }
            None => false,
        };
        entry.handshakes += 1;
        drop(held);
        let handshake = HandshakeSlot {
            _permit: permit,
            owner: Arc::clone(self),
            ip,
        };
        let connection = ConnectionSlot(tracked.then(|| (Arc::clone(self), ip)));
        Ok((handshake, connection))
    }

    /// Addresses with a handshake or a tracked connection now.
    pub fn tracked_addresses(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    fn release(&self, ip: IpAddr, handshake: bool) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = held.get_mut(&ip) {
            match handshake {
                true => entry.handshakes = entry.handshakes.saturating_sub(1),
                false => entry.connections = entry.connections.saturating_sub(1),
            }
            if entry.handshakes == 0 && entry.connections == 0 {
                held.remove(&ip);
            }
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.owner.release(self.ip, true);
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some((owner, ip)) = &self.0 {
            owner.release(*ip, false);
        }
    }
}

impl ConnectionSlot {
    /// Is anything tracked (is the per-address connection limit on)?
    pub fn is_tracked(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawConfig};

    fn limits(extra: &str) -> Arc<ClientLimits> {
        let toml = format!(
            "[limits]\n{extra}\n[[listeners]]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"a\"\nendpoints = [\"ws://127.0.0.1:1\"]\n[[routes]]\nupstream = \"a\"\n"
        );
        let raw: RawConfig = toml::from_str(&toml).expect("test config parses");
        ClientLimits::new(&Config::from_raw(raw).expect("test config is valid").limits)
    }

    #[test]
    fn per_address_budgets_leave_others_alone() {
        let l = limits("max_handshakes = 3\nmax_handshakes_per_ip = 2\nmax_connections_per_ip = 2");
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let (h1, c1) = l.admit(a).unwrap();
        let (_h2, _c2) = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Limited::IpHandshakes));
        let (_h3, _c3) = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Limited::Handshakes));
        // A finished handshake frees its budget, not the connection's.
        drop(h1);
        assert_eq!(l.admit(a).err(), Some(Limited::IpConnections));
        drop(c1);
        assert!(l.admit(a).is_ok());
    }

    #[test]
    fn addresses_are_forgotten_when_idle() {
        let l = limits("max_connections_per_ip = 5");
        let a: IpAddr = "::1".parse().unwrap();
        let (h, c) = l.admit(a).unwrap();
        assert_eq!(l.tracked_addresses(), 1);
        drop(h);
        drop(c);
        assert_eq!(l.tracked_addresses(), 0);
    }

    #[test]
    fn rate_per_address() {
        let l = limits("handshake_rate_per_ip = 1\nhandshake_burst_per_ip = 2");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.admit(a).is_ok());
        assert!(l.admit(a).is_ok());
        assert_eq!(l.admit(a).err(), Some(Limited::IpRate));
        assert!(l.admit("10.0.0.2".parse().unwrap()).is_ok());
    }
}
