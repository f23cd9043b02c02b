//! Command-line interface: one subcommand per scenario, plus `compare` and
//! `echo-server`. Flags common to every run are global. The flags of each
//! scenario, shared by its own subcommand and by `compare`, are in `args`.

mod args;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::target::NamedTarget;

pub use args::{
    parse_bar, parse_duration, ConnectArgs, EchoArgs, FanoutArgs, HttpGetArgs, IdleArgs, OnOff,
    RateArgs, SseIdleArgs,
};

#[derive(Debug, Parser)]
#[command(
    name = "tidegate-loadtest",
    version,
    about = "Load generator for tidegate and other WebSocket proxies (loopback targets only)"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct Common {
    /// Worker threads of this process's tokio runtime [default: CPU count].
    #[arg(long, global = true)]
    pub workers: Option<usize>,
    /// No live progress line on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write DIR/report.md and SVG plots.
    #[arg(long, global = true, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// wss://: accept any server certificate.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// wss://: PEM file of CA certificates to trust.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Closed loop: round trips with N messages in flight per connection.
    Echo {
        /// Target URL (ws:// or wss://, loopback only).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: EchoArgs,
    },
    /// Open loop: a fixed message rate per connection; latency from the
    /// intended send time (no coordinated omission).
    Rate {
        /// Target URL (ws:// or wss://, loopback only).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: RateArgs,
        /// Process to observe (repeatable): the first is charged CPU per
        /// message like a compare target; every one is reported under
        /// `processes` with its CPU, RSS and socket count over the window.
        #[arg(long)]
        pid: Vec<u32>,
    },
    /// Connection storm: open, upgrade, (message), close — N times.
    Connect {
        /// Target URL (ws:// or wss://, loopback only).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: ConnectArgs,
    },
    /// Hold C idle connections; report ramp connects/s and server RSS per connection.
    Idle {
        /// Target URL (ws:// or wss://, loopback only).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: IdleArgs,
    },
    /// HTTP/1.1 closed loop: GET after GET on keep-alive connections.
    HttpGet {
        /// Target URL (http:// or https://, loopback only); the path picks
        /// the response (`/` small, `/bytes/65536` 64 KiB on `http-server`).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: HttpGetArgs,
        /// Process to charge CPU time per request to.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Hold S idle Server-Sent Events streams; report RSS per stream.
    SseIdle {
        /// Target URL (http:// or https://, loopback only), e.g. http://127.0.0.1:18085/sse.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: SseIdleArgs,
    },
    /// Broadcast: S subscribers that only read while the application publishes
    ///
    /// The application behind the target stamps each payload (the SDK's
    /// `fanout` example); reports deliveries/s, publish-to-delivery and
    /// publish-to-last-delivery latency, and CPU per delivery.
    Fanout {
        /// Target URL (ws:// or wss://, loopback only).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        p: FanoutArgs,
        /// Process to observe (repeatable): the first (the gateway) is
        /// charged CPU per delivery; every one is reported under
        /// `processes` (the application second).
        #[arg(long)]
        pid: Vec<u32>,
    },
    /// Run one scenario against several targets in alternation.
    Compare(CompareArgs),
    /// Draw a bar chart SVG from NAME=VALUE pairs (bench.sh's idle memory).
    Bars {
        /// SVG file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Chart title.
        #[arg(long)]
        title: String,
        /// Unit of the values, shown on the axis and the labels.
        #[arg(long)]
        unit: String,
        /// One bar per NAME=VALUE, in the order given.
        #[arg(required = true, value_name = "NAME=VALUE", value_parser = parse_bar)]
        bars: Vec<(String, f64)>,
    },
    /// HTTP/1.1 upstream for the HTTP benchmarks (`/`, `/bytes/N`, `/sse`).
    HttpServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18001")]
        listen: SocketAddr,
    },
    /// WebSocket echo upstream for benchmarks.
    EchoServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        /// Serve wss:// with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key", value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert", value_name = "FILE")]
        tls_key: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// NAME=URL[@PID]; the first target is the baseline of the ratios.
    #[arg(long = "target", required = true, num_args = 1)]
    pub targets: Vec<NamedTarget>,
    /// Rounds of A B C ... alternation.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Pause between runs, to let sockets in TIME_WAIT and caches settle.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub pause: Duration,
    #[command(subcommand)]
    pub scenario: CompareScenario,
}

#[derive(Debug, Subcommand, Clone)]
pub enum CompareScenario {
    /// Closed loop against each target: round trips with N messages in flight.
    Echo(EchoArgs),
    /// Open loop against each target: a fixed message rate per connection.
    Rate(RateArgs),
    /// Connection storm against each target: open, upgrade, (message), close.
    Connect(ConnectArgs),
    /// HTTP/1.1 closed loop against each target (http:// URLs).
    HttpGet(HttpGetArgs),
}
