//! The shipped binary at load: `platform runtime --manifest` serving one pooled Go SDK
//! hello with the process's own defaults (its log subscriber on stderr, read by a thread as
//! a terminal or a log collector would). The in-process rows run the runtime library with
//! no subscriber, so what the binary adds per request (the access log, when asked) shows
//! only here.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::startup::{poll, read_banner};

/// A running `platform runtime`; killed when dropped.
pub struct ShippedRuntime {
    child: Child,
    /// Its traffic listener.
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl ShippedRuntime {
    /// Starts `bin` serving the SDK module `module` pooled at `/`, with `extra` flags and no
    /// log settings from this process's environment; returns once `/` answers 200.
    pub fn start(bin: &Path, module: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let manifest = data.path().join("platform.toml");
        std::fs::write(
            &manifest,
            format!(
                "[[apps]]\nname = \"hello\"\nmodule = {:?}\nroutes = [\"/\"]\nisolation = \"pooled\"\n",
                module.display().to_string()
            ),
        )?;
        let mut child = Command::new(bin)
            .args(["runtime", "--manifest"])
            .arg(&manifest)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("PLATFORM_LOG")
            .env_remove("PLATFORM_ACCESS_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let mut running = ShippedRuntime {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            _data: data,
        };
        if let Some(mut stderr) = stderr {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                while matches!(stderr.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
        let stdout = stdout.ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (traffic, _admin) = read_banner(stdout)?;
        poll(&format!("{traffic}/"), Instant::now())?;
        running.addr = traffic
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()?;
        Ok(running)
    }
}

impl Drop for ShippedRuntime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
