//! A closed-loop HTTP load generator: N keep-alive connections, each sending the next
//! request as soon as the previous answer is read. Latencies go into HDR histograms.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

/// What one load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Requests that failed or got a non-2xx status.
    pub errors: u64,
    /// Requests measured.
    pub requests: u64,
}

/// Runs `concurrency` connections against `addr` `path` for `duration` (after `warmup`).
pub async fn run(
    addr: SocketAddr,
    path: &str,
    host: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let path = path.to_string();
        let host = host.to_string();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let req = hyper::Request::get(&path)
                    .header("host", &host)
                    .body(Empty::<Bytes>::new())?;
                let t0 = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                let took = t0.elapsed();
                if t0 >= measure_from {
                    if ok {
                        hist.record(took.as_micros().max(1) as u64)?;
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    // The connection may be gone; back off briefly and reconnect.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let stream = tokio::net::TcpStream::connect(addr).await?;
                    stream.set_nodelay(true)?;
                    let (s, c) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                    tokio::spawn(c);
                    sender = s;
                }
            }
            Ok::<_, anyhow::Error>((hist, errors))
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        total.add(h)?;
        errors += e;
    }
    Ok(LoadResult {
        rps: total.len() as f64 / duration.as_secs_f64(),
        p50_us: total.value_at_quantile(0.5) as f64,
        p99_us: total.value_at_quantile(0.99) as f64,
        errors,
        requests: total.len(),
    })
}

/// Percentiles of a list of durations, in microseconds: (p50, p99).
pub fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.5), at(0.99))
}

/// Opens a connection, then times one request on it (connection set-up not included).
pub async fn one_request(addr: SocketAddr, path: &str) -> anyhow::Result<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "bench.local")
        .body(Empty::<Bytes>::new())?;
    let t0 = Instant::now();
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    resp.into_body().collect().await?;
    Ok(t0.elapsed())
}

/// Runs [`run`] in a child process (this binary with `--client`), so the load generator's
/// threads are not threads of the measured server: a server that changes its page tables
/// (wasmtime's `mprotect` on instance recycling) must then flush the TLB of every CPU
/// running one of its own threads, and an in-process client is one of them.
pub fn run_in_child(
    addr: SocketAddr,
    path: &str,
    host: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--client")
        .arg(addr.to_string())
        .args(["--client-path", path, "--client-host", host])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--warmup", &warmup.as_secs().to_string()])
        .args(["--seconds", &duration.as_secs().to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the load generator for {path} failed: {}",
        out.status
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
