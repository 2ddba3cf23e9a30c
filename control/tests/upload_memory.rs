//! A 100 MB module upload streams: hashed and stored as it arrives, never whole in memory.
//! In a test process of its own so that its resident memory means something.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

#[path = "all/support.rs"]
#[allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "shared with the main test target"
)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::support::{Db, Harness, wagi};

const MB: usize = 1 << 20;

/// Anonymous resident memory (heap and stacks; not mapped files, which the page cache
/// can drop), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn leb(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabyte_module_streams_into_the_store() {
    let h = Harness::with_limit(Db::Sqlite, 200 << 20).await;
    // A valid WAGI module followed by a 100 MB custom section, produced lazily.
    let head = wagi("big");
    let pad = 100 * MB;
    let mut section = vec![0u8];
    leb(pad + 4, &mut section);
    section.push(3);
    section.extend_from_slice(b"pad");
    let block = bytes::Bytes::from(vec![0xabu8; MB]);
    let mut want = Sha256::new();
    want.update(&head);
    want.update(&section);
    for _ in 0..100 {
        want.update(&block);
    }
    let want = hex::encode(want.finalize());
    let first = bytes::Bytes::from([head, section].concat());
    let total = first.len() + pad;
    let chunks = futures::stream::iter(
        std::iter::once(first)
            .chain(std::iter::repeat_n(block, 100))
            .map(Ok::<_, std::io::Error>),
    );

    let baseline = rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let req = Request::post("/v1/modules?name=big.wasm")
        .header("authorization", format!("Bearer {}", h.admin))
        .body(Body::from_stream(chunks))
        .unwrap();
    let (status, m) = h.send(req).await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        m["digest"].as_str().unwrap().trim_start_matches("sha256:"),
        want
    );
    let size = m["size"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .or(m["size"].as_u64());
    assert_eq!(size, Some(total as u64), "{m}");
    let grown = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "peak RSS grew by {} KiB for a {} MB upload",
        grown / 1024,
        total / MB
    );
    assert!(
        grown < 32 * MB as u64,
        "peak RSS grew by {grown} bytes during a {total}-byte upload"
    );
    // Stored once, whole.
    let stored: u64 = std::fs::read_dir(h.dir.path().join("blobs/modules"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(stored, total as u64);
}
