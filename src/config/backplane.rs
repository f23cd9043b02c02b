//! `[fanout.backplane]` validated: which NATS servers, how to authenticate,
//! TLS, the subject prefix and the bounds of the backplane
//! (`crate::fanout::backplane`). Secrets are read here, once, so a missing
//! file is a config error (exit 64) rather than a failure at first connect.

use super::raw::backplane::RawBackplane;
use super::validate::{duration, Problems};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How the gateway authenticates to NATS.
#[derive(Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    /// The NKey seed.
    NKey(String),
    /// The `.creds` file's contents (JWT and seed).
    Creds(String),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatsAuth::None => "None",
            NatsAuth::Token(_) => "Token(<redacted>)",
            NatsAuth::UserPassword(..) => "UserPassword(<redacted>)",
            NatsAuth::NKey(_) => "NKey(<redacted>)",
            NatsAuth::Creds(_) => "Creds(<redacted>)",
        })
    }
}

/// The NATS backplane.
#[derive(Debug, Clone)]
pub struct BackplaneConfig {
    pub servers: Vec<String>,
    pub auth: NatsAuth,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_required: bool,
    /// Ends with `.`; every token of `prefix + channel` is non-empty.
    pub subject_prefix: String,
    pub required: bool,
    pub publish_queue: usize,
    pub connect_timeout: Duration,
    pub reconnect_max: Duration,
}

const KEY: &str = "fanout.backplane";

/// `None`: no backplane (`kind = ""`).
pub(super) fn backplane(p: &mut Problems, r: &RawBackplane) -> Option<BackplaneConfig> {
    match r.kind.trim() {
        "" => return None,
        "nats" => {}
        other => {
            p.push(
                format!("{KEY}.kind"),
                format!("{other:?}: expected \"nats\" or \"\" (off)"),
            );
            return None;
        }
    }
    let before = p.0.len();
    let servers = servers(p, &r.servers);
    let auth = auth(p, r);
    let tls_ca_file = (!r.tls_ca_file.is_empty()).then(|| PathBuf::from(&r.tls_ca_file));
    if let Some(ca) = &tls_ca_file {
        if !ca.is_file() {
            p.push(
                format!("{KEY}.tls_ca_file"),
                format!("{}: no such file", ca.display()),
            );
        }
    }
    if !valid_prefix(&r.subject_prefix) {
        p.push(
            format!("{KEY}.subject_prefix"),
            "a NATS subject prefix ending in '.', e.g. \"tidegate.fanout.\" (no '*', '>', \
             spaces or empty tokens)",
        );
    }
    if r.publish_queue == 0 {
        p.push(format!("{KEY}.publish_queue"), "must be at least 1");
    }
    let connect_timeout = duration(
        p,
        &format!("{KEY}.connect_timeout"),
        &r.connect_timeout,
        false,
    );
    let reconnect_max = duration(p, &format!("{KEY}.reconnect_max"), &r.reconnect_max, false);
    (p.0.len() == before).then(|| BackplaneConfig {
        servers,
        auth,
        tls_required: r.tls_required || tls_ca_file.is_some(),
        tls_ca_file,
        subject_prefix: r.subject_prefix.clone(),
        required: r.required,
        publish_queue: r.publish_queue as usize,
        connect_timeout,
        reconnect_max,
    })
}

