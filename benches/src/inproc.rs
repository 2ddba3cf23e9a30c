//! In-process measurements without HTTP: bare wasmtime, the WAGI executor, artifact loads.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform_runtime::wagi::{self, CgiRequest};
use platform_runtime::{Runtime, engine};
use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::loadgen::percentiles;

/// Fresh instance + `_start` per iteration with the serving engine configuration, nothing
/// else: the floor for a WAGI request of this guest. Returns (p50, p99) in µs.
pub async fn bare_wasmtime(wasm: &Path, iterations: usize) -> anyhow::Result<(f64, f64)> {
    bare_wasmtime_with_env(wasm, iterations, &[]).await
}

/// The CGI environment the WAGI executor gives a `GET path` request: Go's start-up reads
/// every variable, so a bare run with the same environment tells the guest's cost of it
/// from the host's.
pub fn cgi_env_for(path: &str) -> anyhow::Result<Vec<(String, String)>> {
    let (parts, ()) = http::Request::get(path)
        .header("host", "bench.local")
        .body(())?
        .into_parts();
    let req = CgiRequest {
        parts: &parts,
        route_prefix: path,
        content_length: 0,
        remote: "127.0.0.1:1".parse()?,
        local: "127.0.0.1:2".parse()?,
        request_id: "bench",
    };
    Ok(wagi::cgi_env::build_env(&req, &[]))
}

/// [`bare_wasmtime`] with `env` in the guest's environment.
pub async fn bare_wasmtime_with_env(
    wasm: &Path,
    iterations: usize,
    env: &[(String, String)],
) -> anyhow::Result<(f64, f64)> {
    let bare = BareWagi::new(wasm)?;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 50 {
        let took = bare.run_once(env).await?;
        if i >= 50 {
            samples.push(took);
        }
    }
    Ok(percentiles(&mut samples))
}

/// A WAGI guest compiled for bare wasmtime runs: the serving engine configuration and
/// WASI preview 1, none of Platform's code.
pub struct BareWagi {
    engine: wasmtime::Engine,
    _ticker: engine::EpochTicker,
    pre: wasmtime::InstancePre<WasiP1Ctx>,
}

impl BareWagi {
    /// Compiles `wasm` on an engine of its own.
    pub fn new(wasm: &Path) -> anyhow::Result<Self> {
        let engine = engine::build_engine(&engine::EngineSettings::default())?;
        let ticker = engine::EpochTicker::start(&engine, engine::EPOCH_TICK);
        let module = Module::from_file(&engine, wasm)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |t| t)?;
        let pre = linker.instantiate_pre(&module)?;
        Ok(BareWagi {
            engine,
            _ticker: ticker,
            pre,
        })
    }

    /// One fresh instance and `_start` with `env`; returns how long it took.
    pub async fn run_once(&self, env: &[(String, String)]) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(bytes::Bytes::new()))
            .stdout(MemoryOutputPipe::new(1 << 20))
            .envs(env)
            .build_p1();
        let mut store = Store::new(&self.engine, wasi);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        if let Err(e) = start.call_async(&mut store, ()).await
            && !platform_runtime::failure::is_clean_exit(&e)
        {
            return Err(anyhow::anyhow!("guest failed: {e:#}"));
        }
        drop(store);
        Ok(t0.elapsed())
    }
}

/// One WAGI guest three ways, (p50, p99) in µs each: see [`wagi_host_overhead`].
#[derive(Debug, Clone, Copy)]
pub struct WagiOverhead {
    /// Bare wasmtime with the same CGI environment: the guest's own floor.
    pub bare: (f64, f64),
    /// The WAGI executor (`wagi::run`): store, limits, stdio, CPU slot, CGI parsing.
    pub executor: (f64, f64),
    /// `Runtime::handle`: the executor plus routing, admission, metrics and the log line.
    pub handle: (f64, f64),
}

