//! Command-line interface: one subcommand per scenario, plus `compare` and
//! `echo-server`. Flags common to every run are global.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::target::NamedTarget;

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

// Frame type of generated messages. A plain comment, not `///`: clap
// makes a flattened struct's doc comment the `about` of the command that
// flattens it, which is how `compare echo` got this line as its title.
#[derive(Debug, Args, Clone)]
pub struct FrameKind {
    /// Send binary frames (the default).
    #[arg(long, conflicts_with = "text")]
    pub binary: bool,
    /// Send text frames.
    #[arg(long)]
    pub text: bool,
}

#[derive(Debug, Args, Clone)]
pub struct EchoArgs {
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Messages outstanding per connection (pipelined).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub in_flight: u32,
    #[command(flatten)]
    pub kind: FrameKind,
    /// Warm-up before measuring (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct HttpGetArgs {
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub connections: usize,
    /// Warm-up before measuring (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct SseIdleArgs {
    /// Streams to hold.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub streams: usize,
    /// Streams being opened at once during the ramp.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// How long to hold them once all are open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Give up the ramp after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ramp_timeout: Duration,
    /// Process whose RSS per stream to report (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Args, Clone)]
pub struct RateArgs {
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Messages per second per connection.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    #[command(flatten)]
    pub kind: FrameKind,
    /// Warm-up before measuring (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Args, Clone)]
pub struct FanoutArgs {
    /// Subscribers (connections that only read).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub subscribers: usize,
    /// Warm-up after the last subscriber connected (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// TLS session resumption for `connect` over wss://.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    /// Connections to open in total.
    #[arg(long, default_value_t = 2000)]
    pub total: usize,
    /// Connections in progress at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Send one message and await its echo before closing.
    #[arg(long)]
    pub message: bool,
    /// Payload bytes of that message.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Stop after this long even if --total is not reached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// TLS session resumption (wss:// only).
    #[arg(long, value_enum, default_value = "on")]
    pub resumption: OnOff,
    #[command(flatten)]
    pub sources: SourceArgs,
}

// Where connections come from: several loopback source addresses give
// several ephemeral port ranges. (`//` for the reason given at FrameKind.)
#[derive(Debug, Args, Clone, Default)]
pub struct SourceArgs {
    /// Source addresses to bind, comma separated (127.0.0.0/8 only).
    #[arg(long, value_delimiter = ',', conflicts_with = "source_ip_count")]
    pub source_ips: Vec<Ipv4Addr>,
    /// Use 127.0.0.1 .. 127.0.0.N as source addresses.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ip_count: Option<u8>,
}

impl SourceArgs {
    /// The addresses to bind, or an error for a non-loopback one.
    pub fn addrs(&self) -> anyhow::Result<Vec<IpAddr>> {
        if let Some(n) = self.source_ip_count {
            return Ok((1..=n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect());
        }
        for ip in &self.source_ips {
            anyhow::ensure!(
                ip.is_loopback(),
                "source address {ip} is not in 127.0.0.0/8"
            );
        }
        Ok(self.source_ips.iter().map(|&ip| IpAddr::V4(ip)).collect())
    }
}

#[derive(Debug, Args, Clone)]
pub struct IdleArgs {
    /// Connections to hold.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub connections: usize,
    /// Connections in progress at once during the ramp.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// How long to hold them once all are open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Give up the ramp after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ramp_timeout: Duration,
    /// Process whose RSS per connection to report (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Like --pid, by process name (/proc/PID/comm; repeatable).
    #[arg(long)]
    pub pid_name: Vec<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Offer permessage-deflate (to measure edge compression's idle state).
    #[arg(long)]
    pub offer_deflate: bool,
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

/// Parses one bar of `bars`: "NAME=VALUE" with a finite VALUE.
pub fn parse_bar(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("bad bar {s:?} (try tidegate=1549.9)"))?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("bad value in {s:?}"))?;
    if !v.is_finite() {
        return Err(format!("bad value in {s:?}"));
    }
    Ok((name.trim().to_string(), v))
}

/// Parses "10", "10s", "1.5s", "500ms" or "2m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 10s or 500ms)"))?;
    if !(0.0..=86_400.0).contains(&(v * scale)) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn compare_command_line() {
        let cli = Cli::try_parse_from([
            "tidegate-loadtest",
            "--json",
            "compare",
            "--target",
            "direct=ws://127.0.0.1:9001/",
            "--target",
            "tidegate=ws://127.0.0.1:8080/echo@12345",
            "--rounds",
            "2",
            "echo",
            "--connections",
            "4",
            "--in-flight",
            "8",
        ])
        .unwrap();
        assert!(cli.common.json);
        let Command::Compare(c) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[1].pid, Some(12345));
        assert_eq!(c.rounds, 2);
        let CompareScenario::Echo(e) = c.scenario else {
            panic!("not echo")
        };
        assert_eq!((e.connections, e.in_flight), (4, 8));
    }

