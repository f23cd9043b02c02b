//! What the gateway will run with where the file leaves a value to be
//! derived at start: the worker count, a mux upstream's pool size, and
//! the connection cap under the open-file limit. `check-config` prints
//! these after the configuration, as comments, so the values an operator
//! did not write down are still visible before a start.

use super::{Config, RouteMode};
use crate::fds::{derive, Demand};

/// The derived values as a block of TOML comments to print after the
/// configuration (empty when there are none), under this process's open-
/// file limit: the hard one, which a start raises the soft one to.
pub fn derived_comments(config: &Config) -> String {
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    let lines = derived(config, nofile.map(|(_, hard)| hard));
    if lines.is_empty() {
        return String::new();
    }
    let mut out =
        "\n# Derived at start (unset above, or bounded by this shell's open-file limit):\n"
            .to_string();
    for line in lines {
        out.push_str("# ");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One line per derived value. `nofile`: the open-file limit the gateway
/// would start under, i.e. the hard limit its soft one is raised to
/// (`None`: unknown, the cap is not shown).
pub fn derived(config: &Config, nofile: Option<u64>) -> Vec<String> {
    let runtime = &config.runtime;
    let mut lines = Vec::new();
    if runtime.workers.is_none() {
        lines.push(format!(
            "runtime.workers = {} (unset: one per core)",
            runtime.workers()
        ));
    }
    let mut shown: Vec<&str> = Vec::new();
    for route in config.routes.iter().filter(|r| r.mode == RouteMode::Mux) {
        let up = &route.upstream;
        if up.pool_size.is_some() || shown.contains(&up.name.as_str()) {
            continue;
        }
        shown.push(&up.name);
        lines.push(format!(
            "upstreams.{}.pool_size = {} (unset: one mux connection per worker, at least 2)",
            up.name,
            up.slots_per_endpoint(runtime)
        ));
    }
    if let Some(nofile) = nofile {
        let demand = Demand::of(config);
        let cap = derive(nofile, config.limits.max_connections, demand);
        let verdict = if cap.lowered {
            "lowered from the configured value to what the open-file limit fits"
        } else {
            "fits the open-file limit"
        };
        lines.push(format!(
            "limits.max_connections in force = {} ({verdict}: nofile {nofile}, {} per client, {} reserved)",
            cap.connections, demand.per_client, demand.reserve
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::derived;
    use crate::config::tests::{load, GOOD};
    use crate::config::Config;

    /// The reference test configuration, its route in mux mode, on 3
    /// workers, with `extra` lines in the upstream.
    fn mux(extra: &str) -> Config {
        let text = GOOD.replace("endpoints =", &format!("{extra}endpoints ="));
        load(
            &format!("{text}mode = \"mux\"\n[runtime]\nworkers = 3\n"),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn an_unset_pool_size_is_shown_with_its_value() {
        assert_eq!(
            derived(&mux(""), None),
            ["upstreams.app.pool_size = 3 (unset: one mux connection per worker, at least 2)"]
        );
        assert!(
            derived(&mux("pool_size = 5\n"), None).is_empty(),
            "a value the file sets is not repeated"
        );
    }

    #[test]
    fn the_connection_cap_is_shown_under_a_given_limit() {
        let lines = derived(&mux(""), Some(1000));
        let cap = lines.last().unwrap();
        assert!(
            cap.starts_with("limits.max_connections in force = "),
            "{cap}"
        );
        assert!(
            cap.contains("lowered"),
            "10,000 do not fit 1,000 descriptors: {cap}"
        );
        assert!(
            cap.contains("1 per client"),
            "mux clients hold one descriptor: {cap}"
        );
    }
}
