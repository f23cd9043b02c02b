//! DNS re-resolution of endpoint host names (`upstreams[].resolve_interval`,
//! `nameservers`) with hickory-resolver, so a Kubernetes headless Service
//! that scales, or a name that moves, changes where new connections go
//! without a restart. IP literals are never resolved.
//!
//! Each configured endpoint keeps the addresses of its last good answer;
//! `Upstream::open` spreads connections over them. Until the first answer,
//! or with re-resolution off, the system resolves the name at each connect
//! (as before). A failed lookup or an empty answer keeps the last
//! addresses: a DNS outage must not empty the upstream.

use super::Upstream;
use arc_swap::ArcSwapOption;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Time one lookup may take before the last answer is kept.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolved addresses of one configured endpoint.
#[derive(Default)]
pub(crate) struct Addresses {
    /// The last good answer; `None`: let the system resolve at connect.
    pub list: ArcSwapOption<Vec<SocketAddr>>,
    /// Where the next connection starts in `list`.
    pub next: AtomicUsize,
}

impl Addresses {
    /// The addresses to try for one connection, rotated so connections
    /// spread; `None`: connect by name.
    pub fn for_connect(&self) -> Option<Vec<SocketAddr>> {
        let list = self.list.load_full()?;
        let mut out = (*list).clone();
        if !out.is_empty() {
            let k = self.next.fetch_add(1, Ordering::Relaxed) % out.len();
            out.rotate_left(k);
        }
        Some(out)
    }
}

/// Whether `upstream` has a name to re-resolve.
pub(crate) fn wanted(upstream: &Upstream) -> bool {
    upstream.config.balance.resolve_interval.is_some()
        && upstream
            .config
            .endpoints
            .iter()
            .any(|e| e.host.parse::<IpAddr>().is_err())
}

fn resolver(nameservers: &[SocketAddr], interval: Duration) -> Option<TokioResolver> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if nameservers.is_empty() {
        match TokioResolver::builder(provider) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system DNS configuration; endpoint names are resolved at each connect");
                return None;
            }
        }
    } else {
        let mut config = ResolverConfig::new();
        for &addr in nameservers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, provider)
    };
    let options = builder.options_mut();
    // A cached answer must not outlive one interval: the point is to see
    // a change at the next round.
    options.positive_max_ttl = Some(interval);
    options.negative_max_ttl = Some(interval);
    options.timeout = LOOKUP_TIMEOUT / 2;
    Some(builder.build())
}

/// Re-resolve every named endpoint each interval, while `upstream` exists.
pub(crate) async fn run(
    upstream: Weak<Upstream>,
    interval: Duration,
    nameservers: Vec<SocketAddr>,
) {
    let Some(resolver) = resolver(&nameservers, interval) else {
        return;
    };
    loop {
        let Some(up) = upstream.upgrade() else { return };
        for (i, ep) in up.config.endpoints.iter().enumerate() {
            if ep.host.parse::<IpAddr>().is_ok() {
                continue;
            }
            let looked =
                tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(ep.host.as_str())).await;
            let mut addrs: Vec<SocketAddr> = match looked {
                Ok(Ok(answer)) => answer
                    .iter()
                    .map(|ip| SocketAddr::new(ip, ep.port))
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!(endpoint = %ep.url, error = %e, "DNS lookup failed; keeping the last addresses");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(endpoint = %ep.url, "DNS lookup timed out; keeping the last addresses");
                    continue;
                }
            };
            if addrs.is_empty() {
                continue;
            }
            addrs.sort_unstable();
            addrs.dedup();
            let slot = &up.addresses[i];
            if slot.list.load().as_deref() != Some(&addrs) {
                tracing::info!(endpoint = %ep.url, addresses = ?addrs, "endpoint addresses changed");
                up.state[i].metrics.addresses.set(addrs.len() as i64);
                slot.list.store(Some(Arc::new(addrs)));
            }
        }
        drop(up);
        tokio::time::sleep(interval).await;
    }
}
