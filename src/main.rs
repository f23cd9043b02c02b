//! The `tidegate` command: CLI, logging, runtime, signals and exit codes.
//!
//! Exit codes: 0 after a drain, 64 for a bad configuration or bad flags,
//! 1 when a listener cannot be bound or a second signal cuts the drain short.

use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tidegate::config::raw::{RawCertificate, RawListener, RawRoute, RawTls, RawUpstream};
use tidegate::config::{
    Config, ConfigError, Layout, LogFormat, RawConfig, RuntimeConfig, EXIT_CONFIG,
};
use tidegate::server::{self, Running};

#[path = "main/oneliners.rs"]
mod oneliners;
#[path = "main/signals.rs"]
mod signals;

use oneliners::{path_mapping, proxy_config, serve_demo};
use signals::{drain_on_signal, Sig, Signals};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tidegate",
    version,
    about = "A WebSocket edge gateway and reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file (plus TIDEGATE_ environment overrides).
    Run {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Validate a configuration: print it (secrets redacted) or every error.
    CheckConfig {
        /// TOML configuration file (without one: defaults plus TIDEGATE_
        /// environment overrides).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// A gateway with an embedded echo upstream on /echo, to try at once.
    Demo {
        /// Gateway listener (falls back to a free port if taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener (falls back to a free port if taken).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// A reverse proxy from flags alone: one route `/` to one upstream.
    // The path rule goes after the options, not in a second doc paragraph:
    // that would become a long_about whose first line differs from the
    // title `tidegate --help` lists (clap keeps its final period).
    #[command(after_help = PROXY_PATH_RULE)]
    Proxy {
        /// Address to accept clients on.
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream URL (ws:// or wss://); the client's path is appended to
        /// its path.
        #[arg(long)]
        upstream: String,
        /// PEM certificate chain: serve TLS (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Allowed Origin (repeatable; exact or https://*.example.com).
        #[arg(long = "allow-origin")]
        allow_origin: Vec<String>,
        /// Admin listener (/metrics, /healthz, /readyz); off unless given.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// permessage-deflate: passthrough (default), edge or off.
        #[arg(long, value_name = "MODE")]
        permessage_deflate: Option<String>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// A WebSocket echo server (the demo upstream), for tests and benchmarks.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Print the version.
    Version,
}

/// How `proxy` builds the upstream path: newcomers paste the application's
/// full URL, as they would into nginx's or Caddy's one-liners.
const PROXY_PATH_RULE: &str = "\
The client's path is appended to the path of the upstream URL: with
`--upstream ws://127.0.0.1:15674/ws`, a client that connects to `/ws` is sent
to `ws://127.0.0.1:15674/ws/ws`. To pass the client's path through unchanged,
give the upstream without a path (`--upstream ws://127.0.0.1:15674`).
The mapping is printed at start.";

#[derive(Args, Clone, Copy)]
struct RuntimeArgs {
    /// Worker threads (default: `runtime.workers`, else one per available
    /// core). With 1 the whole gateway runs on the main thread, with no
    /// thread of its own.
    #[arg(long)]
    workers: Option<usize>,
    /// `thread_per_core` (default: one single-threaded runtime per worker,
    /// each accepting on its own SO_REUSEPORT socket) or `work_stealing`
    /// (one multi-thread runtime); overrides `runtime.layout`.
    #[arg(long, value_name = "LAYOUT")]
    layout: Option<LayoutArg>,
}

/// The names of `runtime.layout`, as written in the configuration.
#[derive(clap::ValueEnum, Clone, Copy)]
#[value(rename_all = "snake_case")]
enum LayoutArg {
    ThreadPerCore,
    WorkStealing,
}

impl RuntimeArgs {
    /// The flags over the configuration (`--workers 0`: one per core).
    fn apply(self, mut runtime: RuntimeConfig) -> RuntimeConfig {
        if let Some(n) = self.workers {
            runtime.workers = (n > 0).then_some(n);
        }
        match self.layout {
            Some(LayoutArg::ThreadPerCore) => runtime.layout = Layout::ThreadPerCore,
            Some(LayoutArg::WorkStealing) => runtime.layout = Layout::WorkStealing,
            None => {}
        }
        runtime
    }
}

/// Per-connection state is many small objects. With transparent huge pages
/// mimalloc backs its arenas with 2 MiB pages, and a partly used huge page
/// is resident whole: measured with 9,000 idle mux clients, 2.34 KB of RSS
/// per client with THP against 1.92 KB without (docs/performance.md). So
/// the process opts out of THP for itself before the heap grows. Operators
/// who want THP anyway set `TIDEGATE_THP=1`.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("TIDEGATE_THP").is_none_or(|v| v != "1") {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integer
        // arguments and touches no memory of ours; failure (an old kernel)
        // only leaves THP as it was.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    // `run` starts logging once its file is loaded: `log.format` is in it.
    // Configuration errors are printed as they are, not logged.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(LogFormat::Text);
    }
    match cli.command {
        Command::Version => {
            println!("tidegate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match Config::load(config.as_deref()) {
            Ok(c) => {
                print!(
                    "{}{}",
                    render(&c.raw),
                    tidegate::config::derived_comments(&c)
                );
                eprintln!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => config_failed(&e),
        },
        Command::Run { config, runtime } => match Config::load(config.as_deref()) {
            Ok(c) => {
                init_logging(c.log.format);
                serve(c, runtime)
            }
            Err(e) => config_failed(&e),
        },
        Command::Proxy {
            listen,
            upstream,
            tls_cert,
            tls_key,
            allow_origin,
            admin,
            permessage_deflate,
            runtime,
        } => {
            let mut raw =
                proxy_config(listen, upstream, tls_cert.zip(tls_key), allow_origin, admin);
            for route in &mut raw.routes {
                route.permessage_deflate.clone_from(&permessage_deflate);
            }
            serve_proxy(raw, runtime)
        }
        Command::Demo {
            listen,
            admin,
            runtime,
        } => serve_demo(listen, admin, runtime),
        Command::Echo { listen, runtime } => block_on(runtime, serve_echo(listen)),
    }
}

/// `tidegate proxy`: the one-route configuration built from the flags.
fn serve_proxy(raw: RawConfig, runtime: RuntimeArgs) -> ExitCode {
    match Config::from_raw(raw) {
        Ok(c) => {
            if let Some(line) = path_mapping(&c) {
                eprintln!("{line}");
            }
            serve(c, runtime)
        }
        Err(e) => config_failed(&e),
    }
}

/// `tidegate echo`: the built-in echo server alone, until a stop signal.
async fn serve_echo(listen: SocketAddr) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tidegate echo: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tidegate echo: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tidegate::echo::serve(listener, stop.clone()));
    say(&format!("tidegate echo listening addr={addr}"));
    while signals.next().await == Sig::Reload {}
    stop.cancel();
    ExitCode::SUCCESS
}

/// Logs go to stderr, filtered by `TIDEGATE_LOG` (default `info`; the
/// access log is the target `tidegate::access`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Fields at the top level of each object, where log shippers
        // look for them; no ANSI colour codes inside JSON strings.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
}

fn config_failed(e: &ConfigError) -> ExitCode {
    eprint!("{e}");
    ExitCode::from(EXIT_CONFIG as u8)
}

fn render(raw: &RawConfig) -> String {
    toml::to_string_pretty(&raw.redacted()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// Print a line on stdout at once: scripts wait for these.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `echo`: one runtime, multi-threaded unless `--workers 1` (it has no
/// per-worker listeners; `--layout thread_per_core` gives one thread).
fn block_on<F: std::future::Future<Output = ExitCode>>(args: RuntimeArgs, f: F) -> ExitCode {
    let echo = RuntimeConfig {
        layout: Layout::WorkStealing,
        workers: None,
    };
    run_on(args.apply(echo), f)
}

/// Run `f` on the main thread's runtime. One worker, or thread-per-core
/// (whose other workers `server::start` puts on threads of their own): a
/// current-thread runtime. Besides skipping the work-stealing scheduler, a
/// process that never starts a second thread keeps glibc's single-thread
/// fast path for recv/send (no cancellation bookkeeping around each system
/// call: ~1.2 % of the CPU at 64 B messages, docs/performance.md).
fn run_on<F: std::future::Future<Output = ExitCode>>(runtime: RuntimeConfig, f: F) -> ExitCode {
    // Two descriptors per proxied client: use all the process may have.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut builder = match (runtime.layout, runtime.workers()) {
        (_, 1) | (Layout::ThreadPerCore, _) => tokio::runtime::Builder::new_current_thread(),
        (Layout::WorkStealing, n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("tidegate: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(mut config: Config, args: RuntimeArgs) -> ExitCode {
    config.runtime = args.apply(config.runtime);
    run_on(config.runtime, async move {
        // Handlers first: a signal that arrives as soon as the listening
        // line is printed must drain, not kill.
        let signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tidegate: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        };
        let running = match server::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tidegate: {e}");
                return ExitCode::from(1);
            }
        };
        announce(&running);
        // Under systemd (Type=notify) `systemctl start` returns only now,
        // with every listener bound, and fails if we exited before.
        notify_systemd(&[sd_notify::NotifyState::Ready]);
        drain_on_signal(running, signals).await
    })
}

/// Tell systemd (Type=notify) what state the service is in. Outside
/// systemd (no NOTIFY_SOCKET) this does nothing; a failure to send is
/// logged and otherwise ignored: the gateway serves either way.
fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

fn announce(running: &Running) {
    for l in &running.listeners {
        say(&format!(
            "tidegate listening name={} addr={} tls={}",
            l.name, l.addr, l.tls
        ));
    }
    if let Some(a) = running.admin {
        say(&format!("tidegate admin addr={a}"));
    }
    if let Some(a) = running.publish {
        say(&format!("tidegate fanout-publish addr={a}"));
    }
}
