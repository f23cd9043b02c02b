//! Child processes of the tests: the release `tidegate` binary (from
//! `TG_TEST_BIN`, else cargo's) and the SDK's echo example, started with a
//! clean environment, their address lines read from stdout, signalled by
//! pid, and their sockets counted through /proc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// Time a child process gets to print its address line (a release binary
/// on a loaded machine can be slow to start).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway binary: `$TG_TEST_BIN` (scripts/test.sh), else cargo's.
pub fn tidegate_bin() -> PathBuf {
    std::env::var_os("TG_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tidegate")))
}

/// A command for the gateway binary with none of our `TIDEGATE_*`
/// variables (the gateway reads them as configuration) and warn-level logs.
pub fn tidegate_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(tidegate_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TIDEGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TIDEGATE_LOG", "warn");
    cmd
}

/// The SDK's echo example, built beside the gateway binary (`cargo test`
/// builds the workspace's examples; scripts/test.sh builds them first).
fn echo_example_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_tidegate"));
    let echo = bin
        .parent()
        .expect("the binary lives in a target directory")
        .join("examples")
        .join("echo");
    assert!(
        echo.is_file(),
        "{} is missing: run `cargo build --release -p tidegate-mux --examples`",
        echo.display()
    );
    echo
}

/// A running child whose stdout lines a test reads; killed on drop.
pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    /// Kept open so the child never writes into a closed pipe.
    lines: Lines<BufReader<ChildStdout>>,
}

impl Spawned {
    /// Spawn `cmd` with stdout piped (stderr as the caller set it).
    pub fn spawn(cmd: std::process::Command) -> Spawned {
        let mut cmd = tokio::process::Command::from(cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.as_std().get_program()));
        let pid = child.id().expect("child running");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Spawned { child, pid, lines }
    }

    /// Wait for a stdout line starting with `prefix`; returns it.
    pub async fn line_starting(&mut self, prefix: &str) -> String {
        let wait = async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("read child stdout")
                    .unwrap_or_else(|| panic!("child exited before printing {prefix:?}"));
                if line.starts_with(prefix) {
                    return line;
                }
            }
        };
        tokio::time::timeout(START_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} line within {START_TIMEOUT:?}"))
    }

    /// Send `sig` (`-TERM`, `-HUP`, …) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {}", self.pid);
    }
}

/// The value of `key=` in an address line (`tidegate listening name=main
/// addr=127.0.0.1:4321 tls=false`).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The `addr=` field of an address line.
pub fn addr_field(line: &str) -> SocketAddr {
    field(line, "addr")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
}

/// The SDK's echo example running as its own process.
pub struct EchoApp {
    pub proc: Spawned,
    pub addr: SocketAddr,
}

impl EchoApp {
    /// Start it listening on `listen` (e.g. `127.0.0.1:0`).
    pub async fn start(listen: &str) -> EchoApp {
        let mut cmd = std::process::Command::new(echo_example_bin());
        cmd.args(["--listen", listen]).stderr(Stdio::null());
        let mut proc = Spawned::spawn(cmd);
        let line = proc.line_starting("tidegate-mux echo listening ").await;
        EchoApp {
            addr: addr_field(&line),
            proc,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// TCP sockets this process holds (listening ones included): the
    /// socket inodes of /proc/PID/fd that /proc/PID/net/tcp{,6} list (the
    /// runtime's signal socketpair is not TCP).
    pub fn tcp_socket_count(&self) -> usize {
        let pid = self.proc.pid;
        let tcp_inodes: std::collections::HashSet<String> = ["tcp", "tcp6"]
            .iter()
            .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
            .flat_map(|table| {
                table
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().nth(9).map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect();
        let dir = format!("/proc/{pid}/fd");
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|target| {
                let t = target.to_string_lossy();
                Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .filter(|inode| tcp_inodes.contains(inode))
            .count()
    }
}

/// Raise this process's open-file limit to its hard limit (the scale test
/// holds one socket per client).
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}
