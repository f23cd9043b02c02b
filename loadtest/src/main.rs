//! `tidegate-loadtest`: the load generator bundled with tidegate, for sizing
//! it and comparing it with nginx and HAProxy on loopback.
//!
//! Scenarios: `echo` (closed loop), `rate` (open loop, no coordinated
//! omission), `fanout` (subscribers of a broadcast, issue #17), `connect` (connection storm), `idle` (held connections and
//! memory per connection), `http-get` (HTTP/1.1 closed loop on keep-alive
//! connections), `sse-idle` (held Server-Sent Events streams and memory per
//! stream), `compare` (several targets in alternation), and the shared
//! upstreams `echo-server` (WebSocket) and `http-server` (HTTP). Every run is bounded in time and
//! count, and only loopback targets are accepted.

mod cli;
mod compare;
mod conn;
mod echo_server;
mod frame;
mod handshake;
mod http1;
mod http_server;
mod listen;
mod monitor;
mod oncpu;
mod pacer;
mod plot;
mod procfs;
mod reader;
mod report;
mod result;
mod scenario;
mod stats;
mod target;
mod tls;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, CompareScenario, ConnectArgs, EchoArgs, HttpGetArgs, OnOff, RateArgs};
use conn::Connector;
use report::Outcome;
use scenario::{
    connect::ConnectParams, echo::EchoParams, fanout::FanoutParams, http_get::HttpGetParams,
    idle::IdleParams, rate::RateParams, sse_idle::SseIdleParams, Ctx, Spec,
};
use target::Target;
use tls::TlsOptions;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidegate-loadtest: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    // Idle and storm runs need many sockets; the raise is harmless otherwise.
    let fd_limit = procfs::raise_nofile_limit()?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.common.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().context("building the tokio runtime")?;
    rt.block_on(run(cli, fd_limit))
}

