//! The chaos test's clients: the API calls a deploy makes, a deployer that releases and
//! routes in a loop and remembers what the API acknowledged, and a traffic client that
//! counts every answer per phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The control plane's API with an admin token.
#[derive(Clone)]
pub struct Api {
    server: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    /// A client of `server`.
    pub fn new(server: &str, token: &str) -> Self {
        Api {
            server: server.to_string(),
            token: token.to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
        }
    }

    /// A Connect call in JSON (`service` as `AppService/CreateApp`).
    pub fn call(&self, service: &str, body: Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}/platform.v1.{service}", self.server))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .map_err(|e| format!("{service}: {e}"))?;
        let status = r.status();
        let text = r.text().map_err(|e| format!("{service}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{service}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{service}: {e}: {text}"))
    }

    /// Uploads `bytes` as a module; returns its digest.
    pub fn upload(&self, bytes: Vec<u8>) -> Result<String, String> {
        self.upload_body(reqwest::blocking::Body::from(bytes))
    }

    /// Uploads a (streamed) body as a module; returns its digest.
    pub fn upload_body(&self, body: reqwest::blocking::Body) -> Result<String, String> {
        let r = self
            .http
            .post(format!("{}/v1/modules?name=chaos.wasm", self.server))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .map_err(|e| format!("upload: {e}"))?;
        let status = r.status();
        let text = r.text().map_err(|e| format!("upload: {e}"))?;
        if !status.is_success() {
            return Err(format!("upload: {status} {text}"));
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("upload: {e}"))?;
        v["digest"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("upload: no digest in {text}"))
    }

    /// Creates a release of `app` with `GEN=generation` that goes live once compiled.
    pub fn release(&self, app: &str, digest: &str, generation: u64) -> Result<Acked, String> {
        let r = self.call(
            "ReleaseService/CreateRelease",
            json!({
                "app": app,
                "moduleDigest": digest,
                "env": { "GEN": generation.to_string() },
                "activate": true,
            }),
        )?;
        Ok(Acked {
            id: r["release"]["id"].as_str().unwrap_or_default().to_string(),
            digest: digest.to_string(),
            generation,
        })
    }

    /// Adds the route `path` to `app`.
    pub fn route(&self, app: &str, path: &str) -> Result<(), String> {
        self.call(
            "RouteService/CreateRoute",
            json!({ "app": app, "pathPrefix": path }),
        )
        .map(|_| ())
    }

    /// The control plane's feed revision.
    pub fn revision(&self) -> Result<u64, String> {
        let v = self.call("FeedService/GetSnapshot", json!({}))?;
        let r = &v["snapshot"]["revision"];
        Ok(r.as_u64()
            .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0))
    }

    /// Every release of `app`, newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Value>, String> {
        let v = self.call("ReleaseService/ListReleases", json!({ "app": app }))?;
        Ok(v["releases"].as_array().cloned().unwrap_or_default())
    }

    /// Every route's path prefix.
    pub fn routes(&self) -> Result<Vec<String>, String> {
        let v = self.call("RouteService/ListRoutes", json!({}))?;
        Ok(v["routes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["pathPrefix"].as_str().map(str::to_string))
            .collect())
    }
}

/// A release the API acknowledged.
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: String,
    pub digest: String,
    pub generation: u64,
}

/// A WAGI guest (WAT) answering any path with its environment, one `NAME=value` a line:
/// the churn loop's module (its release's `GEN` shows which release served), quick to
/// compile, so new uploads do not queue behind long compiles.
pub fn env_echo_guest() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 2)
            (data (i32.const 0) "Content-Type: text/plain\r\n\r\n")
            (func (export "_start")
                (local $i i32) (local $size i32)
                (drop (call $sizes (i32.const 64) (i32.const 68)))
                (drop (call $get (i32.const 1024) (i32.const 8192)))
                (local.set $size (i32.load (i32.const 68)))
                (block $done
                    (loop $next
                        (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
                        (if (i32.eqz (i32.load8_u (i32.add (i32.const 8192) (local.get $i))))
                            (then (i32.store8 (i32.add (i32.const 8192) (local.get $i)) (i32.const 10))))
                        (local.set $i (i32.add (local.get $i) (i32.const 1)))
                        (br $next)))
                ;; One buffer per call: WASI writes only the first buffer of a call to a pipe.
                (i32.store (i32.const 128) (i32.const 0))
                (i32.store (i32.const 132) (i32.const 28))
                (drop (call $write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 160)))
                (i32.store (i32.const 128) (i32.const 8192))
                (i32.store (i32.const 132) (local.get $size))
                (drop (call $write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 160)))))"#,
    )
    .unwrap()
}

/// The `GEN` a churn answer shows (the env echo's line, or cgimux's `/getenv/GEN` body).
pub fn generation_in(body: &str) -> &str {
    body.lines()
        .find_map(|l| l.strip_prefix("GEN="))
        .unwrap_or(body)
}

/// A module's bytes made unique: `base` with a custom section carrying `n` appended, so
/// each variant is a new upload and a new compile.
pub fn variant(base: &[u8], n: u64) -> Vec<u8> {
    let name = b"chaos";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&n.to_le_bytes());
    let mut out = base.to_vec();
    out.push(0);
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// What the deployer did, shared with the test.
#[derive(Default)]
pub struct DeployLog {
    /// Releases the API acknowledged.
    pub acked: Vec<Acked>,
    /// Routes the API acknowledged.
    pub routes: Vec<String>,
    /// Calls that failed, per phase.
    pub failed: BTreeMap<String, u64>,
    /// Calls that succeeded, per phase.
    pub ok: BTreeMap<String, u64>,
}

