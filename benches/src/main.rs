//! Side-by-side benchmarks: Platform against a native hyper server and bare wasmtime, run
//! in one process, one after the other, reported as ratios (absolute figures on a shared
//! 2-core machine swing by ±30%; ratios within one run are what to compare).
//!
//! `./scripts/bench` runs everything and writes `target/bench/report.{json,md}`.

mod inproc;
mod loadgen;
mod native;
mod peer;
mod report;
mod shipped;
mod soak;
mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use platform_runtime::{
    AppSpec, AppTarget, Isolation, LocalModuleStore, RouteSpec, RouteTable, Runtime, RuntimeConfig,
};
use platform_test_guests as guests;

use crate::loadgen::{LoadResult, percentiles};
use crate::report::{Report, Row};

/// Benchmark options.
#[derive(Debug, Parser)]
struct Args {
    /// Measured seconds per HTTP run.
    #[arg(long, default_value = "8")]
    seconds: u64,
    /// Warm-up seconds before each HTTP run.
    #[arg(long, default_value = "2")]
    warmup: u64,
    /// Concurrent connections for throughput runs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Iterations for in-process latency runs.
    #[arg(long, default_value_t = 2000)]
    iterations: usize,
    /// Cold starts to measure per module.
    #[arg(long, default_value_t = 50)]
    cold: usize,
    /// Where report.json and report.md go.
    #[arg(long, default_value = "target/bench")]
    out: std::path::PathBuf,
    /// The `platform` binary for the start-up runs (skipped when absent).
    #[arg(long, default_value = "target/release/platform")]
    platform_bin: std::path::PathBuf,
    /// Routes in the start-up runs' manifest.
    #[arg(long, default_value_t = 1000)]
    routes: usize,
    /// Only send requests for PATH through the runtime in-process for --seconds (no
    /// report), for a profiler: `perf record -g ... platform-benches --profile /sdk-pr`.
    /// Set PLATFORM_WASM_PROFILER=perfmap to name guest functions.
    #[arg(long, value_name = "PATH")]
    profile: Option<String>,
    /// Host header for --profile and --only-path.
    #[arg(long, default_value = "bench.local")]
    profile_host: String,
    /// A `wasmtime` CLI (48) to run `wasmtime serve` on the same Rust wasi:http component,
    /// fresh and with instance reuse, as peer rows (`./scripts/bench --with-wasmtime-serve`
    /// installs one and passes it).
    #[arg(long, value_name = "PATH")]
    wasmtime_serve: Option<std::path::PathBuf>,
    /// Soak instead of the benchmarks: `platform up` (--platform-bin) under half its peak on
    /// a mix for this long (`30m`), a line a minute; writes soak.md and soak.json to --out.
    #[arg(long, value_name = "DURATION", value_parser = soak::parse_duration)]
    soak: Option<Duration>,
    /// Only the flooded-neighbour row (the neighbour alone, then beside the flood), printed
    /// and not written to the report: a quick loop for work on tenant isolation.
    #[arg(long)]
    flood_only: bool,
    /// Only the rows at one connection (native hyper, Go and Rust WAGI, Go SDK pooled and
    /// per-request) and the in-process host overhead of the two WAGI hellos (bare wasmtime,
    /// executor, `Runtime::handle`, interleaved), printed and not written to the report: a
    /// quick loop for work on per-request latency and the host's own cost.
    #[arg(long)]
    latency_only: bool,
    /// Only native hyper and PATH at --concurrency connections, alternating for --repeat
    /// pairs, printed with the ratio and not written to the report: a quick loop for one
    /// row, or for a profiler attached while PATH runs.
    #[arg(long, value_name = "PATH")]
    only_path: Option<String>,
    /// Pairs of runs for --only-path.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Polls between two looks for I/O on the in-process server's workers (tokio's default
    /// is 61); for comparing with the runtime's setting.
    #[arg(long, default_value_t = platform_runtime::executor::IO_EVENT_INTERVAL)]
    event_interval: u32,
    /// The runtime's time slice in milliseconds (`EngineSettings::epoch_tick`; 5 by
    /// default): how long a guest runs before it yields its CPU slot to another app.
    #[arg(long, default_value_t = platform_runtime::engine::EPOCH_TICK.as_millis() as u64)]
    epoch_tick_ms: u64,
    /// Worker threads of the in-process server's tokio runtime (one per CPU by default).
    #[arg(long, default_value_t = 2)]
    server_workers: usize,
    /// Run the load generator in a child process instead of as a thread of the bench
    /// process (the default, as all recorded figures were measured): the server's TLB
    /// shootdowns then do not hit a client thread (benches/README, "TLB shootdowns").
    #[arg(long)]
    client_process: bool,
    /// Internal: be the load generator against ADDR (--client-path, --client-host,
    /// --concurrency, --warmup, --seconds) and print its result as JSON.
    #[arg(long, value_name = "ADDR", hide = true)]
    client: Option<SocketAddr>,
    /// Internal: the path the load generator requests.
    #[arg(long, default_value = "/", hide = true)]
    client_path: String,
    /// Internal: the Host header the load generator sends.
    #[arg(long, default_value = "bench.local", hide = true)]
    client_host: String,
}

