//! Property-based test of the SDK host ABI from the guest's side: a guest (WebAssembly text)
//! makes the host calls a request body tells it to, with random pointers, lengths, handles
//! and flags, and answers with every call's result. Whatever the arguments, no call traps
//! (ABI §4.1: bad pointers are `INVALID`, never a host trap), every result is a length or a
//! known error code, a range outside memory is refused as `INVALID`, and the host keeps
//! serving. Bounded in `cargo test`; `scripts/fuzz` runs it longer (`PROPTEST_CASES`).
//!
//! `http_send` is among the calls: the app allows no outbound host, so the policy refuses
//! every URL before any connection is tried.

use std::fmt::Write as _;

use platform_test_guests as guests;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::support::{App, TestHost, metric_value};

/// One argument slot of a host call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// A pointer and the length (or capacity) that goes with it: two i32s.
    Range,
    /// A handle, flag or count.
    Int,
    /// An HTTP status (always an invalid one: a valid `response_send` would end the
    /// request before the guest could report).
    Status,
}

use Slot::{Int, Range, Status};

/// The `platform_v1` functions, in dispatch order, with their argument slots.
const CALLS: &[(&str, &[Slot])] = &[
    ("request_head", &[Range]),
    ("request_body_read", &[Range]),
    ("response_send", &[Status, Range, Range, Int]),
    ("response_write", &[Range]),
    ("response_trailers", &[Range]),
    ("env_get", &[Range]),
    ("config_get", &[Range, Range]),
    ("http_send", &[Range, Range]),
    ("http_response_head", &[Int, Range]),
    ("http_body_read", &[Int, Range]),
    ("http_close", &[Int]),
    ("kv_open", &[Range]),
    ("kv_get", &[Int, Range, Range]),
    ("kv_set", &[Int, Range, Range]),
    ("kv_delete", &[Int, Range]),
    ("kv_keys", &[Int, Range, Range]),
    ("error_message", &[Range]),
];

/// Guest memory: three pages. Calls may write only below [`SCRATCH_END`]; the request's
/// records are read to 0x10000, results kept at 0x18000, an empty header block at 0x1F000.
const MEMORY_BYTES: i64 = 3 * 65536;
const SCRATCH_END: i32 = 0x8000;
const RECORD_BYTES: usize = 28;

/// Functions whose first argument range is read before anything else is checked.
const READS_FIRST: &[&str] = &["response_write", "response_trailers", "http_send"];

