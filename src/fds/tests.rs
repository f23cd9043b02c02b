use super::*;
use crate::config::RawConfig;

fn config(routes: &str) -> Config {
    // One worker: the reserve does not depend on this machine's cores.
    let text = format!(
        r#"
[runtime]
workers = 1

[[listeners]]
name = "a"
listen = "127.0.0.1:0"

[[listeners]]
name = "b"
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:3000", "ws://127.0.0.1:3001"]
pool_size = 4

[[upstreams]]
name = "other"
endpoints = ["ws://127.0.0.1:3002"]

{routes}
"#
    );
    let raw: RawConfig = toml::from_str(&text).expect("test TOML parses");
    Config::from_raw(raw).unwrap_or_else(|e| panic!("test config is valid: {e}"))
}

const PASSTHROUGH: &str = r#"
[[routes]]
name = "p"
path = "/p"
upstream = "other"
"#;

const MUX: &str = r#"
[[routes]]
name = "m"
path = "/m"
upstream = "app"
mode = "mux"

[[routes]]
name = "m2"
path = "/m2"
upstream = "app"
mode = "mux"
"#;

#[test]
fn passthrough_clients_take_two_descriptors() {
    let d = Demand::of(&config(PASSTHROUGH));
    // Base reserve and two listeners; no pool.
    assert_eq!(
        d,
        Demand {
            per_client: 2,
            reserve: BASE_RESERVE + 2
        }
    );
}

#[test]
fn mux_clients_take_one_and_the_pool_is_reserved_once() {
    let d = Demand::of(&config(MUX));
    // One pool for the shared upstream: 4 connections to each of 2 endpoints.
    assert_eq!(
        d,
        Demand {
            per_client: 1,
            reserve: BASE_RESERVE + 2 + 8
        }
    );
}

#[test]
fn one_passthrough_route_makes_every_client_count_two() {
    let d = Demand::of(&config(&format!("{PASSTHROUGH}{MUX}")));
    assert_eq!(d.per_client, 2);
    assert_eq!(d.reserve, BASE_RESERVE + 2 + 8);
}

#[test]
fn cap_follows_the_descriptor_limit() {
    let d = Demand {
        per_client: 2,
        reserve: 34,
    };
    // (nofile, configured) -> (connections, fits, lowered)
    let table: &[(u64, usize, (usize, u64, bool))] = &[
        // `prlimit --nofile=200`: (200 - 34) / 2 = 83 clients fit.
        (200, 10_000, (83, 83, true)),
        (201, 10_000, (83, 83, true)),
        (202, 10_000, (84, 84, true)),
        // The configured cap fits: kept as it is.
        (200, 50, (50, 83, false)),
        (200, 83, (83, 83, false)),
        (1_048_576, 100_000, (100_000, 524_271, false)),
        // Unlimited (RLIM_INFINITY).
        (u64::MAX, 10_000, (10_000, (u64::MAX - 34) / 2, false)),
        // Less than the reserve: never 0, a warning says why.
        (20, 10_000, (1, 0, true)),
        (0, 10, (1, 0, true)),
    ];
    for &(nofile, configured, (connections, fits, lowered)) in table {
        assert_eq!(
            derive(nofile, configured, d),
            Cap {
                connections,
                fits,
                lowered
            },
            "nofile {nofile}, max_connections {configured}"
        );
    }
}

#[test]
fn mux_fits_twice_the_clients() {
    let d = Demand {
        per_client: 1,
        reserve: 42,
    };
    assert_eq!(derive(200, 10_000, d).connections, 158);
    assert_eq!(d.needed(158), 200);
}

#[test]
fn needed_saturates() {
    let d = Demand {
        per_client: 2,
        reserve: 34,
    };
    assert_eq!(d.needed(100), 234);
    assert_eq!(d.needed(u64::MAX), u64::MAX);
}

#[test]
fn emfile_and_enfile_mean_a_full_table() {
    assert!(table_full(&std::io::Error::from_raw_os_error(libc::EMFILE)));
    assert!(table_full(&std::io::Error::from_raw_os_error(libc::ENFILE)));
    assert!(!table_full(&std::io::Error::from_raw_os_error(
        libc::ECONNABORTED
    )));
    assert!(!table_full(&std::io::Error::other("no errno")));
}