/// A neighbour's latency while one app is flooded: the Go SDK hello at 4 connections,
/// alone and then while 64 connections hammer the (much slower) Go mux app. Returns the
/// neighbour alone, the neighbour beside the flood, and the flood.
fn flooded_neighbour(
    client_rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    warmup: Duration,
    secs: Duration,
) -> anyhow::Result<(LoadResult, LoadResult, LoadResult)> {
    eprintln!("flooded neighbour: Go SDK hello while the Go mux app is flooded ...");
    let alone = client_rt.block_on(loadgen::run(addr, "/sdk", "bench.local", 4, warmup, secs))?;
    let (beside_flood, flood) = client_rt.block_on(async {
        let flood = tokio::spawn(loadgen::run(
            addr,
            "/mux/items/1",
            "bench.local",
            64,
            warmup,
            secs,
        ));
        let measured = loadgen::run(addr, "/sdk", "bench.local", 4, warmup, secs).await;
        (measured, flood.await)
    });
    Ok((alone, beside_flood?, flood??))
}

/// The report's line on Platform's own cost per WAGI request, without HTTP: bare wasmtime
/// running the same guest with the same CGI environment, the WAGI executor, and
/// `Runtime::handle` (everything the host does for a request but the HTTP exchange), p50s
/// from interleaved runs.
fn host_overhead_note(guest: &str, o: &inproc::WagiOverhead) -> String {
    let (bare, exec, handle) = (o.bare.0, o.executor.0, o.handle.0);
    format!(
        "Host overhead per {guest} WAGI request, in-process (p50s, interleaved): Runtime::handle {handle:.0} µs minus bare wasmtime with the same environment {bare:.0} µs = {:.1} µs = {:.1}% (target: at most 10%); of it the executor (store, limits, stdio, CPU slot, CGI parsing) {:.1} µs, routing, admission, metrics and the log line {:.1} µs",
        handle - bare,
        100.0 * (handle - bare) / handle.max(1e-9),
        exec - bare,
        handle - exec,
    )
}

/// The load generator's runtime, in the bench process or in a `--client` child alike: one
/// worker, so the client's share of the CPUs is the same either way.
fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("client")
        .enable_all()
        .build()
}

