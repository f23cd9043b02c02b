//! The flags of each scenario, flattened into its subcommand and into
//! `compare`'s, with the parsers of their values (durations, bars).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::{Args, ValueEnum};

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

// The measured window of a closed- or open-loop run. (`//`, not `///`,
// for the reason given at FrameKind.)
#[derive(Debug, Args, Clone)]
pub struct Window {
    /// Warm-up before measuring (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
}

// Opening idle connections (or streams) and holding them: `idle` and
// `sse-idle`. (`//` for the reason given at FrameKind.)
#[derive(Debug, Args, Clone)]
pub struct Ramp {
    /// Connections (streams) being opened at once during the ramp.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// How long to hold them once all are open.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Give up the ramp after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ramp_timeout: Duration,
    /// Process whose RSS per connection (stream) to report (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
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
    #[command(flatten)]
    pub window: Window,
}

#[derive(Debug, Args, Clone)]
pub struct HttpGetArgs {
    /// Concurrent keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub connections: usize,
    #[command(flatten)]
    pub window: Window,
}

#[derive(Debug, Args, Clone)]
pub struct SseIdleArgs {
    /// Streams to hold.
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub streams: usize,
    #[command(flatten)]
    pub ramp: Ramp,
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
    /// Shortest sleep of the pacer thread: messages that fall due sooner
    /// wait for it and leave together, so the pacer wakes at most once per
    /// SLACK and a message leaves at most SLACK late (counted in send_lag
    /// and latency). 0 wakes it for every message, which at tens of
    /// thousands a second costs more CPU than the sends (e.g. 100us).
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    pub pacer_slack: Duration,
    #[command(flatten)]
    pub kind: FrameKind,
    #[command(flatten)]
    pub window: Window,
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
    #[command(flatten)]
    pub ramp: Ramp,
    /// Like --pid, by process name (/proc/PID/comm; repeatable).
    #[arg(long)]
    pub pid_name: Vec<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Offer permessage-deflate (to measure edge compression's idle state).
    #[arg(long)]
    pub offer_deflate: bool,
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
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
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
        .map_err(|_| format!("bad duration {s:?} (try 10s, 500ms or 250us)"))?;
    if !(0.0..=86_400.0).contains(&(v * scale)) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}
