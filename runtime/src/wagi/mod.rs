//! WAGI mode: run a WASI command module as a CGI/1.1 program, one fresh instance per request.
//!
//! The request body goes to stdin, the meta-variables to the environment, the response is
//! parsed from stdout, and stderr is kept for the log. Any Go program serving a mux with
//! `net/http/cgi.Serve` runs unmodified.

pub mod cgi_env;
pub mod cgi_response;

use std::time::Instant;

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::app::AppSpec;
use crate::failure::{GuestFailure, is_clean_exit};
use crate::guest::{self, GuestState, MemoryLimiter};
use crate::logs::CappedPipe;
use crate::module_cache::LoadedModule;

pub use cgi_env::CgiRequest;
pub use cgi_response::{CgiParseError, CgiResponse};

/// Bytes of stderr kept per request; the rest is counted and dropped.
pub const STDERR_CAP: usize = 64 * 1024;

/// What one WAGI run produced.
#[derive(Debug)]
pub struct WagiOutcome {
    /// The response, or why there is none.
    pub result: Result<CgiResponse, GuestFailure>,
    /// What the guest wrote to stderr (capped).
    pub stderr: Bytes,
    /// Bytes of stderr dropped past the cap.
    pub stderr_dropped: u64,
}

/// What an admitted WAGI request runs with: the module, the release, and the permits that
/// admitted it (held until the guest exits).
pub(crate) struct WagiExec {
    /// The compiled module.
    pub loaded: std::sync::Arc<LoadedModule>,
    /// The release.
    pub spec: std::sync::Arc<AppSpec>,
    /// Admission permits.
    pub permits: crate::admission::ExecPermits,
    /// The app's CPU gate the guest runs on.
    pub cpu: crate::cpu_share::CpuGate,
}

/// Serves one request whose body was read whole: runs the guest and turns its CGI output,
/// or its failure, into the response. The counterpart of [`crate::sdk::serve`].
pub(crate) async fn serve(
    rt: &crate::host::Runtime,
    exec: WagiExec,
    parts: &http::request::Parts,
    body: Bytes,
    conn: crate::host::ConnInfo,
    route: &crate::route_table::RouteSpec,
    request_id: &str,
) -> http::Response<crate::host::ResponseBody> {
    let WagiExec {
        loaded,
        spec,
        permits,
        cpu,
    } = exec;
    let cgi = CgiRequest {
        parts,
        route_prefix: &route.prefix,
        content_length: body.len(),
        remote: conn.remote,
        local: conn.local,
        request_id,
    };
    let outcome = run(rt.engine(), &loaded, &spec, &cpu, &cgi, body).await;
    drop(permits);
    rt.emit_guest_output(
        &spec,
        request_id,
        crate::logs::LogStream::Stderr,
        &outcome.stderr,
        outcome.stderr_dropped,
    );
    match outcome.result {
        Ok(r) => {
            let mut resp = http::Response::new(crate::host::full(r.body));
            *resp.status_mut() = r.status;
            *resp.headers_mut() = r.headers;
            resp
        }
        Err(f) => rt.failure_response(&spec, &f, request_id),
    }
}

/// Runs one request through a fresh instance of `module`.
pub async fn run(
    engine: &Engine,
    module: &LoadedModule,
    spec: &AppSpec,
    cpu: &crate::cpu_share::CpuGate,
    req: &CgiRequest<'_>,
    body: Bytes,
) -> WagiOutcome {
    let env = cgi_env::build_env(req, &spec.env);
    // Room for headers on top of the body limit; reaching the cap means "too large".
    let stdout_cap = usize::try_from(spec.limits.max_response)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let stdout = MemoryOutputPipe::new(stdout_cap);
    let stderr = CappedPipe::new(STDERR_CAP);
    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(body))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .envs(&env)
        .arg(&spec.app)
        .build_p1();
    let deadline = Instant::now() + spec.limits.timeout;
    let mut store = guest::new_store(
        engine,
        GuestState {
            wasi,
            limiter: MemoryLimiter::new(spec.limits.memory),
            sdk: None,
        },
        deadline,
    );

    let call = async move {
        let ran = async {
            let instance = module.core_pre()?.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }
        .await;
        let hits = store.data().limiter.hits();
        // The instance's teardown (its memory reset) is the app's CPU too: in its slot.
        drop(store);
        (ran, hits)
    };
    let call = crate::cpu_share::on_turns(cpu, call);
    let outcome = tokio::time::timeout(spec.limits.timeout + guest::DEADLINE_GRACE, call).await;
    let (outcome, hits) = match outcome {
        Ok((ran, hits)) => (Ok(ran), hits),
        Err(elapsed) => (Err(elapsed), guest::LimitHits::default()),
    };

    let (stderr_bytes, stderr_dropped) = stderr.take();
    let out = stdout.contents();
    let result = match outcome {
        Err(_elapsed) => Err(GuestFailure::Timeout),
        Ok(Err(e)) if !is_clean_exit(&e) => {
            if out.len() >= stdout_cap {
                Err(GuestFailure::ResponseTooLarge(spec.limits.max_response))
            } else {
                Err(GuestFailure::classify(&e, hits, &stderr_bytes))
            }
        }
        Ok(_) => {
            if out.len() >= stdout_cap {
                Err(GuestFailure::ResponseTooLarge(spec.limits.max_response))
            } else {
                CgiResponse::parse(out).map_err(|e| GuestFailure::BadOutput(e.to_string()))
            }
        }
    };
    WagiOutcome {
        result,
        stderr: stderr_bytes,
        stderr_dropped,
    }
}