/// The report's line on the flooded neighbour.
fn flood_note(alone: &LoadResult, beside_flood: &LoadResult, flood: &LoadResult) -> String {
    format!(
        "Flooded neighbour: the Go SDK hello's p99 is {:.2}x its p99 alone ({:.0} µs vs {:.0} µs; {} errors); the flooded Go mux app meanwhile served {:.0} req/s with {} refused or failed ({}).",
        beside_flood.p99_us / alone.p99_us.max(1.0),
        beside_flood.p99_us,
        alone.p99_us,
        beside_flood.errors,
        flood.rps,
        flood.errors,
        "503 with Retry-After once it is at its own cap"
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(duration) = args.soak {
        return soak::main(&args.platform_bin, duration, &args.out);
    }
    if let Some(addr) = args.client {
        let r = client_runtime()?.block_on(loadgen::run(
            addr,
            &args.client_path,
            &args.client_host,
            args.concurrency,
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.seconds),
        ))?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let server_rt = platform_runtime::executor::multi_thread()
        .worker_threads(args.server_workers.max(1))
        .event_interval(args.event_interval)
        .thread_name("server")
        .build()?;
    let client_rt = client_runtime()?;

    eprintln!("building guests from source...");
    let go_hello = guests::go("hello");
    let go_mux = guests::go("cgimux");
    let rust_hello = guests::rust("hello-wagi");
    let sdk_hello = guests::sdk_example("hello");
    let sdk_json = guests::sdk_example("jsonapi");
    let rust_component = guests::http_component();

    let mut report = Report::new(&args.concurrency);
    let warmup = Duration::from_secs(args.warmup);
    let secs = Duration::from_secs(args.seconds);
    // The load generator is a thread of this process unless --client-process (see
    // `loadgen::run_in_child` for the difference). The flooded-neighbour row's two
    // concurrent loads always run in-process.
    let load_as =
        |addr: SocketAddr, host: &str, path: &str, c: usize| -> anyhow::Result<LoadResult> {
            if args.client_process {
                loadgen::run_in_child(addr, path, host, c, warmup, secs)
            } else {
                client_rt.block_on(loadgen::run(addr, path, host, c, warmup, secs))
            }
        };
    let load = |addr: SocketAddr, path: &str, c: usize| load_as(addr, "bench.local", path, c);

    // Native hyper, before.
    let native_addr = server_rt.block_on(native::start())?;
    eprintln!("native hyper hello ...");
    let native_before = load(native_addr, "/", args.concurrency)?;

    // Platform.
    let data = tempfile::tempdir()?;
    let (rt, platform_addr) = server_rt.block_on(async {
        let store = LocalModuleStore::new(data.path().join("modules"))?;
        let mut config = RuntimeConfig::new(data.path());
        config.engine.epoch_tick = Duration::from_millis(args.epoch_tick_ms.max(1));
        config.artifact_dir = guests::shared_artifact_dir();
        let rt = Runtime::new(config, Arc::new(store.clone()))?;
        let mut entries = Vec::new();
        for (name, module, route, isolation) in [
            ("go-hello", &go_hello, "/go", Isolation::Pooled),
            ("go-mux", &go_mux, "/mux", Isolation::Pooled),
            ("rust-hello", &rust_hello, "/rust", Isolation::Pooled),
            // A fresh instance per request, as `wasmtime serve` does by default.
            (
                "rust-component",
                &rust_component,
                "/comp",
                Isolation::PerRequest,
            ),
            ("sdk-hello", &sdk_hello, "/sdk", Isolation::Pooled),
            ("sdk-hello-pr", &sdk_hello, "/sdk-pr", Isolation::PerRequest),
            ("sdk-json", &sdk_json, "/todos", Isolation::Pooled),
            (
                "sdk-json-pr",
                &sdk_json,
                "per-request.local/todos",
                Isolation::PerRequest,
            ),
        ] {
            let digest = store.put(&std::fs::read(module)?)?;
            let spec = Arc::new(AppSpec {
                module: digest,
                isolation,
                ..AppSpec::for_tests(name)
            });
            entries.push((RouteSpec::parse(route)?, Arc::new(AppTarget::single(spec))));
        }
        rt.routes.replace(RouteTable::build(entries)?);
        // Compile (and snapshot) ahead of the runs, as a release does.
        for m in [
            &go_hello,
            &go_mux,
            &rust_hello,
            &rust_component,
            &sdk_hello,
            &sdk_json,
        ] {
            rt.cache
                .get(&platform_runtime::Digest::of(&std::fs::read(m)?))
                .await?;
        }
        for m in [&sdk_hello, &sdk_json] {
            rt.cache
                .prepare_snapshot(&platform_runtime::Digest::of(&std::fs::read(m)?))
                .await?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(platform_runtime::server::serve(
            listener,
            rt.clone(),
            std::future::pending(),
            Duration::from_secs(1),
        ));
        Ok::<_, anyhow::Error>((rt, addr))
    })?;
    if let Some(path) = &args.profile {
        eprintln!(
            "profiling: {path} on host {} for {} s (pid {}) ...",
            args.profile_host,
            args.seconds,
            std::process::id()
        );
        let n = server_rt.block_on(inproc::run_for(&rt, &args.profile_host, path, warmup))?;
        eprintln!("warm-up: {n} requests");
        let started = std::time::Instant::now();
        let n = server_rt.block_on(inproc::run_for(&rt, &args.profile_host, path, secs))?;
        let per = started.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
        println!("{n} requests in {} s: {per:.1} µs each", args.seconds);
        return Ok(());
    }
    if args.flood_only {
        let (alone, beside_flood, flood) =
            flooded_neighbour(&client_rt, platform_addr, warmup, secs)?;
        println!(
            "alone p50/p99 {:.0}/{:.0} µs; beside the flood p50/p99 {:.0}/{:.0} µs",
            alone.p50_us, alone.p99_us, beside_flood.p50_us, beside_flood.p99_us
        );
        println!("{}", flood_note(&alone, &beside_flood, &flood));
        return Ok(());
    }
    if let Some(path) = &args.only_path {
        for _ in 0..args.repeat.max(1) {
            let native = load(native_addr, "/", args.concurrency)?;
            eprintln!("platform: {path} (pid {}) ...", std::process::id());
            let r = load_as(platform_addr, &args.profile_host, path, args.concurrency)?;
            println!(
                "{path}, {} connections: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs; native {:.0} req/s; {:.3}x native",
                args.concurrency,
                r.rps,
                r.p50_us,
                r.p99_us,
                native.rps,
                r.rps / native.rps.max(1.0)
            );
        }
        return Ok(());
    }
    if args.latency_only {
        for (what, addr, path) in [
            ("native hyper hello", native_addr, "/"),
            ("Go WAGI hello", platform_addr, "/go"),
            ("Rust WAGI hello", platform_addr, "/rust"),
            ("Go SDK hello, pooled", platform_addr, "/sdk"),
            ("Go SDK hello, per-request", platform_addr, "/sdk-pr"),
        ] {
            let r = load(addr, path, 1)?;
            println!(
                "{what}, 1 connection: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                r.rps, r.p50_us, r.p99_us
            );
        }
        for (what, wasm, path) in [("Go", &go_hello, "/go"), ("Rust", &rust_hello, "/rust")] {
            let o =
                server_rt.block_on(inproc::wagi_host_overhead(&rt, wasm, path, args.iterations))?;
            println!("{}", host_overhead_note(what, &o));
        }
        return Ok(());
    }
    eprintln!("platform: Go WAGI hello ...");
    let go_wagi = load(platform_addr, "/go", args.concurrency)?;
    eprintln!("platform: Rust WAGI hello ...");
    let rust_wagi = load(platform_addr, "/rust", args.concurrency)?;
    eprintln!("platform: Rust wasi:http component hello (fresh instance) ...");
    let rust_component_rps = load(platform_addr, "/comp", args.concurrency)?;
    // The peer on the same component, fresh and with reuse, at N and at 1 connection.
    let peer = match &args.wasmtime_serve {
        Some(bin) => {
            let version = peer::WasmtimeServe::version(bin);
            eprintln!("{version}: serve, fresh instance per request ...");
            let fresh = peer::WasmtimeServe::start(bin, &rust_component, &[])?;
            let fresh_n = load(fresh.addr, "/", args.concurrency)?;
            let fresh_1 = load(fresh.addr, "/", 1)?;
            drop(fresh);
            eprintln!("{version}: serve --max-instance-reuse-count 1000 ...");
            let reuse = peer::WasmtimeServe::start(
                bin,
                &rust_component,
                &["--max-instance-reuse-count", "1000"],
            )?;
            let reuse_n = load(reuse.addr, "/", args.concurrency)?;
            let reuse_1 = load(reuse.addr, "/", 1)?;
            drop(reuse);
            let platform_1 = load(platform_addr, "/comp", 1)?;
            Some((version, fresh_n, fresh_1, reuse_n, reuse_1, platform_1))
        }
        None => None,
    };
    eprintln!("platform: Go net/http/cgi mux ...");
    let mux_wagi = load(platform_addr, "/mux/items/1", args.concurrency)?;
    eprintln!("platform: Go SDK hello, pooled and per-request ...");
    let sdk_pooled = load(platform_addr, "/sdk", args.concurrency)?;
    let sdk_pr = load(platform_addr, "/sdk-pr", args.concurrency)?;
    eprintln!("platform: Go SDK JSON API (encoding/json), pooled and per-request ...");
    let json_pooled = load(platform_addr, "/todos", args.concurrency)?;
    let json_pr = load_as(
        platform_addr,
        "per-request.local",
        "/todos",
        args.concurrency,
    )?;
    eprintln!("latency at concurrency 1 ...");
    let native_c1 = load(native_addr, "/", 1)?;
    let go_wagi_c1 = load(platform_addr, "/go", 1)?;
    let rust_wagi_c1 = load(platform_addr, "/rust", 1)?;
    let sdk_pooled_c1 = load(platform_addr, "/sdk", 1)?;
    let sdk_pr_c1 = load(platform_addr, "/sdk-pr", 1)?;

    let (alone, beside_flood, flood) = flooded_neighbour(&client_rt, platform_addr, warmup, secs)?;

    // The shipped binary with its defaults, and with the access log (same app as /sdk).
    let shipped = if args.platform_bin.exists() {
        eprintln!("platform runtime binary, Go SDK hello pooled ...");
        let mut rows = Vec::new();
        for (what, extra) in [
            ("as shipped", &[][..]),
            ("with --access-log", &["--access-log"][..]),
        ] {
            let running = shipped::ShippedRuntime::start(&args.platform_bin, &sdk_hello, extra)?;
            rows.push((
                what,
                load_as(running.addr, "127.0.0.1", "/", args.concurrency)?,
            ));
        }
        rows
    } else {
        Vec::new()
    };

    // Native hyper, after (brackets machine noise).
    eprintln!("native hyper hello (again) ...");
    let native_after = load(native_addr, "/", args.concurrency)?;
    let native_rps = (native_before.rps + native_after.rps) / 2.0;

    report.http("native hyper hello (before)", &native_before, native_rps);
    report.http("native hyper hello (after)", &native_after, native_rps);
    report.http("Platform, Go WAGI hello", &go_wagi, native_rps);
    for (what, r) in &shipped {
        report.http(
            &format!("platform runtime binary, Go SDK hello, pooled, {what}"),
            r,
            native_rps,
        );
    }
    report.http("Platform, Rust WAGI hello", &rust_wagi, native_rps);
    report.http(
        "Platform, Rust wasi:http component hello, fresh instance",
        &rust_component_rps,
        native_rps,
    );
    if let Some((version, fresh_n, fresh_1, reuse_n, reuse_1, platform_1)) = &peer {
        report.http(
            &format!("{version}: serve, Rust component hello, fresh instance"),
            fresh_n,
            native_rps,
        );
        report.http(
            &format!("{version}: serve --max-instance-reuse-count 1000, Rust component hello"),
            reuse_n,
            native_rps,
        );
        report.http(
            "Platform, Rust wasi:http component hello, fresh instance, 1 connection",
            platform_1,
            native_c1.rps,
        );
        report.http(
            &format!("{version}: serve, Rust component hello, fresh instance, 1 connection"),
            fresh_1,
            native_c1.rps,
        );
        report.http(
            &format!("{version}: serve, reuse, Rust component hello, 1 connection"),
            reuse_1,
            native_c1.rps,
        );
        report.note(format!(
            "Same component, fresh instance per request, {} connections: Platform {:.0} req/s = {:.2}x wasmtime serve ({:.0} req/s); target at least 1.2x. At 1 connection, p50 {:.0} µs against {:.0} µs.",
            args.concurrency,
            rust_component_rps.rps,
            rust_component_rps.rps / fresh_n.rps.max(1.0),
            fresh_n.rps,
            platform_1.p50_us,
            fresh_1.p50_us,
        ));
    } else {
        report.note(
            "No wasmtime serve rows: run ./scripts/bench --with-wasmtime-serve (installs wasmtime-cli 48 once, ~25 min)".into(),
        );
    }
    report.http(
        "Platform, Go net/http/cgi mux (7.7 MB)",
        &mux_wagi,
        native_rps,
    );
    report.http("Platform, Go SDK hello, pooled", &sdk_pooled, native_rps);
    report.http(
        "Platform, Go SDK hello, per-request (snapshot)",
        &sdk_pr,
        native_rps,
    );
    report.http(
        "Platform, Go SDK JSON list (encoding/json), pooled",
        &json_pooled,
        native_rps,
    );
    report.http(
        "Platform, Go SDK JSON list (encoding/json), per-request",
        &json_pr,
        native_rps,
    );
    report.http(
        "native hyper hello, 1 connection",
        &native_c1,
        native_c1.rps,
    );
    report.http(
        "Platform, Go SDK hello, pooled, 1 connection",
        &sdk_pooled_c1,
        native_c1.rps,
    );
    report.http(
        "Platform, Go SDK hello, per-request, 1 connection",
        &sdk_pr_c1,
        native_c1.rps,
    );
    report.http(
        "Platform, Go WAGI hello, 1 connection",
        &go_wagi_c1,
        native_c1.rps,
    );
    report.http(
        "Platform, Rust WAGI hello, 1 connection",
        &rust_wagi_c1,
        native_c1.rps,
    );

    report.rows.push(Row::latency(
        "Go SDK hello, 4 connections, alone",
        alone.p50_us,
        alone.p99_us,
    ));
    report.rows.push(Row::latency(
        "Go SDK hello, 4 connections, while 64 connections flood another app",
        beside_flood.p50_us,
        beside_flood.p99_us,
    ));
    report.note(flood_note(&alone, &beside_flood, &flood));

    // In-process through the runtime (no HTTP): the SDK's two modes side by side.
    eprintln!("in-process SDK runs ...");
    let sdk_pooled_inproc = server_rt.block_on(inproc::through_runtime(
        &rt,
        "bench.local",
        "/sdk",
        args.iterations,
    ))?;
    let sdk_pr_inproc = server_rt.block_on(inproc::through_runtime(
        &rt,
        "bench.local",
        "/sdk-pr",
        args.iterations,
    ))?;
    report.inproc(
        "Platform, Go SDK hello, pooled, in-process (Runtime::handle)",
        sdk_pooled_inproc,
        None,
    );
    report.inproc(
        "Platform, Go SDK hello, per-request, in-process (Runtime::handle)",
        sdk_pr_inproc,
        Some(sdk_pooled_inproc),
    );
    report.note(format!(
        "Per-request over pooled, in-process p50: +{:.1} µs (target: at most +15 µs)",
        sdk_pr_inproc.0 - sdk_pooled_inproc.0
    ));

    // In-process: the same guest bytes through bare wasmtime and through the WAGI executor.
    eprintln!("in-process runs ...");
    let n = args.iterations;
    let bare_go = server_rt.block_on(inproc::bare_wasmtime(&go_hello, n))?;
    let bare_go_env = server_rt.block_on(inproc::bare_wasmtime_with_env(
        &go_hello,
        n,
        &inproc::cgi_env_for("/go")?,
    ))?;
    let bare_rust = server_rt.block_on(inproc::bare_wasmtime(&rust_hello, n))?;
    let bare_component = server_rt.block_on(inproc::bare_component(&rust_component, n))?;
    let platform_component =
        server_rt.block_on(inproc::through_runtime(&rt, "bench.local", "/comp", n))?;
    let exec_go = server_rt.block_on(inproc::wagi_executor(&rt, "/go", n))?;
    let exec_rust = server_rt.block_on(inproc::wagi_executor(&rt, "/rust", n))?;
    let go_overhead = server_rt.block_on(inproc::wagi_host_overhead(&rt, &go_hello, "/go", n))?;
    report.inproc(
        "interleaved: bare wasmtime, Go WAGI hello with the CGI environment",
        go_overhead.bare,
        None,
    );
    report.inproc(
        "interleaved: Platform WAGI executor, Go hello",
        go_overhead.executor,
        Some(go_overhead.bare),
    );
    report.inproc(
        "interleaved: Platform, Go WAGI hello through Runtime::handle",
        go_overhead.handle,
        Some(go_overhead.bare),
    );
    report.inproc(
        "bare wasmtime, Go WAGI hello (instantiate + _start)",
        bare_go,
        None,
    );
    report.inproc(
        "bare wasmtime, Go WAGI hello with the executor's CGI environment",
        bare_go_env,
        Some(bare_go),
    );
    report.inproc(
        "Platform WAGI executor, Go hello (env, stdio, parse)",
        exec_go,
        Some(bare_go),
    );
    report.inproc("bare wasmtime, Rust WAGI hello", bare_rust, None);
    report.inproc(
        "bare wasmtime-wasi-http serving loop (as wasmtime serve), Rust component hello",
        bare_component,
        None,
    );
    report.inproc(
        "Platform, Rust component hello through Runtime::handle (fresh instance)",
        platform_component,
        Some(bare_component),
    );
    report.inproc(
        "Platform WAGI executor, Rust hello",
        exec_rust,
        Some(bare_rust),
    );
    // Host overhead: the floor is bare wasmtime running the guest with the same CGI
    // environment (Go's start-up and the program's own work both depend on it).
    report.note(host_overhead_note("Go", &go_overhead));
    report.note(format!(
        "Go WAGI over HTTP at c=1 (p50 {:.0} µs) minus native hyper at c=1 (p50 {:.0} µs, the HTTP exchange any server pays) minus bare wasmtime with the same environment (p50 {:.0} µs): {:.0} µs. The one-connection rows move by tens of µs with where the scheduler puts the client and the server threads (benches/README), so this is the noisy view of the row above.",
        go_wagi_c1.p50_us,
        native_c1.p50_us,
        bare_go_env.0,
        go_wagi_c1.p50_us - native_c1.p50_us - bare_go_env.0,
    ));
    report.note(format!(
        "Go WAGI over HTTP at c=1 minus bare wasmtime with the same environment (p50; the HTTP exchange included, as reported before 2026-12-01): {:.0} µs of {:.0} µs = {:.1}%",
        go_wagi_c1.p50_us - bare_go_env.0,
        go_wagi_c1.p50_us,
        100.0 * (go_wagi_c1.p50_us - bare_go_env.0) / go_wagi_c1.p50_us
    ));
    report.note(format!(
        "WAGI executor overhead per Go run, no HTTP (p50, executor minus bare wasmtime with the same environment): {:.1} µs of {:.0} µs = {:.1}%",
        exec_go.0 - bare_go_env.0,
        exec_go.0,
        100.0 * (exec_go.0 - bare_go_env.0) / exec_go.0
    ));

    // Cold starts: artifact on disk, module not in memory.
    eprintln!("cold starts ...");
    for (label, path) in [
        ("Go WAGI hello (2.1 MB)", "/go"),
        ("Go net/http/cgi mux (7.7 MB)", "/mux/items/1"),
    ] {
        let mut samples = Vec::with_capacity(args.cold);
        for _ in 0..args.cold {
            rt.cache.evict_all();
            samples.push(client_rt.block_on(loadgen::one_request(platform_addr, path))?);
        }
        let (p50, p99) = percentiles(&mut samples);
        report.rows.push(Row::latency(
            &format!("cold first request, {label}, artifact on disk"),
            p50,
            p99,
        ));
    }
    let artifact = rt
        .cache
        .artifact_path(&platform_runtime::Digest::of(&std::fs::read(&go_mux)?));
    let (p50, p99) = inproc::artifact_load(rt.engine(), &artifact, args.cold * 4)?;
    report.rows.push(Row::latency(
        "artifact load (Module::deserialize_file, mmap), Go mux",
        p50,
        p99,
    ));

    report.note(format!(
        "Host overhead per Go SDK pooled request (HTTP at c=1, p50, minus native hyper p50): {:.0} µs",
        sdk_pooled_c1.p50_us - native_c1.p50_us
    ));

    // Process start → ready with many routes, and → first response of a cold app.
    if args.platform_bin.exists() {
        eprintln!("start-up with {} routes ...", args.routes);
        let s = startup::measure(&args.platform_bin, &go_hello, args.routes, 5)?;
        report.rows.push(Row::latency(
            &format!(
                "process start → ready, {} routes (platform runtime --manifest)",
                args.routes
            ),
            s.ready.0,
            s.ready.1,
        ));
        report.rows.push(Row::latency(
            "process start → first response, cold Go WAGI app (artifact on disk)",
            s.first.0,
            s.first.1,
        ));
    } else {
        report.note(format!(
            "start-up runs skipped: {} not found (./scripts/bench builds it)",
            args.platform_bin.display()
        ));
    }

    std::fs::create_dir_all(&args.out)?;
    let md = report.markdown();
    std::fs::write(args.out.join("report.md"), &md)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{md}");
    eprintln!("written: {}/report.{{md,json}}", args.out.display());
    drop(rt);
    Ok(())
}