    #[test]
    fn http_commands() {
        let cli = Cli::try_parse_from([
            "tidegate-loadtest",
            "compare",
            "--target",
            "tidegate=http://127.0.0.1:18085/bytes/65536@42",
            "http-get",
            "-c",
            "50",
        ])
        .unwrap();
        let Command::Compare(c) = cli.command else {
            panic!("not compare")
        };
        assert!(c.targets[0].target.http);
        let CompareScenario::HttpGet(g) = c.scenario else {
            panic!("not http-get")
        };
        assert_eq!(g.connections, 50);
        let cli = Cli::try_parse_from([
            "x",
            "sse-idle",
            "--url",
            "http://127.0.0.1:18085/sse",
            "-c",
            "9900",
            "--source-ip-count",
            "4",
        ])
        .unwrap();
        let Command::SseIdle { p, .. } = cli.command else {
            panic!("not sse-idle")
        };
        assert_eq!((p.streams, p.sources.addrs().unwrap().len()), (9900, 4));
    }

    #[test]
    fn bars() {
        assert_eq!(
            parse_bar("tidegate=1549.9"),
            Ok(("tidegate".into(), 1549.9))
        );
        assert!(parse_bar("tidegate").is_err());
        assert!(parse_bar("nginx=lots").is_err());
        assert!(parse_bar("nginx=inf").is_err());
    }

    #[test]
    fn bad_target_is_a_usage_error() {
        let r = Cli::try_parse_from(["x", "compare", "--target", "a=ws://10.1.2.3/", "echo"]);
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("loopback"), "{msg}");
    }

    #[test]
    fn rate_with_sources_and_pids() {
        let cli = Cli::try_parse_from([
            "tidegate-loadtest",
            "rate",
            "--url",
            "ws://127.0.0.1:8080/mux",
            "-c",
            "5000",
            "--source-ip-count",
            "4",
            "--pid",
            "10",
            "--pid",
            "11",
        ])
        .unwrap();
        let Command::Rate { p, pid, .. } = cli.command else {
            panic!("not rate")
        };
        assert_eq!(pid, vec![10, 11]);
        assert_eq!(p.sources.addrs().unwrap().len(), 4);
    }

    #[test]
    fn fanout_command_line() {
        let cli = Cli::try_parse_from([
            "x",
            "fanout",
            "--url",
            "ws://127.0.0.1:8080/fanout",
            "-c",
            "5000",
            "--duration",
            "5s",
            "--source-ip-count",
            "4",
            "--pid",
            "10",
            "--pid",
            "11",
        ])
        .unwrap();
        let Command::Fanout { p, pid, .. } = cli.command else {
            panic!("not fanout")
        };
        assert_eq!((p.subscribers, p.duration), (5000, Duration::from_secs(5)));
        assert_eq!((pid, p.sources.addrs().unwrap().len()), (vec![10, 11], 4));
    }

    #[test]
    fn source_addresses() {
        let s = SourceArgs {
            source_ips: vec![],
            source_ip_count: Some(3),
        };
        assert_eq!(s.addrs().unwrap().len(), 3);
        let s = SourceArgs {
            source_ips: vec![Ipv4Addr::new(10, 0, 0, 1)],
            source_ip_count: None,
        };
        assert!(s.addrs().is_err());
    }
}