/// Platform's own cost around a WAGI guest, without HTTP: bare wasmtime (same CGI
/// environment), the WAGI executor and `Runtime::handle` on the same guest, interleaved in
/// blocks so a machine that speeds up or slows down mid-run moves all three alike.
pub async fn wagi_host_overhead(
    rt: &Arc<Runtime>,
    wasm: &Path,
    path: &str,
    iterations: usize,
) -> anyhow::Result<WagiOverhead> {
    const ROUNDS: usize = 10;
    let bare = BareWagi::new(wasm)?;
    let exec = ExecutorRun::new(rt, path).await?;
    let env = cgi_env_for(path)?;
    let per_round = iterations.div_ceil(ROUNDS).max(1);
    let (mut b, mut e, mut h) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        bare.run_once(&env).await?;
        exec.run_once(rt).await?;
        one_request(rt, "bench.local", path).await?;
    }
    for _ in 0..ROUNDS {
        for _ in 0..per_round {
            b.push(bare.run_once(&env).await?);
        }
        for _ in 0..per_round {
            e.push(exec.run_once(rt).await?);
        }
        for _ in 0..per_round {
            let t0 = Instant::now();
            one_request(rt, "bench.local", path).await?;
            h.push(t0.elapsed());
        }
    }
    Ok(WagiOverhead {
        bare: percentiles(&mut b),
        executor: percentiles(&mut e),
        handle: percentiles(&mut h),
    })
}

/// The WAGI executor (`wagi::run`: CGI env, stdio capture, response parsing) on the app
/// routed at `path`, warm module, no HTTP. Returns (p50, p99) in µs.
pub async fn wagi_executor(
    rt: &Arc<Runtime>,
    path: &str,
    iterations: usize,
) -> anyhow::Result<(f64, f64)> {
    let exec = ExecutorRun::new(rt, path).await?;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 50 {
        let took = exec.run_once(rt).await?;
        if i >= 50 {
            samples.push(took);
        }
    }
    Ok(percentiles(&mut samples))
}

/// The app routed at `path`, set up for direct `wagi::run` calls.
struct ExecutorRun {
    module: Arc<platform_runtime::module_cache::LoadedModule>,
    spec: Arc<platform_runtime::app::AppSpec>,
    prefix: String,
    parts: http::request::Parts,
    cpu: platform_runtime::cpu_share::CpuGate,
}

impl ExecutorRun {
    async fn new(rt: &Arc<Runtime>, path: &str) -> anyhow::Result<Self> {
        let m = rt
            .routes
            .load()
            .lookup(None, path)
            .ok_or_else(|| anyhow::anyhow!("no route {path}"))?;
        let spec = m
            .target
            .pick()
            .ok_or_else(|| anyhow::anyhow!("no release"))?
            .clone();
        let (module, _) = rt.cache.get(&spec.module).await?;
        let (parts, ()) = http::Request::get(path)
            .header("host", "bench.local")
            .body(())?
            .into_parts();
        let cpu = platform_runtime::cpu_share::CpuGate::of(&spec.tenant, &spec.app);
        Ok(ExecutorRun {
            module,
            spec,
            prefix: m.route.prefix.clone(),
            parts,
            cpu,
        })
    }

    async fn run_once(&self, rt: &Arc<Runtime>) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let req = CgiRequest {
            parts: &self.parts,
            route_prefix: &self.prefix,
            content_length: 0,
            remote: "127.0.0.1:1".parse()?,
            local: "127.0.0.1:2".parse()?,
            request_id: "bench",
        };
        let out = wagi::run(
            rt.engine(),
            &self.module,
            &self.spec,
            &self.cpu,
            &req,
            bytes::Bytes::new(),
        )
        .await;
        out.result.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(t0.elapsed())
    }
}

