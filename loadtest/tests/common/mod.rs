//! Starts the real `echo-server` binary on a free loopback port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The built binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tidegate-loadtest");

/// A running echo server, killed on drop.
pub struct EchoServer {
    child: Child,
    /// `IP:PORT` it announced.
    pub addr: String,
}

impl EchoServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `echo-server` arguments (e.g. `--tls-cert`, `--tls-key`).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["--workers", "1", "echo-server", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn echo-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read announce line");
        let addr = line
            .trim()
            .strip_prefix("echo-server listening addr=")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected announce line {line:?}"))
            .to_string();
        Self { child, addr }
    }

    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
