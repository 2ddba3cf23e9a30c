//! Soak: `platform up` as its own process, under half of the request rate it peaked at,
//! on a mix (Go WAGI, Go SDK pooled, Go SDK per-request), with an upload and a release
//! every minute. Every minute it records errors, p99, the server's RSS and open file
//! descriptors; at the end, the drift of RSS and fds (last 5 minutes against the first 5,
//! or the last and first fifth of a shorter run). Goal: 0 errors, RSS drift ≤ 5%.
//!
//! `./scripts/bench --soak 30m` (release build); a 2-minute run of the debug build is a
//! test (`two_minute_soak`), so `./scripts/test` runs it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use platform_test_guests as guests;

/// The paths of the mix, in the order requests cycle through them.
const MIX: [&str; 3] = ["/wagi", "/sdk", "/sdk-pr"];

/// Parses `30m`, `90s`, `2h` (a number and a unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 30m, 90s, 2h"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration {s:?}: use e.g. 30m, 90s, 2h")),
    };
    Ok(Duration::from_secs(secs))
}

/// One sampling interval's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// Seconds since the measured run began (end of the interval).
    pub at_s: u64,
    /// Requests answered 2xx in the interval.
    pub ok: u64,
    /// Requests that failed or were not 2xx.
    pub errors: u64,
    /// 99th percentile latency of the interval, µs.
    pub p99_us: u64,
    /// The server's resident set, KiB.
    pub rss_kib: u64,
    /// The anonymous part of it (heap, guest memories, stacks), KiB.
    pub rss_anon_kib: u64,
    /// The file-backed part (the binary, mapped artifacts), KiB.
    pub rss_file_kib: u64,
    /// The server's open file descriptors.
    pub fds: u64,
    /// Uploads and releases that failed in the interval.
    pub deploy_errors: u64,
}

/// The whole soak.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    /// Requests per second the mix peaked at (closed loop).
    pub peak_rps: f64,
    /// The rate held during the soak.
    pub target_rps: f64,
    /// Every interval.
    pub samples: Vec<Sample>,
    /// Requests that failed over the whole run.
    pub errors: u64,
    /// Mean RSS of the last window against the first, as a fraction (0.05 = +5%).
    pub rss_drift: f64,
    /// The same for open fds.
    pub fd_drift: f64,
    /// p99 of the last window against the first.
    pub p99_drift: f64,
}

impl SoakReport {
    /// A markdown table and the drift figures.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Soak: peak {:.0} req/s (mix of {}), held at {:.0} req/s.\n\n| minute | ok | errors | p99 | RSS | anon | file | open fds | deploy errors |\n|---|---|---|---|---|---|---|---|---|\n",
            self.peak_rps,
            MIX.join(", "),
            self.target_rps
        );
        for x in &self.samples {
            s.push_str(&format!(
                "| {:.1} | {} | {} | {:.2} ms | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} |\n",
                x.at_s as f64 / 60.0,
                x.ok,
                x.errors,
                x.p99_us as f64 / 1000.0,
                x.rss_kib as f64 / 1024.0,
                x.rss_anon_kib as f64 / 1024.0,
                x.rss_file_kib as f64 / 1024.0,
                x.fds,
                x.deploy_errors
            ));
        }
        s.push_str(&format!(
            "\nErrors: {}. Drift, last window against the first: RSS {:+.1}%, open fds {:+.1}%, p99 {:+.1}%.\n",
            self.errors,
            self.rss_drift * 100.0,
            self.fd_drift * 100.0,
            self.p99_drift * 100.0
        ));
        s
    }
}

/// `platform up` on free ports, its traffic and admin addresses and its admin token.
struct Server {
    child: Child,
    traffic: SocketAddr,
    admin: String,
    token: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bin: &Path) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = Command::new(bin)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut traffic, mut admin) = (None, None);
        while traffic.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .context("platform up printed no banner")?;
            for w in line.split_whitespace() {
                if let Some(a) = w.strip_suffix("/healthz") {
                    admin = Some(a.to_string());
                } else if traffic.is_none()
                    && let Some(rest) = w.strip_prefix("http://")
                {
                    traffic = rest.split('/').next().and_then(|a| a.parse().ok());
                }
            }
        }
        let token = std::fs::read_to_string(data.path().join("admin-token"))?
            .trim()
            .to_string();
        Ok(Server {
            child,
            traffic: traffic.context("no traffic address")?,
            admin: admin.context("no admin address")?,
            token,
            _data: data,
        })
    }

    /// A `kB` line of `/proc/PID/status` (`VmRSS:`, `RssAnon:`, `RssFile:`), 0 if missing.
    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    fn fds(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count() as u64)
            .unwrap_or(0)
    }
}

