//! Chaos in cluster mode: PostgreSQL and NATS of the test's own, control, worker and two
//! runtimes as real processes; a client releasing and routing in a loop, another sending
//! traffic to both runtimes; then faults, one at a time: NATS `kill -9`ed and restarted,
//! PostgreSQL stopped hard and restarted, control `kill -9`ed mid-upload and mid-release,
//! the worker `kill -9`ed mid-compile, a runtime `kill -9`ed.
//!
//! After each: every release the API acknowledged is there and whole (its module and
//! artifact blobs, its settings, its routes served), none is left half-applied or pending;
//! both runtimes reach control's feed revision within a bound (the figure is reported);
//! the known routes answered 200 on every live runtime throughout; failed uploads left
//! nothing staged. Figures go to `target/chaos/report.md`. `PLATFORM_CHAOS_ROUNDS=N`
//! repeats the faults N times (default 1, a few minutes).

mod client;
mod report;
mod services;

use std::time::{Duration, Instant};

use platform_test_guests as guests;
use sha2::Digest as _;

use client::{Api, Deployer, Traffic, variant};
use report::{Report, Row};
use services::Cluster;

/// How long runtimes may take to reach control's revision once the service is back.
/// Below the runtimes' 30 s periodic resync on purpose: convergence must come from events
/// and announcements, not from the safety net.
const CONVERGE_BOUND: Duration = Duration::from_secs(20);

/// The same after a worker's death mid-compile: its claim's lease (15 s) runs out, the
/// next worker's poll (5 s) takes the job, compiles it, and the release goes live.
const WORKER_CONVERGE_BOUND: Duration = Duration::from_secs(90);