/// The guest, as WebAssembly text.
fn guest_wat() -> String {
    let mut w = String::from("(module\n");
    for (name, slots) in CALLS {
        let n: usize = slots.iter().map(|s| if *s == Range { 2 } else { 1 }).sum();
        let params = " i32".repeat(n);
        writeln!(
            w,
            "  (import \"platform_v1\" \"{name}\" (func ${name} (param{params}) (result i32)))"
        )
        .unwrap();
    }
    w.push_str(
        r#"  (memory (export "memory") 3)
  (func (export "platform_init") (result i32) (i32.const 0))
  (func (export "platform_handle") (param i32) (result i32)
    (local $len i32) (local $got i32) (local $n i32) (local $i i32) (local $rec i32)
    (block $read_done
      (loop $read
        (local.set $got (call $request_body_read
          (i32.add (i32.const 0x10000) (local.get $len))
          (i32.sub (i32.const 0x8000) (local.get $len))))
        (br_if $read_done (i32.le_s (local.get $got) (i32.const 0)))
        (local.set $len (i32.add (local.get $len) (local.get $got)))
        (br_if $read_done (i32.ge_u (local.get $len) (i32.const 0x8000)))
        (br $read)))
    (local.set $n (i32.div_u (local.get $len) (i32.const 28)))
    (block $calls_done
      (loop $each
        (br_if $calls_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $rec (i32.add (i32.const 0x10000) (i32.mul (local.get $i) (i32.const 28))))
        (i32.store
          (i32.add (i32.const 0x18000) (i32.shl (local.get $i) (i32.const 2)))
          (call $dispatch
            (i32.load (local.get $rec))
            (i32.load offset=4 (local.get $rec))
            (i32.load offset=8 (local.get $rec))
            (i32.load offset=12 (local.get $rec))
            (i32.load offset=16 (local.get $rec))
            (i32.load offset=20 (local.get $rec))
            (i32.load offset=24 (local.get $rec))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (drop (call $response_send (i32.const 200) (i32.const 0x1F000) (i32.const 4)
      (i32.const 0x18000) (i32.shl (local.get $n) (i32.const 2)) (i32.const 1)))
    (i32.const 0))
  (func $dispatch (param $f i32) (param $a0 i32) (param $a1 i32) (param $a2 i32)
    (param $a3 i32) (param $a4 i32) (param $a5 i32) (result i32)
"#,
    );
    // Nested blocks, innermost first: `br_table` jumps to the end of block k, where the
    // call of function k follows.
    let k = CALLS.len();
    w.push_str("    (block $default\n");
    for i in (0..k).rev() {
        writeln!(w, "    (block $b{i}").unwrap();
    }
    let targets: String = (0..k).map(|i| format!(" $b{i}")).collect();
    writeln!(w, "      (br_table{targets} $default (local.get $f)))").unwrap();
    for (name, slots) in CALLS {
        let n: usize = slots.iter().map(|s| if *s == Range { 2 } else { 1 }).sum();
        let args: String = (0..n).map(|a| format!(" (local.get $a{a})")).collect();
        // Each call ends the block that follows it (the last, `$default`).
        writeln!(w, "      (return (call ${name}{args})))").unwrap();
    }
    w.push_str("    (i32.const -100)))\n");
    w
}

/// A pointer and length: inside the scratch area, or outside memory in one of the ways a
/// confused guest gets there.
fn range() -> impl Strategy<Value = (i32, i32)> {
    prop_oneof![
        3 => (0..SCRATCH_END).prop_flat_map(|p| (Just(p), 0..=(SCRATCH_END - p))),
        1 => (i32::MIN..0, any::<i32>()),
        1 => (0..SCRATCH_END, i32::MIN..0),
        1 => (1..=64i32).prop_map(|k| (MEMORY_BYTES as i32 - k + 1, k)),
        1 => (MEMORY_BYTES as i32..=i32::MAX, 1..=4096i32),
        1 => Just((i32::MAX, i32::MAX)),
    ]
}

/// Handles, flags and counts: small ones (real handles are small) and any.
fn int() -> impl Strategy<Value = i32> {
    prop_oneof![3 => -2..20i32, 1 => any::<i32>()]
}

/// Status codes `response_send` must refuse.
fn status() -> impl Strategy<Value = i32> {
    prop_oneof![
        i32::MIN..100,
        1000..=i32::MAX,
        Just(0),
        Just(99),
        Just(1000)
    ]
}

/// One host call: the function's index and its six argument words.
#[derive(Debug, Clone)]
struct Call {
    f: usize,
    args: [i32; 6],
    /// The first range argument lies outside memory.
    first_range_outside: bool,
}

fn call() -> impl Strategy<Value = Call> {
    (
        0..CALLS.len(),
        [range(), range(), range()],
        [int(), int()],
        status(),
    )
        .prop_map(|(f, ranges, ints, status)| {
            let mut args = [0i32; 6];
            let (mut a, mut r, mut i) = (0, 0, 0);
            let mut first_range_outside = None;
            for slot in CALLS[f].1 {
                match slot {
                    Range => {
                        let (p, l) = ranges[r];
                        r += 1;
                        first_range_outside.get_or_insert(
                            p < 0 || l < 0 || i64::from(p) + i64::from(l) > MEMORY_BYTES,
                        );
                        args[a] = p;
                        args[a + 1] = l;
                        a += 2;
                    }
                    Int => {
                        args[a] = ints[i];
                        i += 1;
                        a += 1;
                    }
                    Status => {
                        args[a] = status;
                        a += 1;
                    }
                }
            }
            Call {
                f,
                args,
                first_range_outside: first_range_outside.unwrap_or(false),
            }
        })
}

fn encode(calls: &[Call]) -> Vec<u8> {
    let mut body = Vec::with_capacity(calls.len() * RECORD_BYTES);
    for c in calls {
        body.extend_from_slice(&(c.f as i32).to_le_bytes());
        for a in c.args {
            body.extend_from_slice(&a.to_le_bytes());
        }
    }
    body
}

/// A tokio runtime, a host on it, and the dispatching guest's module (in the returned
/// directory).
fn host_and_guest() -> (
    tokio::runtime::Runtime,
    TestHost,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = rt.block_on(TestHost::start());
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("calls.wasm");
    std::fs::write(&module, wat::parse_str(guest_wat()).unwrap()).unwrap();
    (rt, host, dir, module)
}

#[test]
fn sdk_host_calls_with_random_arguments_never_trap() {
    let (rt, host, _dir, module) = host_and_guest();
    let ok = guests::go_sdk("sdkfaults");
    host.deploy(&[
        App::new("calls", &module, &["/calls"]),
        App::new("ok", &ok, &["/"]),
    ]);
    let client = reqwest::Client::new();
    let traps = || {
        metric_value(
            &host.rt.metrics.encode(),
            "platform_traps_total",
            &[("app", "calls")],
        )
    };
    let mut runner = TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(200),
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(call(), 1..48), |calls| {
        let before = traps();
        let (status, body) = rt.block_on(async {
            let r = client
                .post(host.url("/calls"))
                .body(encode(&calls))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap())
        });
        prop_assert_eq!(status, 200, "body: {:?}", String::from_utf8_lossy(&body));
        prop_assert_eq!(body.len(), calls.len() * 4);
        for (c, r) in calls.iter().zip(body.chunks_exact(4)) {
            let r = i32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let name = CALLS[c.f].0;
            prop_assert!(
                r >= 0 || (1..=10).contains(&-r),
                "{name}{:?} returned {r}, neither a length nor an error code",
                c.args
            );
            if c.first_range_outside && READS_FIRST.contains(&name) {
                prop_assert_eq!(r, -2, "{}{:?}: a range outside memory", name, c.args);
            }
        }
        if traps() != before {
            let counted: Vec<String> = host
                .rt
                .metrics
                .encode()
                .lines()
                .filter(|l| l.starts_with("platform_traps_total") && l.contains("calls"))
                .map(str::to_string)
                .collect();
            let logged: Vec<String> = host
                .rt
                .logs
                .recent()
                .iter()
                .filter(|e| e.app == "calls")
                .map(|e| e.line.clone())
                .collect();
            return Err(TestCaseError::fail(format!(
                "a host call trapped: {counted:?}, log: {logged:?}"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The host still serves the app, and the others.
    rt.block_on(async {
        let r = client.post(host.url("/calls")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = client.get(host.url("/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        host.stop().await;
    });
}

#[test]
fn the_dispatching_guest_calls_what_it_is_told() {
    // A guard against a guest that never calls anything, and the regression cases found.
    let (rt, host, _dir, module) = host_and_guest();
    host.deploy(&[App::new("calls", &module, &["/calls"])]);
    let close = CALLS.iter().position(|c| c.0 == "http_close").unwrap();
    let head = CALLS.iter().position(|c| c.0 == "request_head").unwrap();
    let trailers = CALLS
        .iter()
        .position(|c| c.0 == "response_trailers")
        .unwrap();
    let calls = [
        // Found by the property above: trailers (a valid, empty block) before the response
        // was sent are refused with STATE, and the response is still the guest's to send
        // (the host used to drop it, answering 502).
        Call {
            f: trailers,
            args: [0, 4, 0, 0, 0, 0],
            first_range_outside: false,
        },
        Call {
            f: close,
            args: [7, 0, 0, 0, 0, 0],
            first_range_outside: false,
        },
        Call {
            f: head,
            args: [-1, 16, 0, 0, 0, 0],
            first_range_outside: true,
        },
        Call {
            f: 99,
            args: [0; 6],
            first_range_outside: false,
        },
    ];
    let body = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(host.url("/calls"))
            .body(encode(&calls))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    });
    let results: Vec<i32> = body
        .chunks_exact(4)
        .map(|r| i32::from_le_bytes([r[0], r[1], r[2], r[3]]))
        .collect();
    // STATE, NOT_FOUND, INVALID (a negative pointer), and the guest's own "no such function".
    assert_eq!(results, [-9, -3, -2, -100]);
    rt.block_on(host.stop());
}
