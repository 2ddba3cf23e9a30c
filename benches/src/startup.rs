//! Process start-up of `platform runtime`: start → ready with many routes, and start → first
//! response. The Knative target is ≤ 100 ms to ready (ARCHITECTURE.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::loadgen::percentiles;

/// (p50, p99) in µs of each phase over the measured runs.
pub struct Startup {
    /// Start → `/readyz` answers 200.
    pub ready: (f64, f64),
    /// Start → the first app route answers 200.
    pub first: (f64, f64),
}

/// Runs `platform runtime --manifest` with `routes` apps of `module` `runs` times (after one
/// unmeasured run that fills the artifact cache, as a restarted pod finds its `emptyDir`
/// or a fetched artifact).
pub fn measure(bin: &Path, module: &Path, routes: usize, runs: usize) -> anyhow::Result<Startup> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("platform.toml");
    let mut toml = String::new();
    for i in 0..routes {
        toml.push_str(&format!(
            "[[apps]]\nname = \"app-{i}\"\nmodule = {:?}\nroutes = [\"/app-{i}\"]\n\n",
            module.display().to_string()
        ));
    }
    std::fs::write(&manifest, toml)?;
    let mut ready = Vec::new();
    let mut first = Vec::new();
    for run in 0..=runs {
        let (r, f) = once(bin, &manifest, dir.path())?;
        if run > 0 {
            ready.push(r);
            first.push(f);
        }
    }
    Ok(Startup {
        ready: percentiles(&mut ready),
        first: percentiles(&mut first),
    })
}

fn once(bin: &Path, manifest: &Path, data: &Path) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["runtime", "--manifest"])
        .arg(manifest)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (traffic, admin) = read_banner(stdout)?;
        let ready = poll(&format!("{admin}/readyz"), started)?;
        let first = poll(&format!("{traffic}/app-0"), started)?;
        Ok((ready, first))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The traffic and admin base URLs from `platform runtime`'s banner on `stdout`; the rest
/// of stdout (one line per route) is drained on a thread so the child never blocks on it.
pub(crate) fn read_banner(
    stdout: impl std::io::Read + Send + 'static,
) -> anyhow::Result<(String, String)> {
    let mut lines = BufReader::new(stdout).lines();
    let mut traffic = None;
    let mut admin = None;
    while traffic.is_none() || admin.is_none() {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("platform runtime exited before its banner"))??;
        if let Some(url) = line.split("serving on ").nth(1) {
            traffic = Some(url.trim().to_string());
        }
        if let Some(rest) = line.trim().strip_prefix("admin") {
            admin = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches("/healthz").to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((traffic.unwrap_or_default(), admin.unwrap_or_default()))
}

/// Polls `url` until it answers 200; returns the time since `since`.
pub(crate) fn poll(url: &str, since: Instant) -> anyhow::Result<Duration> {
    let url = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = url.split_once('/').unwrap_or((url, ""));
    let path = format!("/{path}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(status) = get_status(host, &path)
            && status == 200
        {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "{url} not ready after 60 s");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn get_status(host: &str, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 16];
    s.read_exact(&mut buf[..12])?;
    let text = String::from_utf8_lossy(&buf[..12]);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}
