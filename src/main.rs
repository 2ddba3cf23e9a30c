//! `platform`: one binary for every part of Platform.
//!
//! - `platform up`: everything in one process on the embedded default.
//! - `platform runtime`: the data plane alone.

mod demo;
mod local_feed;
mod manifest;
mod serve;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Platform: serve Go HTTP handlers compiled to WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "platform", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process (runtime, admin API) on local storage. Serves the apps
    /// of --manifest, or a built-in demo app when none is given.
    Up(ServeArgs),
    /// Run the data plane: serve traffic for the apps of --manifest.
    Runtime(ServeArgs),
}

/// Flags shared by the serving commands. Every flag is also an environment variable.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// App manifest (platform.toml).
    #[arg(long, env = "PLATFORM_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Traffic listener [default: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8080].
    #[arg(long, env = "PLATFORM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin listener: health, readiness, metrics.
    #[arg(long, env = "PLATFORM_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Data directory: modules, compiled artifacts.
    #[arg(long, env = "PLATFORM_DATA_DIR", default_value = "./.platform")]
    pub data_dir: PathBuf,
    /// Log format on stderr.
    #[arg(long, env = "PLATFORM_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint for traces, e.g. http://127.0.0.1:4318.
    #[arg(long, env = "PLATFORM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Unload a module (and its idle instances) after this long without requests.
    #[arg(long, env = "PLATFORM_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "PLATFORM_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most guest executions at once; more requests wait.
    #[arg(long, env = "PLATFORM_MAX_CONCURRENCY", default_value_t = 256)]
    pub max_concurrency: usize,
}

impl ServeArgs {
    /// The traffic address: the flag, else `$PORT` on all interfaces, else the default.
    pub fn traffic_addr(&self) -> SocketAddr {
        if let Some(a) = self.listen {
            return a;
        }
        if let Some(port) = std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()) {
            return SocketAddr::from(([0, 0, 0, 0], port));
        }
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    manifest::parse_duration(s)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Up(args) => serve::run(args, serve::Mode::Up).await,
            Command::Runtime(args) => serve::run(args, serve::Mode::Runtime).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
