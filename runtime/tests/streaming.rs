//! 100 MB up and 100 MB down through an SDK guest, in a process of its own so its peak
//! resident memory means something: bodies stream, they never sit whole in host or guest
//! memory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

#[path = "all/support.rs"]
#[allow(dead_code, reason = "shared with the main test target")]
mod support;

use futures::StreamExt;
use platform_runtime::Limits;
use platform_test_guests as guests;
use sha2::{Digest as _, Sha256};

use crate::support::{App, TestHost, client};

const MB: usize = 1 << 20;
const TOTAL_MB: usize = 100;

/// Resident set of this process, in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Samples [`rss`] every 2 ms on a thread of its own until dropped; keeps the highest.
struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RssSampler {
    fn start() -> Self {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        RssSampler { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_stream_both_ways_in_bounded_memory() {
    let host = TestHost::start().await;
    let api = guests::sdk_example("jsonapi");
    host.deploy(&[App {
        limits: Limits {
            max_body: 200 * MB as u64,
            max_response: 200 * MB as u64,
            ..Limits::default()
        },
        ..App::new("api", &api, &["/"])
    }]);
    let c = client();
    // Warm up: the module is loaded and an instance is pooled before the baseline.
    let r = c.get(host.url("/download?mb=1")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), MB);
    let baseline = rss();
    let sampler = RssSampler::start();

    // Up: 100 MB generated lazily by the client, hashed by the guest as it streams.
    let block: Vec<u8> = (0..MB).map(|i| (i % 251) as u8).collect();
    let mut want = Sha256::new();
    for _ in 0..TOTAL_MB {
        want.update(&block);
    }
    let want = hex::encode(want.finalize());
    let chunks = futures::stream::iter(
        (0..TOTAL_MB).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(block.clone()))),
    );
    let r = c
        .post(host.url("/digest"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], (TOTAL_MB * MB) as u64);
    assert_eq!(v["sha256"], want);

    // Down: 100 MB read chunk by chunk and dropped.
    let r = c
        .get(host.url(&format!("/download?mb={TOTAL_MB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = 0usize;
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len();
    }
    assert_eq!(got, TOTAL_MB * MB);

    let grown = sampler.peak().saturating_sub(baseline);
    eprintln!(
        "peak RSS grew by {} KiB over 2 × {TOTAL_MB} MB (baseline {} MiB)",
        grown / 1024,
        baseline >> 20
    );
    assert!(
        grown < 48 * MB as u64,
        "peak RSS grew by {grown} bytes while streaming 2 × {TOTAL_MB} MB"
    );
    // The guest's linear memory stayed small too (Go's heap, not the bodies).
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let guest = host.rt.sdk_pools.max_idle_memory();
    eprintln!("guest linear memory after streaming: {} KiB", guest / 1024);
    assert!(
        guest > 0 && guest < 64 * MB as u64,
        "guest memory {guest} bytes after streaming"
    );
    host.stop().await;
}