/// `platform deploy` against the server at `(admin URL, token)`.
fn deploy(
    bin: &Path,
    (admin, token): &(String, String),
    wasm: &Path,
    app: &str,
    route: &str,
    extra: &[&str],
) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("deploy")
        .arg(wasm)
        .args(["--app", app, "--route", route])
        .args(extra)
        .args(["--server", admin, "--token", token])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "platform deploy {app}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A module made unique by a custom section holding `n`: a new upload and compile.
fn variant(base: &[u8], n: u64) -> Vec<u8> {
    let mut payload = vec![4u8];
    payload.extend_from_slice(b"soak");
    payload.extend_from_slice(&n.to_le_bytes());
    let mut out = base.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

/// Counters one interval fills.
#[derive(Default)]
struct Interval {
    hist: Option<Histogram<u64>>,
    errors: u64,
}

/// Runs the soak for `duration`, sampling every `every`.
pub fn run(bin: &Path, duration: Duration, every: Duration) -> anyhow::Result<SoakReport> {
    eprintln!("soak: building guests...");
    let wagi = guests::go("hello");
    let sdk = guests::sdk_example("hello");
    let server = Server::start(bin)?;
    let admin = (server.admin.clone(), server.token.clone());
    deploy(bin, &admin, &wagi, "soak-wagi", "/wagi", &[])?;
    deploy(bin, &admin, &sdk, "soak-sdk", "/sdk", &[])?;
    deploy(
        bin,
        &admin,
        &sdk,
        "soak-sdk-pr",
        "/sdk-pr",
        &["--isolation", "per-request"],
    )?;
    let churn_dir = tempfile::tempdir()?;
    let wagi_bytes = std::fs::read(&wagi)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let addr = server.traffic;

    eprintln!("soak: measuring the peak of the mix (5 s)...");
    let peak = rt.block_on(closed_loop(addr, 16, Duration::from_secs(5)))?;
    let target = (peak / 2.0).max(1.0);
    eprintln!("soak: peak {peak:.0} req/s; holding {target:.0} req/s for {duration:?}");

    let interval = Arc::new(Mutex::new(Interval::default()));
    let total_errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + duration;
    let load = {
        let (interval, total_errors) = (interval.clone(), total_errors.clone());
        rt.spawn(open_loop(addr, target, end, interval, total_errors))
    };
    // An upload (new bytes: a compile) and a release every minute, on a thread of their
    // own so sampling stays on time while `platform deploy` waits for the compile.
    let deploy_errors = Arc::new(AtomicU64::new(0));
    let deployer = {
        let (deploy_errors, bin) = (deploy_errors.clone(), bin.to_path_buf());
        let churn = churn_dir.path().to_path_buf();
        let server = (server.admin.clone(), server.token.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while Instant::now() < end {
                round += 1;
                let path = churn.join(format!("churn-{round}.wasm"));
                let env = format!("ROUND={round}");
                let deployed = std::fs::write(&path, variant(&wagi_bytes, round))
                    .map_err(anyhow::Error::from)
                    .and_then(|()| {
                        deploy(
                            &bin,
                            &server,
                            &path,
                            "soak-churn",
                            "/churn",
                            &["--env", &env],
                        )
                    });
                if let Err(e) = deployed {
                    eprintln!("soak: {e:#}");
                    deploy_errors.fetch_add(1, Ordering::SeqCst);
                }
                let next = started + Duration::from_secs(60) * round as u32;
                while Instant::now() < next.min(end) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    let mut samples = Vec::new();
    let mut counted_deploy_errors = 0;
    while Instant::now() < end {
        let due = started + every * (samples.len() as u32 + 1);
        std::thread::sleep(due.min(end).saturating_duration_since(Instant::now()));
        let i = std::mem::take(&mut *interval.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        let (ok, p99) = i
            .hist
            .as_ref()
            .map_or((0, 0), |h| (h.len(), h.value_at_quantile(0.99)));
        let deploy_errors_now = deploy_errors.load(Ordering::SeqCst);
        let s = Sample {
            at_s: started.elapsed().as_secs(),
            ok,
            errors: i.errors,
            p99_us: p99,
            rss_kib: server.status_kib("VmRSS:"),
            rss_anon_kib: server.status_kib("RssAnon:"),
            rss_file_kib: server.status_kib("RssFile:"),
            fds: server.fds(),
            deploy_errors: deploy_errors_now - counted_deploy_errors,
        };
        counted_deploy_errors = deploy_errors_now;
        eprintln!("soak: {s:?}");
        samples.push(s);
    }
    let _ = deployer.join();
    rt.block_on(load)??;
    let window = if duration >= Duration::from_secs(20 * 60) {
        (Duration::from_secs(5 * 60).as_secs() / every.as_secs().max(1)).max(1) as usize
    } else {
        (samples.len() / 5).max(1)
    };
    let drift = |f: &dyn Fn(&Sample) -> u64| -> f64 {
        let mean = |xs: &[Sample]| xs.iter().map(f).sum::<u64>() as f64 / xs.len().max(1) as f64;
        let first = mean(&samples[..window.min(samples.len())]);
        let last = mean(&samples[samples.len().saturating_sub(window)..]);
        if first == 0.0 {
            0.0
        } else {
            last / first - 1.0
        }
    };
    Ok(SoakReport {
        peak_rps: peak,
        target_rps: target,
        errors: total_errors.load(Ordering::SeqCst)
            + samples.iter().map(|s| s.deploy_errors).sum::<u64>(),
        rss_drift: drift(&|s| s.rss_kib),
        fd_drift: drift(&|s| s.fds),
        p99_drift: drift(&|s| s.p99_us),
        samples,
    })
}

/// `./scripts/bench --soak D`: runs, prints and writes `soak.md`/`soak.json` under `out`.
pub fn main(bin: &Path, duration: Duration, out: &Path) -> anyhow::Result<()> {
    let report = run(bin, duration, Duration::from_secs(60))?;
    std::fs::create_dir_all(out)?;
    let md = report.markdown();
    std::fs::write(out.join("soak.md"), &md)?;
    std::fs::write(
        out.join("soak.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{md}");
    Ok(())
}

/// One request on a keep-alive connection; true for a 2xx with its whole body.
async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> bool {
    let Ok(req) = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
    else {
        return false;
    };
    match sender.send_request(req).await {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Requests per second `connections` keep-alive connections reach on the mix.
async fn closed_loop(addr: SocketAddr, connections: usize, for_: Duration) -> anyhow::Result<f64> {
    let end = Instant::now() + for_;
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut n = 0u64;
            let mut i = c;
            while Instant::now() < end {
                if request(&mut sender, MIX[i % MIX.len()]).await {
                    n += 1;
                } else {
                    sender = connect(addr).await?;
                }
                i += 1;
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    Ok(n as f64 / for_.as_secs_f64())
}

/// Sends the mix at `rate` requests per second until `end` (paced, 8 connections),
/// recording latencies and errors into the current interval.
async fn open_loop(
    addr: SocketAddr,
    rate: f64,
    end: Instant,
    interval: Arc<Mutex<Interval>>,
    total_errors: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    const CONNECTIONS: usize = 8;
    let gap = Duration::from_secs_f64(CONNECTIONS as f64 / rate);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (interval, total_errors) = (interval.clone(), total_errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await?;
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + gap.mul_f64(c as f64 / CONNECTIONS as f64),
                gap,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = c;
            loop {
                tick.tick().await;
                if Instant::now() >= end {
                    break;
                }
                let t0 = Instant::now();
                let ok = request(&mut sender, MIX[i % MIX.len()]).await;
                let took = t0.elapsed().as_micros().max(1) as u64;
                i += 1;
                {
                    let mut iv = interval.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    if ok {
                        let h = match iv.hist.as_mut() {
                            Some(h) => h,
                            None => iv
                                .hist
                                .insert(Histogram::new_with_bounds(1, 60_000_000, 3)?),
                        };
                        h.record(took)?;
                    } else {
                        iv.errors += 1;
                    }
                }
                if !ok {
                    total_errors.fetch_add(1, Ordering::SeqCst);
                    sender = connect(addr).await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The `platform` binary next to this test binary (`target/debug/platform`, which
/// `cargo test --workspace` builds for the end-to-end tests).
#[cfg(test)]
fn debug_platform_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("platform"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    /// Two minutes of the soak on the debug build: no request and no deploy may fail, and
    /// neither memory nor descriptors may run away (a loose bound: two minutes include
    /// the warm-up a long run averages out).
    #[test]
    fn two_minute_soak() {
        let bin = debug_platform_bin();
        assert!(
            bin.exists(),
            "{} is missing: cargo test --workspace builds it",
            bin.display()
        );
        let report = run(&bin, Duration::from_secs(120), Duration::from_secs(20)).unwrap();
        eprintln!("{}", report.markdown());
        assert_eq!(report.errors, 0, "{}", report.markdown());
        assert!(report.samples.len() >= 5, "{}", report.markdown());
        assert!(
            report.fd_drift < 0.5,
            "open fds grew: {}",
            report.markdown()
        );
        assert!(report.rss_drift < 0.5, "RSS grew: {}", report.markdown());
    }
}
