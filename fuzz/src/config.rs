//! Target `config`: TOML text → the loader's figment layers (built-in
//! defaults ← the text; the environment layer is left out so runs do not
//! depend on the machine) → `Config::from_raw`, the validator. Errors are
//! fine; panics are not.
//!
//! Checks: a validated config's routes make a route table; every problem
//! has a key and a message; and what validated, printed back as TOML (as
//! `check-config` and `/config` do), loads and validates again.
//!
//! Validation reads the certificate, key and key-set files a config names.
//! Inputs naming device or kernel files are skipped so a run cannot block
//! on `/dev/stdin` or read `/dev/zero` forever; other paths are harmless
//! (missing, or small files of this checkout).

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use tidegate::config::{Config, ConfigError, RawConfig};
use tidegate::route::RouteTable;

/// The loader's layering, from a string (`tidegate::config::load_raw`
/// reads a file and the environment).
fn load(text: &str) -> Result<RawConfig, Box<figment::Error>> {
    Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(text))
        .extract::<RawConfig>()
        .map_err(Box::new)
}

fn check_problems(e: &ConfigError) {
    assert!(!e.problems.is_empty(), "an error without problems");
    for p in &e.problems {
        assert!(!p.key.is_empty() && !p.message.is_empty(), "{p:?}");
    }
    let _ = e.to_string();
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let Ok(raw) = load(text) else {
        return;
    };
    let config = match Config::from_raw(raw) {
        Ok(config) => config,
        Err(e) => return check_problems(&e),
    };
    let table = RouteTable::new(config.routes.clone());
    for route in table.routes() {
        assert!(route.path.starts_with('/'), "route path {:?}", route.path);
        assert!(
            config
                .upstreams
                .iter()
                .any(|u| u.name == route.upstream.name),
            "route {} on an unknown upstream",
            route.name
        );
    }
    let printed = toml::to_string(&config.raw).expect("a loaded config prints as TOML");
    let raw =
        load(&printed).unwrap_or_else(|e| panic!("printed config does not load: {e}\n{printed}"));
    if let Err(e) = Config::from_raw(raw) {
        panic!("printed config does not validate: {e}\n{printed}");
    }
}