fn servers(p: &mut Problems, servers: &[String]) -> Vec<String> {
    if servers.is_empty() {
        p.push(
            format!("{KEY}.servers"),
            "at least one NATS server URL is needed",
        );
    }
    for (i, s) in servers.iter().enumerate() {
        let ok = url::Url::parse(s).is_ok_and(|u| {
            matches!(u.scheme(), "nats" | "tls") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if !ok {
            p.push(
                format!("{KEY}.servers[{i}]"),
                format!("{s:?}: expected nats://host:port or tls://host:port"),
            );
        }
    }
    servers.to_vec()
}

/// A secret from a file (trailing whitespace dropped) or a variable.
fn secret(p: &mut Problems, name: &str, file: &str, env: &str) -> Option<String> {
    match (file.is_empty(), env.is_empty()) {
        (true, true) => None,
        (false, true) => std::fs::read_to_string(file)
            .map_err(|e| p.push(format!("{KEY}.{name}_file"), format!("cannot read: {e}")))
            .ok(),
        (true, false) => std::env::var(env)
            .map_err(|_| p.push(format!("{KEY}.{name}_env"), "variable not set"))
            .ok(),
        (false, false) => {
            p.push(
                format!("{KEY}.{name}_file"),
                format!("set at most one of {name}_file and {name}_env"),
            );
            None
        }
    }
    .map(|s| s.trim_end().to_string())
}

fn auth(p: &mut Problems, r: &RawBackplane) -> NatsAuth {
    let token = secret(p, "token", &r.token_file, &r.token_env);
    let password = secret(p, "password", &r.password_file, &r.password_env);
    let nkey = secret(p, "nkey_seed", &r.nkey_seed_file, "");
    let creds = secret(p, "creds", &r.creds_file, "");
    if r.user.is_empty() != password.is_none() {
        p.push(format!("{KEY}.user"), "user and a password go together");
    }
    let mut methods = Vec::new();
    if let Some(t) = token {
        methods.push(NatsAuth::Token(t));
    }
    if let Some(pw) = password.filter(|_| !r.user.is_empty()) {
        methods.push(NatsAuth::UserPassword(r.user.clone(), pw));
    }
    if let Some(k) = nkey {
        methods.push(NatsAuth::NKey(k));
    }
    if let Some(c) = creds {
        methods.push(NatsAuth::Creds(c));
    }
    if methods.len() > 1 {
        p.push(
            KEY,
            "choose one authentication: token, user/password, nkey_seed_file or creds_file",
        );
    }
    methods.pop().unwrap_or_default()
}

/// `prefix + channel` must be a valid literal subject for every valid
/// channel: the prefix ends in `.` and its tokens are non-empty and hold
/// no wildcard or whitespace (the channel's own dots are handled by
/// `backplane::subject`).
pub fn valid_prefix(prefix: &str) -> bool {
    let Some(body) = prefix.strip_suffix('.') else {
        return false;
    };
    !body.is_empty()
        && body.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats(f: impl FnOnce(&mut RawBackplane)) -> (Option<BackplaneConfig>, Vec<String>) {
        let mut r = RawBackplane {
            kind: "nats".into(),
            servers: vec!["nats://127.0.0.1:4222".into()],
            ..RawBackplane::default()
        };
        f(&mut r);
        let mut p = Problems::default();
        let c = backplane(&mut p, &r);
        (c, p.0.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn off_by_default_and_defaults_valid() {
        let mut p = Problems::default();
        assert!(backplane(&mut p, &RawBackplane::default()).is_none());
        assert!(p.0.is_empty());
        let (c, keys) = nats(|_| {});
        assert!(keys.is_empty(), "{keys:?}");
        let c = c.expect("valid");
        assert_eq!(c.subject_prefix, "tidegate.fanout.");
        assert!(!c.required && !c.tls_required);
    }

    #[test]
    fn every_problem_names_its_key() {
        let (c, keys) = nats(|r| {
            r.kind = "nats".into();
            r.servers = vec!["http://x".into()];
            r.subject_prefix = "a..b.".into();
            r.publish_queue = 0;
            r.user = "gw".into();
            r.tls_ca_file = "/nonexistent/ca.pem".into();
            r.connect_timeout = "soon".into();
        });
        assert!(c.is_none());
        for k in [
            "fanout.backplane.servers[0]",
            "fanout.backplane.subject_prefix",
            "fanout.backplane.publish_queue",
            "fanout.backplane.user",
            "fanout.backplane.tls_ca_file",
            "fanout.backplane.connect_timeout",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        let (_, keys) = nats(|r| r.kind = "redis".into());
        assert_eq!(keys, ["fanout.backplane.kind"]);
        let (_, keys) = nats(|r| r.servers.clear());
        assert_eq!(keys, ["fanout.backplane.servers"]);
    }

    #[test]
    fn one_auth_method_and_secrets_from_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let path = file.to_string_lossy().into_owned();
        let (c, keys) = nats(|r| r.token_file = path.clone());
        assert!(keys.is_empty());
        let auth = c.expect("valid").auth;
        assert!(matches!(&auth, NatsAuth::Token(t) if t == "s3cret"));
        assert_eq!(format!("{auth:?}"), "Token(<redacted>)");
        let (_, keys) = nats(|r| {
            r.token_file = path.clone();
            r.nkey_seed_file = path.clone();
        });
        assert_eq!(keys, ["fanout.backplane"]);
    }

    #[test]
    fn prefixes() {
        for ok in ["tidegate.fanout.", "a.", "app-1.fan_out."] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in ["", ".", "a", "a..", ".a.", "a.*.", "a.>.", "a b."] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
