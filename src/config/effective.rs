//! What the gateway will run with where the file leaves a value to be
//! derived at start: the worker count, a mux upstream's pool size, and
//! the connection cap under the open-file limit. `check-config` prints
//! these after the configuration, as comments, so the values an operator
//! did not write down are still visible before a start.

use super::runtime::Layout;
use super::{Config, RouteMode};
use crate::fds::{derive, Demand};

/// One line per derived value. `nofile`: the open-file limit the gateway
/// would start under, i.e. the hard limit its soft one is raised to
/// (`None`: unknown, the cap is not shown).
pub fn derived(config: &Config, nofile: Option<u64>) -> Vec<String> {
    let runtime = &config.runtime;
    let mut lines = Vec::new();
    if runtime.workers.is_none() {
        let layout = match runtime.layout {
            Layout::ThreadPerCore => "thread_per_core",
            Layout::WorkStealing => "work_stealing",
        };
        lines.push(format!(
            "runtime.workers = {} (unset: one per core; layout {layout})",
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
    use crate::config::raw::RawConfig;
    use crate::config::Config;

    fn config(text: &str) -> Config {
        use figment::providers::{Format, Serialized, Toml};
        let raw: RawConfig = figment::Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::string(text))
            .extract()
            .expect("test config parses");
        Config::from_raw(raw).expect("test config is valid")
    }

    const MUX: &str = r#"
[runtime]
workers = 3

[[listeners]]
name = "l"
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:9"]

[[routes]]
name = "r"
path = "/"
upstream = "app"
mode = "mux"
"#;

    #[test]
    fn an_unset_pool_size_is_shown_with_its_value() {
        let lines = derived(&config(MUX), None);
        assert_eq!(
            lines,
            ["upstreams.app.pool_size = 3 (unset: one mux connection per worker, at least 2)"]
        );
        let set = MUX.replace("endpoints =", "pool_size = 5\nendpoints =");
        assert!(
            derived(&config(&set), None).is_empty(),
            "a value the file sets is not repeated"
        );
    }

    #[test]
    fn the_connection_cap_is_shown_under_a_given_limit() {
        let lines = derived(&config(MUX), Some(1000));
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