#[test]
fn chaos_on_real_postgres_and_nats() {
    let rounds: usize = std::env::var("PLATFORM_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let hello = std::fs::read(guests::go("hello")).unwrap();
    // Go's net/http/cgi mux: slow to upload and compile (the mid-upload and mid-compile
    // faults need time to strike); the churn loop releases a small WAT guest instead.
    let mux = std::fs::read(guests::go("cgimux")).unwrap();
    let echo = client::env_echo_guest();
    let mut c = Cluster::start();
    let api = Api::new(&c.server, &c.token);

    // Two apps: `stable` never changes, `churn` is released over and over.
    let stable = api.upload(hello).unwrap();
    let churn = api.upload(echo.clone()).unwrap();
    for (app, digest, path) in [("stable", &stable, "/stable"), ("churn", &churn, "/churn")] {
        api.call("AppService/CreateApp", serde_json::json!({ "name": app }))
            .unwrap();
        api.release(app, digest, 0).unwrap();
        api.route(app, path).unwrap();
    }
    let phase = std::sync::Arc::new(std::sync::Mutex::new("start".to_string()));
    converge(&c, &api, Instant::now(), Duration::from_secs(120)).unwrap();
    let traffic = Traffic::start(c.urls.clone(), phase.clone());
    let deployer = Deployer::start(api.clone(), echo, churn, phase.clone());
    let mut report = Report::default();
    let mut problems = Vec::new();

    let begin = |name: String| {
        *phase.lock().unwrap() = name.clone();
        name
    };

    for round in 1..=rounds {
        let tag = |fault: &str| {
            if rounds == 1 {
                fault.to_string()
            } else {
                format!("{fault} #{round}")
            }
        };

        // NATS killed: control and runtimes keep going; events resume when it returns.
        let name = begin(tag("NATS kill -9"));
        deployer.resume();
        std::thread::sleep(Duration::from_secs(1));
        Cluster::kill(&mut c.nats_server);
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        c.nats_server = Some(c.nats.start());
        let back = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        deployer.pause();
        finish(
            &c,
            &api,
            &deployer,
            &traffic,
            &name,
            None,
            CONVERGE_BOUND,
            back.duration_since(down),
            back,
            &mut report,
            &mut problems,
        );

        // PostgreSQL stopped hard: API calls fail cleanly while it is away.
        let name = begin(tag("PostgreSQL stop -m immediate, start"));
        deployer.resume();
        std::thread::sleep(Duration::from_secs(1));
        c.pg.stop();
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        c.pg.start_again();
        let back = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        deployer.pause();
        finish(
            &c,
            &api,
            &deployer,
            &traffic,
            &name,
            None,
            CONVERGE_BOUND,
            back.duration_since(down),
            back,
            &mut report,
            &mut problems,
        );

        // Control killed in the middle of an upload: the client sees the failure, and
        // nothing of the upload is left staged or stored.
        let name = begin(tag("control kill -9 mid-upload"));
        let bytes = variant(&mux, 2_000_000 + round as u64);
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        let uploading = {
            let api = api.clone();
            std::thread::spawn(move || api.upload_body(client::slow_body(bytes)))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.staged("control").is_empty() {
            assert!(
                Instant::now() < deadline,
                "the upload never reached control's staging dir"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Cluster::kill(&mut c.control);
        let down = Instant::now();
        let upload = uploading.join().unwrap();
        if upload.is_ok() {
            problems.push(format!(
                "{name}: the upload succeeded although control was killed during it"
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
        c.start_control();
        let back = Instant::now();
        if api
            .call("ModuleService/ListModules", serde_json::json!({}))
            .map(|v| v.to_string().contains(&digest))
            .unwrap_or(true)
        {
            problems.push(format!(
                "{name}: the interrupted upload {digest} is listed as a module"
            ));
        }
        finish(
            &c,
            &api,
            &deployer,
            &traffic,
            &name,
            None,
            CONVERGE_BOUND,
            back.duration_since(down),
            back,
            &mut report,
            &mut problems,
        );

        // Control killed in the middle of releases and route changes.
        let name = begin(tag("control kill -9 mid-release"));
        deployer.resume();
        std::thread::sleep(Duration::from_millis(1500));
        let releasing = {
            let api = api.clone();
            let digest = deployer
                .log
                .lock()
                .unwrap()
                .acked
                .last()
                .unwrap()
                .digest
                .clone();
            std::thread::spawn(move || api.release("churn", &digest, 9_000_000 + round as u64))
        };
        std::thread::sleep(Duration::from_millis(3));
        Cluster::kill(&mut c.control);
        let down = Instant::now();
        if let Ok(acked) = releasing.join().unwrap() {
            deployer.log.lock().unwrap().acked.push(acked);
        }
        std::thread::sleep(Duration::from_secs(2));
        c.start_control();
        let back = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        deployer.pause();
        finish(
            &c,
            &api,
            &deployer,
            &traffic,
            &name,
            None,
            CONVERGE_BOUND,
            back.duration_since(down),
            back,
            &mut report,
            &mut problems,
        );

        // The worker killed mid-compile: its job is taken up again, the release goes live.
        let name = begin(tag("worker kill -9 mid-compile"));
        let bytes = variant(&mux, 3_000_000 + round as u64);
        let digest = api.upload(bytes).unwrap();
        let acked = api
            .release("churn", &digest, 8_000_000 + round as u64)
            .unwrap();
        deployer.log.lock().unwrap().acked.push(acked);
        let deadline = Instant::now() + Duration::from_secs(60);
        let sql = format!("SELECT state FROM artifacts WHERE digest = '{digest}'");
        while c.pg.query(&sql) != "compiling" {
            assert!(
                Instant::now() < deadline,
                "the worker never started compiling {digest}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Cluster::kill(&mut c.worker);
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        c.start_worker();
        let back = Instant::now();
        finish(
            &c,
            &api,
            &deployer,
            &traffic,
            &name,
            None,
            WORKER_CONVERGE_BOUND,
            back.duration_since(down),
            back,
            &mut report,
            &mut problems,
        );

        // A runtime killed under traffic: the other one serves everything; the killed one
        // comes back with the current state.
        let name = begin(tag("runtime kill -9"));
        deployer.resume();
        std::thread::sleep(Duration::from_secs(1));
        Cluster::kill(&mut c.runtimes[1]);
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        c.start_runtime(1);
        let back = Instant::now();
        // Once it says ready, the restarted runtime is live again: from then on its answers
        // count as any live runtime's (only requests to it while it was down may fail).
        if let Some(rt) = c.runtimes[1].as_mut() {
            rt.wait_line(
                "modules of the first routes fetched; ready",
                Duration::from_secs(60),
            );
        }
        let restarted = begin(format!("{name}, restarted"));
        std::thread::sleep(Duration::from_millis(1500));
        deployer.pause();
        finish(
            &c,
            &api,
            &deployer,
            &traffic,
            &name,
            Some((1, &restarted)),
            CONVERGE_BOUND,
            back.duration_since(down),
            back,
            &mut report,
            &mut problems,
        );
    }
    drop(deployer);
    drop(traffic);
    report.write();
    assert!(
        problems.is_empty(),
        "chaos found problems:\n{}",
        problems.join("\n")
    );
}

/// Ends a phase: waits for convergence, checks every invariant, adds the phase's row.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per phase, all of it needed"
)]
fn finish(
    c: &Cluster,
    api: &Api,
    deployer: &Deployer,
    traffic: &Traffic,
    name: &str,
    killed_runtime: Option<(usize, &str)>,
    bound: Duration,
    down: Duration,
    back: Instant,
    report: &mut Report,
    problems: &mut Vec<String>,
) {
    let converged = match converge(c, api, back, bound) {
        Ok(took) => Some(took),
        Err(state) => {
            problems.push(format!("{name}: no convergence within {bound:?}: {state}"));
            None
        }
    };
    for p in check_whole(c, api, deployer) {
        problems.push(format!("{name}: {p}"));
    }
    let mut row = Row {
        fault: name.to_string(),
        down,
        converged,
        ..Row::default()
    };
    // The phase after a killed runtime came back, where it is live again.
    let restarted = killed_runtime.map(|(_, phase)| phase);
    {
        let log = deployer.log.lock().unwrap();
        for phase in std::iter::once(name).chain(restarted) {
            row.deploys_ok += log.ok.get(phase).copied().unwrap_or(0);
            row.deploys_failed += log.failed.get(phase).copied().unwrap_or(0);
        }
    }
    for i in 0..2 {
        if let Some(phase) = restarted {
            let a = traffic.of(phase, i);
            row.requests += a.ok + a.server_error + a.other_status + a.no_answer;
            row.failed_on_live += a.server_error + a.other_status + a.no_answer;
            row.server_errors += a.server_error;
        }
        let a = traffic.of(name, i);
        row.requests += a.ok + a.server_error + a.other_status + a.no_answer;
        if Some(i) == killed_runtime.map(|(k, _)| k) {
            row.lost_on_killed += a.server_error + a.other_status + a.no_answer;
            if a.other_status > 0 {
                let prefix = format!("{name}: runtime {i} ");
                let seen: Vec<String> = traffic
                    .failures
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|f| f.starts_with(&prefix))
                    .take(5)
                    .cloned()
                    .collect();
                problems.push(format!(
                    "{name}: the killed runtime answered {} non-5xx errors, e.g. {seen:?}",
                    a.other_status
                ));
            }
        } else {
            row.failed_on_live += a.server_error + a.other_status + a.no_answer;
            row.server_errors += a.server_error;
        }
    }
    if row.failed_on_live > 0 {
        let failures = traffic.failures.lock().unwrap();
        let seen: Vec<&String> = failures
            .iter()
            .filter(|f| {
                std::iter::once(name)
                    .chain(restarted)
                    .any(|phase| f.starts_with(&format!("{phase}:")))
            })
            .take(5)
            .collect();
        problems.push(format!(
            "{name}: {} requests failed on live runtimes, e.g. {seen:?}",
            row.failed_on_live
        ));
    }
    eprintln!("chaos: {row:?}");
    report.rows.push(row);
}

/// Waits until no release of `churn` is pending, both runtimes applied control's revision
/// and serve the live release's generation; returns the time since `since`.
fn converge(c: &Cluster, api: &Api, since: Instant, bound: Duration) -> Result<Duration, String> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    loop {
        let state = (|| -> Result<Option<String>, String> {
            let releases = api.releases("churn")?;
            if let Some(p) = releases
                .iter()
                .find(|r| r["state"] == "RELEASE_STATE_PENDING")
            {
                return Ok(Some(format!("release #{} still pending", p["number"])));
            }
            let generation = releases
                .iter()
                .find(|r| r["live"] == true)
                .and_then(|r| r["env"]["GEN"].as_str().map(str::to_string))
                .ok_or("churn has no live release")?;
            let revision = api.revision()?;
            let urls = c.urls.lock().unwrap().clone();
            for (i, url) in urls.iter().enumerate() {
                let have = c.runtime_revision(i);
                if have != Some(revision) {
                    return Ok(Some(format!(
                        "runtime {i} at revision {have:?}, control at {revision}"
                    )));
                }
                let body = http
                    .get(format!("{url}/churn/getenv/GEN"))
                    .send()
                    .and_then(|r| r.text())
                    .map_err(|e| e.to_string())?;
                if client::generation_in(&body) != generation {
                    return Ok(Some(format!(
                        "runtime {i} serves GEN {body:?}, live is {generation}"
                    )));
                }
            }
            Ok(None)
        })();
        match state {
            Ok(None) => return Ok(since.elapsed()),
            Ok(Some(s)) | Err(s) if since.elapsed() > bound => return Err(s),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Every acknowledged release and route is there and whole; nothing half-applied or staged.
fn check_whole(c: &Cluster, api: &Api, deployer: &Deployer) -> Vec<String> {
    let mut problems = Vec::new();
    let releases = match api.releases("churn") {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot list releases: {e}")],
    };
    let log = deployer.log.lock().unwrap();
    for a in &log.acked {
        match releases.iter().find(|r| r["id"] == a.id.as_str()) {
            None => problems.push(format!(
                "acknowledged release {} (GEN {}) is gone",
                a.id, a.generation
            )),
            Some(r) => {
                if r["moduleDigest"] != a.digest.as_str()
                    || r["env"]["GEN"] != a.generation.to_string().as_str()
                {
                    problems.push(format!(
                        "release {} is not what was acknowledged: {r}",
                        a.id
                    ));
                }
            }
        }
    }
    // Every release (acknowledged or created by a call whose answer was lost) is whole.
    let newest = releases.iter().filter_map(|r| r["number"].as_u64()).max();
    for r in &releases {
        let digest = r["moduleDigest"].as_str().unwrap_or_default();
        if r["state"] != "RELEASE_STATE_READY" {
            problems.push(format!(
                "release #{} is {} ({})",
                r["number"], r["state"], r["error"]
            ));
        }
        match std::fs::read(c.blob_dir().join(format!("modules/{digest}.wasm"))) {
            Ok(bytes) if hex::encode(sha2::Sha256::digest(&bytes)) == digest => {}
            Ok(_) => problems.push(format!("module blob {digest} does not match its digest")),
            Err(e) => problems.push(format!(
                "module blob {digest} of release #{}: {e}",
                r["number"]
            )),
        }
        let artifacts = std::fs::read_dir(c.blob_dir().join("artifacts"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with(digest) && n.ends_with(".cwasm")
                    })
                    .count()
            })
            .unwrap_or(0);
        if artifacts == 0 {
            problems.push(format!(
                "no artifact for module {digest} of release #{}",
                r["number"]
            ));
        }
        if r["live"] == true && r["number"].as_u64() != newest {
            problems.push(format!(
                "release #{} is live although #{newest:?} is newer and asked to go live",
                r["number"]
            ));
        }
    }
    match api.routes() {
        Ok(routes) => {
            let urls = c.urls.lock().unwrap().clone();
            for path in &log.routes {
                if !routes.contains(path) {
                    problems.push(format!("acknowledged route {path} is gone"));
                }
                for (i, url) in urls.iter().enumerate() {
                    let s = reqwest::blocking::get(format!("{url}{path}/getenv/GEN"))
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    if s != 200 {
                        problems.push(format!(
                            "runtime {i} answers {s} on the acknowledged route {path}"
                        ));
                    }
                }
            }
        }
        Err(e) => problems.push(format!("cannot list routes: {e}")),
    }
    // Control stages only uploads (none is in flight now); the worker stages its compiles,
    // so its directory must be empty once it has nothing left to compile.
    let staged = c.staged("control");
    if !staged.is_empty() {
        problems.push(format!("control left staged files: {staged:?}"));
    }
    let compiling =
        c.pg.query("SELECT count(*) FROM artifacts WHERE state IN ('pending', 'compiling')");
    let staged = c.staged("worker");
    if compiling == "0" && !staged.is_empty() {
        problems.push(format!("the idle worker left staged files: {staged:?}"));
    }
    for sub in ["modules", "artifacts"] {
        if let Ok(d) = std::fs::read_dir(c.blob_dir().join(sub)) {
            for e in d.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.contains('#') {
                    problems.push(format!("partial blob left: {sub}/{n}"));
                }
            }
        }
    }
    problems
}
