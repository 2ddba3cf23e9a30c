//! The peer in the same run: `wasmtime serve` (the wasmtime CLI) serving the same Rust
//! wasi:http component as Platform's component row, so the two are compared like for like.
//!
//! `./scripts/bench --with-wasmtime-serve` installs wasmtime-cli 48 once into a cache and
//! passes its path here; without it these rows are skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wasmtime serve`; killed on drop.
pub struct WasmtimeServe {
    child: Child,
    /// Where it listens (loopback).
    pub addr: SocketAddr,
}

impl WasmtimeServe {
    /// Starts `wasmtime serve` on a free loopback port with `extra` flags (e.g.
    /// `--max-instance-reuse-count 1000`) and waits until it accepts connections.
    pub fn start(wasmtime: &Path, component: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        // A free port: bind, read it back, release it for the child.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        // `-Scli`: the component (Rust std) imports wasi:cli (environment and the rest),
        // which Platform's linker provides and `wasmtime serve` adds only when asked.
        let child = Command::new(wasmtime)
            .arg("serve")
            .arg("-Scli")
            .arg("--addr")
            .arg(addr.to_string())
            .args(extra)
            .arg(component)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", wasmtime.display()))?;
        let mut serve = WasmtimeServe { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Keep draining what it says, so a full pipe never blocks it.
                if let Some(mut e) = serve.child.stderr.take() {
                    std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
                }
                return Ok(serve);
            }
            if let Some(status) = serve.child.try_wait()? {
                let mut said = String::new();
                if let Some(mut e) = serve.child.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut said);
                }
                let said = said.lines().take(4).collect::<Vec<_>>().join("\n");
                anyhow::bail!("wasmtime serve exited before listening: {status}\n{said}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("wasmtime serve did not listen on {addr} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The CLI's version line (`wasmtime 48.0.8 (...)`), for the report.
    pub fn version(wasmtime: &Path) -> String {
        Command::new(wasmtime)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "wasmtime (version unknown)".into())
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