async fn run(cli: Cli, fd_limit: u64) -> Result<()> {
    let common = &cli.common;
    let progress = !common.quiet && !common.json && std::io::stderr().is_terminal();
    let tls_opts = |resumption: bool| TlsOptions {
        insecure: common.insecure,
        ca: common.ca.clone(),
        resumption,
    };
    let ctx_for = |target: Target, resumption: bool, sources, pid| -> Result<Ctx> {
        let tls = if target.tls {
            Some(tls::client_config(&tls_opts(resumption))?)
        } else {
            None
        };
        Ok(Ctx {
            connector: Connector::new(target, tls, sources)?,
            progress,
            pid,
        })
    };
    let outcome = match &cli.command {
        Command::EchoServer {
            listen,
            tls_cert,
            tls_key,
        } => {
            anyhow::ensure!(
                listen.ip().is_loopback(),
                "echo-server listens on loopback only, not {listen}"
            );
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(echo_server::tls_acceptor(c, k)?),
                _ => None,
            };
            return echo_server::serve(*listen, tls).await;
        }
        Command::HttpServer { listen } => {
            anyhow::ensure!(
                listen.ip().is_loopback(),
                "http-server listens on loopback only, not {listen}"
            );
            return http_server::serve(*listen).await;
        }
        Command::Bars {
            out,
            title,
            unit,
            bars,
        } => return plot::bars(out, title, unit, bars),
        Command::Echo { url, p } => {
            let ctx = ctx_for(url.parse()?, true, Vec::new(), None)?;
            single(Spec::Echo(echo_params(p)).run(&ctx).await?)
        }
        Command::Rate { url, p, pid } => {
            procfs::check_fd_budget(p.connections as u64, fd_limit)?;
            let ctx = ctx_for(url.parse()?, true, p.sources.addrs()?, pid.first().copied())?;
            let params = RateParams {
                watch: pid.clone(),
                ..rate_params(p)
            };
            single(Spec::Rate(params).run(&ctx).await?)
        }
        Command::Fanout { url, p, pid } => {
            procfs::check_fd_budget(p.subscribers as u64, fd_limit)?;
            let ctx = ctx_for(url.parse()?, true, p.sources.addrs()?, pid.first().copied())?;
            let params = FanoutParams {
                subscribers: p.subscribers.max(1),
                warmup: p.warmup,
                duration: p.duration,
                watch: pid.clone(),
            };
            single(Spec::Fanout(params).run(&ctx).await?)
        }
        Command::Connect { url, p } => {
            let ctx = ctx_for(
                url.parse()?,
                p.resumption == OnOff::On,
                p.sources.addrs()?,
                None,
            )?;
            single(Spec::Connect(connect_params(p)).run(&ctx).await?)
        }
        Command::Idle { url, p } => {
            procfs::check_fd_budget(p.connections as u64, fd_limit)?;
            let mut pids = p.ramp.pid.clone();
            for name in &p.pid_name {
                pids.extend(procfs::pids_by_name(name)?);
            }
            let sources = p.sources.addrs()?;
            let mut target: Target = url.parse()?;
            target.offer_deflate = p.offer_deflate;
            let ctx = ctx_for(target, true, sources.clone(), pids.first().copied())?;
            let params = IdleParams {
                connections: p.connections,
                concurrency: p.ramp.concurrency,
                hold: p.ramp.hold,
                pids,
                sources,
                ramp_timeout: p.ramp.ramp_timeout,
            };
            single(Spec::Idle(params).run(&ctx).await?)
        }
        Command::HttpGet { url, p, pid } => {
            procfs::check_fd_budget(p.connections as u64, fd_limit)?;
            let ctx = ctx_for(url.parse()?, true, Vec::new(), *pid)?;
            single(Spec::HttpGet(http_get_params(p)).run(&ctx).await?)
        }
        Command::SseIdle { url, p } => {
            procfs::check_fd_budget(p.streams as u64, fd_limit)?;
            let sources = p.sources.addrs()?;
            let ctx = ctx_for(
                url.parse()?,
                true,
                sources.clone(),
                p.ramp.pid.first().copied(),
            )?;
            let params = SseIdleParams {
                streams: p.streams,
                concurrency: p.ramp.concurrency,
                hold: p.ramp.hold,
                pids: p.ramp.pid.clone(),
                sources,
                ramp_timeout: p.ramp.ramp_timeout,
            };
            single(Spec::SseIdle(params).run(&ctx).await?)
        }
        Command::Compare(c) => {
            let (spec, resumption, sources) = match &c.scenario {
                CompareScenario::Echo(p) => (Spec::Echo(echo_params(p)), true, Vec::new()),
                CompareScenario::Rate(p) => (Spec::Rate(rate_params(p)), true, p.sources.addrs()?),
                CompareScenario::HttpGet(p) => {
                    (Spec::HttpGet(http_get_params(p)), true, Vec::new())
                }
                CompareScenario::Connect(p) => (
                    Spec::Connect(connect_params(p)),
                    p.resumption == OnOff::On,
                    p.sources.addrs()?,
                ),
            };
            let cmp = compare::run(&c.targets, c.rounds, c.pause, &spec, |t| {
                ctx_for(t.target.clone(), resumption, sources.clone(), t.pid)
            })
            .await?;
            Outcome::Compare(cmp)
        }
    };
    if common.json {
        report::print_json(&outcome)?;
    } else {
        report::print_human(&outcome);
    }
    if let Some(dir) = &common.report {
        let command_line = std::env::args().collect::<Vec<_>>().join(" ");
        report::write_dir(dir, &outcome, &command_line)?;
        if !common.json {
            println!("report written to {}", dir.join("report.md").display());
        }
    }
    Ok(())
}

fn single(r: result::RunResult) -> Outcome {
    Outcome::Single(Box::new(r))
}

fn echo_params(p: &EchoArgs) -> EchoParams {
    EchoParams {
        connections: p.connections.max(1),
        size: p.size,
        in_flight: p.in_flight as usize,
        text: p.kind.text,
        warmup: p.window.warmup,
        duration: p.window.duration,
    }
}

fn rate_params(p: &RateArgs) -> RateParams {
    RateParams {
        connections: p.connections.max(1),
        rate: p.rate,
        size: p.size,
        pacer_slack: p.pacer_slack,
        text: p.kind.text,
        warmup: p.window.warmup,
        duration: p.window.duration,
        watch: Vec::new(),
    }
}

fn http_get_params(p: &HttpGetArgs) -> HttpGetParams {
    HttpGetParams {
        connections: p.connections.max(1),
        warmup: p.window.warmup,
        duration: p.window.duration,
    }
}

fn connect_params(p: &ConnectArgs) -> ConnectParams {
    ConnectParams {
        total: p.total,
        concurrency: p.concurrency,
        message: p.message,
        size: p.size,
        duration: p.duration,
        resumption: p.resumption == OnOff::On,
    }
}