/// Releases `churn` in a loop (a new module every few rounds), adds a route now and then.
pub struct Deployer {
    pub log: Arc<Mutex<DeployLog>>,
    pub running: Arc<AtomicBool>,
    /// Set by the loop while it is paused with no round in flight.
    idle: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Deployer {
    /// Starts the loop (paused: see [`Self::resume`]); `first_digest` is churn's module.
    pub fn start(api: Api, base: Vec<u8>, first_digest: String, phase: Arc<Mutex<String>>) -> Self {
        let log = Arc::new(Mutex::new(DeployLog::default()));
        let running = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, r, i, s, p) = (
            log.clone(),
            running.clone(),
            idle.clone(),
            stop.clone(),
            phase,
        );
        let thread = std::thread::spawn(move || {
            let mut digest = first_digest;
            let mut round: u64 = 0;
            while !s.load(Ordering::SeqCst) {
                if !r.load(Ordering::SeqCst) {
                    i.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                round += 1;
                let phase = p.lock().unwrap().clone();
                let result = (|| -> Result<(), String> {
                    if round.is_multiple_of(6) {
                        digest = api.upload(variant(&base, 1_000_000 + round))?;
                    }
                    let acked = api.release("churn", &digest, round)?;
                    l.lock().unwrap().acked.push(acked);
                    if round.is_multiple_of(4) {
                        let path = format!("/churn-r{round}");
                        api.route("churn", &path)?;
                        l.lock().unwrap().routes.push(path);
                    }
                    Ok(())
                })();
                let mut log = l.lock().unwrap();
                let counter = if result.is_ok() {
                    &mut log.ok
                } else {
                    &mut log.failed
                };
                *counter.entry(phase).or_default() += 1;
                drop(log);
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        Deployer {
            log,
            running,
            idle,
            stop,
            thread: Some(thread),
        }
    }

    /// Lets the loop run.
    pub fn resume(&self) {
        // Not idle from here on, so a `pause` right after waits for the loop to look.
        self.idle.store(false, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
    }

    /// Pauses the loop and waits for the round in flight to finish (or fail), so that
    /// what is checked next sees every release the loop created. A round after a fault can
    /// take several client timeouts (upload, release, route: 15 s each).
    pub fn pause(&self) {
        self.running.store(false, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.idle.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the deployer's round did not end within 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Deployer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers seen by the traffic client, per phase and runtime.
#[derive(Debug, Default, Clone, Copy)]
pub struct Answers {
    pub ok: u64,
    pub server_error: u64,
    pub other_status: u64,
    pub no_answer: u64,
}

/// Sends `GET /stable` and `GET /churn/getenv/GEN` to both runtimes in a loop.
pub struct Traffic {
    pub answers: Arc<Mutex<BTreeMap<(String, usize), Answers>>>,
    /// Failures seen, for the report (phase, runtime, what).
    pub failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// Starts sending to `urls` (read on every round), counting under the current `phase`.
    pub fn start(urls: Arc<Mutex<Vec<String>>>, phase: Arc<Mutex<String>>) -> Self {
        let answers: Arc<Mutex<BTreeMap<(String, usize), Answers>>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, f, s) = (answers.clone(), failures.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            while !s.load(Ordering::SeqCst) {
                let count = urls.lock().unwrap().len();
                for i in 0..count {
                    for path in ["/stable", "/churn/getenv/GEN"] {
                        // The phase first, then the address: a phase begun after a runtime
                        // was restarted (on a new port) never sends to the old one.
                        let phase = phase.lock().unwrap().clone();
                        let base = urls.lock().unwrap()[i].clone();
                        let r = http.get(format!("{base}{path}")).send();
                        let (kind, what) = match r {
                            Ok(r) if r.status().is_success() => (0, String::new()),
                            Ok(r) if r.status().is_server_error() => (
                                1,
                                format!("{} {}", r.status(), r.text().unwrap_or_default()),
                            ),
                            Ok(r) => (
                                2,
                                format!("{} {}", r.status(), r.text().unwrap_or_default()),
                            ),
                            Err(e) => (3, e.to_string()),
                        };
                        let mut map = a.lock().unwrap();
                        let e = map.entry((phase.clone(), i)).or_default();
                        match kind {
                            0 => e.ok += 1,
                            1 => e.server_error += 1,
                            2 => e.other_status += 1,
                            _ => e.no_answer += 1,
                        }
                        if kind != 0 {
                            f.lock()
                                .unwrap()
                                .push(format!("{phase}: runtime {i} GET {path}: {what}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Traffic {
            answers,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers of `phase` from runtime `i`.
    pub fn of(&self, phase: &str, i: usize) -> Answers {
        self.answers
            .lock()
            .unwrap()
            .get(&(phase.to_string(), i))
            .copied()
            .unwrap_or_default()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request body that trickles out in 64 KiB pieces, 30 ms apart (an upload that is
/// still in flight when its server is killed).
pub fn slow_body(bytes: Vec<u8>) -> reqwest::blocking::Body {
    struct Slow {
        bytes: Vec<u8>,
        at: usize,
    }
    impl std::io::Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at >= self.bytes.len() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(30));
            let n = buf.len().min(64 << 10).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    reqwest::blocking::Body::new(Slow { bytes, at: 0 })
}
