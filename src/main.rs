//! `platform`: one binary for every part of Platform.
//!
//! Processes: `up` (everything, embedded storage), `runtime`, `control`, `worker`.
//! Client commands: `login`, `init`, `deploy`, `apps`, `releases`, `rollback`, `split`,
//! `secrets`, `routes`, `tokens`; `completions` prints shell completion scripts.

mod args;
mod cli;
mod demo;
mod feed_client;
mod local_feed;
mod manifest;
mod memory;
mod nats_connection;
mod process;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::args::{AddressArgs, CommonArgs, DashboardArgs, RuntimeArgs, StoreArgs};

/// Platform: serve Go HTTP handlers compiled to WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "platform", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing the flattened flag groups buys nothing"
)]
enum Command {
    /// Run everything in one process on local storage: runtime, control API, compile worker
    /// and dashboard. Serves --manifest apps, or a demo app on an empty installation.
    Up {
        /// App manifest (platform.toml) to deploy at start.
        #[arg(long, env = "PLATFORM_MANIFEST")]
        manifest: Option<PathBuf>,
        /// Base URL of the traffic listener as users reach it [default: from --listen].
        #[arg(long, env = "PLATFORM_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        runtime: RuntimeArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        addresses: AddressArgs,
        #[command(flatten)]
        dashboard: DashboardArgs,
    },
    /// Run the data plane: serve traffic for what the control plane (or a manifest) says.
    Runtime {
        /// Serve this manifest instead of following a control plane.
        #[arg(long, env = "PLATFORM_MANIFEST", conflicts_with = "control_url")]
        manifest: Option<PathBuf>,
        /// Control plane to follow, e.g. http://control:8081.
        #[arg(long, env = "PLATFORM_CONTROL_URL")]
        control_url: Option<String>,
        /// NATS carrying feed events, KV, triggers and telemetry (without it: poll the
        /// control plane).
        #[command(flatten)]
        nats: nats_connection::NatsArgs,
        /// Admin token for the control plane.
        #[arg(long, env = "PLATFORM_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Run the control plane: API, module uploads, events.
    Control {
        /// API listener (also /healthz, /readyz, /metrics).
        #[arg(long, env = "PLATFORM_LISTEN", default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Base URL of the runtimes' traffic listener as users reach it.
        #[arg(
            long,
            env = "PLATFORM_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        addresses: AddressArgs,
        #[command(flatten)]
        dashboard: DashboardArgs,
    },
    /// Run a compile worker: compiles uploaded modules ahead of time.
    Worker {
        /// Health listener (/healthz, /readyz, /metrics).
        #[arg(long, env = "PLATFORM_ADMIN_LISTEN", default_value = "127.0.0.1:8082")]
        admin_listen: SocketAddr,
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print a shell completion script: `platform completions bash > /etc/bash_completion.d/platform`,
    /// `platform completions zsh > "${fpath[1]}/_platform"`,
    /// `platform completions fish > ~/.config/fish/completions/platform.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "platform",
            &mut std::io::stdout(),
        );
        return std::process::ExitCode::SUCCESS;
    }
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        #[expect(
            unsafe_code,
            reason = "set_var before any thread exists; error values (a guest's normal exit is one) must not capture backtraces on the request path even when RUST_BACKTRACE is set for panics"
        )]
        // SAFETY: no other thread is running yet, so nothing reads the environment concurrently.
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
        }
    }
    memory::limit_malloc_arenas();
    let rt = match platform_runtime::executor::multi_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Up {
                manifest,
                public_url,
                common,
                runtime,
                store,
                addresses,
                dashboard,
            } => {
                let addresses = addresses.template(Some("localhost"))?;
                process::up::run(
                    manifest, public_url, common, runtime, store, addresses, dashboard,
                )
                .await
            }
            Command::Runtime {
                manifest,
                control_url,
                nats,
                token,
                common,
                runtime,
            } => process::runtime::run(manifest, control_url, nats, token, common, runtime).await,
            Command::Control {
                listen,
                public_url,
                common,
                store,
                addresses,
                dashboard,
            } => {
                let addresses = addresses.template(None)?;
                process::control::run(listen, public_url, common, store, addresses, dashboard).await
            }
            Command::Worker {
                admin_listen,
                common,
                store,
            } => process::worker::run(admin_listen, common, store).await,
            Command::Client(c) => cli::run(c).await,
            Command::Completions { .. } => Ok(()),
        }
    });
    // Whatever still runs on a blocking thread (a compile started before SIGTERM) is not
    // waited for: shutdown keeps to its grace period. Artifacts are written atomically, so
    // an abandoned compile leaves nothing half-written.
    rt.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