/// Whole requests through [`Runtime::handle`] (routing, admission, the executor, the body
/// read to its end), without HTTP or sockets. Returns (p50, p99) in µs.
pub async fn through_runtime(
    rt: &Arc<Runtime>,
    host: &str,
    path: &str,
    iterations: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 50 {
        let t0 = Instant::now();
        one_request(rt, host, path).await?;
        if i >= 50 {
            samples.push(t0.elapsed());
        }
    }
    Ok(percentiles(&mut samples))
}

/// Sends requests through [`Runtime::handle`] for `duration` (for a profiler to watch).
pub async fn run_for(
    rt: &Arc<Runtime>,
    host: &str,
    path: &str,
    duration: Duration,
) -> anyhow::Result<u64> {
    let until = Instant::now() + duration;
    let mut n = 0;
    while Instant::now() < until {
        one_request(rt, host, path).await?;
        n += 1;
    }
    Ok(n)
}

async fn one_request(rt: &Arc<Runtime>, host: &str, path: &str) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let req = http::Request::get(path)
        .header("host", host)
        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
    let conn = platform_runtime::host::ConnInfo {
        remote: "127.0.0.1:1".parse()?,
        local: "127.0.0.1:2".parse()?,
        role: platform_runtime::host::ListenerRole::Traffic,
    };
    let resp = rt.handle(req, conn).await;
    anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::hint::black_box(body.to_bytes());
    Ok(())
}

/// Maps a compiled artifact `n` times. Returns (p50, p99) in µs.
pub fn artifact_load(
    engine: &wasmtime::Engine,
    artifact: &Path,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        #[expect(
            unsafe_code,
            reason = "the artifact was written by this host's compiler moments ago"
        )]
        // SAFETY: see the reason above.
        let m = unsafe { Module::deserialize_file(engine, artifact)? };
        samples.push(t0.elapsed());
        drop(m);
    }
    Ok(percentiles(&mut samples))
}

/// The serving loop `wasmtime-wasi-http` documents (what `wasmtime serve` does per
/// request: a store, a WASI context, the request and outparam resources, a task that
/// instantiates and calls `handle`, the body read to its end) on the serving engine, with
/// no limits, logging or policy: the floor for a component request. Returns (p50, p99)
/// in µs.
pub async fn bare_component(wasm: &Path, iterations: usize) -> anyhow::Result<(f64, f64)> {
    use http_body_util::BodyExt;
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
    use wasmtime_wasi_http::p2::bindings::ProxyPre;
    use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
    use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

    struct Deny;
    impl wasmtime_wasi_http::WasiHttpHooks for Deny {
        fn send_request(
            &mut self,
            _request: http::Request<wasmtime_wasi_http::WasiBody>,
            _options: Option<wasmtime_wasi_http::RequestOptions>,
            _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
        ) -> Box<
            dyn Future<
                    Output = Result<
                        (
                            http::Response<wasmtime_wasi_http::WasiBody>,
                            Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                        ),
                        wasmtime_wasi_http::Error,
                    >,
                > + Send,
        > {
            Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
        }
    }
    struct State {
        wasi: WasiCtx,
        http: WasiHttpCtx,
        table: ResourceTable,
        hooks: Deny,
    }
    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }
    impl WasiHttpView for State {
        fn http(&mut self) -> WasiHttpCtxView<'_> {
            WasiHttpCtxView {
                ctx: &mut self.http,
                table: &mut self.table,
                hooks: &mut self.hooks,
            }
        }
    }

    let engine = engine::build_engine(&engine::EngineSettings::default())?;
    let _ticker = engine::EpochTicker::start(&engine, engine::EPOCH_TICK);
    let component = Component::from_file(&engine, wasm)?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 50 {
        let t0 = Instant::now();
        let mut store = Store::new(
            &engine,
            State {
                wasi: WasiCtx::builder().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: Deny,
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let req = http::Request::get("/")
            .header("host", "bench.local")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let pre = pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        let resp = rx.await??;
        resp.into_body().collect().await?;
        task.await??;
        if i >= 50 {
            samples.push(t0.elapsed());
        }
    }
    Ok(percentiles(&mut samples))
}
