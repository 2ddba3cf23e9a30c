//! SDK mode: guests built with the Platform Go SDK export a handler and import the host
//! ABI described in `sdk/ABI.md`. Go's start-up runs once per instance, not per request.
//!
//! The guest runs in the request's own task: it sends the response head when it is ready
//! (`response_send`), the handler returns it to hyper at once, and a guest still writing
//! its body goes on in a task of its own, through a bounded channel, so large responses
//! stream with bounded memory. The request body streams the other way through
//! `request_body_read`.

pub mod abi;
mod clock;
pub mod dirty_runs;
pub mod host_fns;
pub mod kv;
pub mod outbound;
pub mod pool;
pub mod snapshot;
pub mod state;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use wasmtime::Linker;

use self::pool::SdkInstance;
use self::state::{BodyMsg, HeadBody, RequestBody, RequestCtx, ResponseHead, ResponseSink};
use crate::admission::ExecPermits;
use crate::app::AppSpec;
use crate::failure::GuestFailure;
use crate::guest::{self, GuestState};
use crate::host::{BoxError, ConnInfo, ResponseBody, Runtime, full};
use crate::logs::{LogBus, LogStream};
use crate::metrics::RuntimeMetrics;
use crate::module_cache::LoadedModule;
use crate::route_table::RouteSpec;

pub use pool::{ReleasePool, SdkPools};
pub use state::SdkHostState;

/// Adds the Platform host ABI to the shared linker.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    host_fns::add_to_linker(linker)
}

/// Encodes the request head the guest reads with `request_head`.
fn encode_head(
    parts: &http::request::Parts,
    conn: &ConnInfo,
    route: &RouteSpec,
    request_id: &str,
    env_generation: u64,
) -> Vec<u8> {
    let mut w = wire::Writer::with_capacity(256 + parts.headers.len() * 48);
    w.u32(1);
    w.str16(parts.method.as_str().as_bytes());
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    w.str32(uri.as_bytes());
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        })
        .unwrap_or_else(|| conn.local.to_string().into_bytes());
    w.str16(&host);
    w.str16(conn.remote.to_string().as_bytes());
    w.str16(match parts.version {
        http::Version::HTTP_10 => b"HTTP/1.0",
        http::Version::HTTP_2 => b"HTTP/2.0",
        _ => b"HTTP/1.1",
    });
    w.str16(route.prefix.as_bytes());
    w.str16(request_id.as_bytes());
    let len = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(
            if parts.method == http::Method::GET || parts.method == http::Method::HEAD {
                0
            } else {
                -1
            },
        );
    w.u64(len as u64);
    w.u64(env_generation);
    w.headers(&parts.headers);
    w.buf
}

/// What a request's guest run ended with.
struct RunOutcome {
    failure: Option<GuestFailure>,
    body_too_large: bool,
    stdout: (Bytes, u64),
    stderr: (Bytes, u64),
}

/// What an admitted SDK request runs with: the module, the release, its instance pool and
/// the permits that admitted it (held until the guest returns).
pub(crate) struct SdkExec {
    /// The compiled module (or its snapshot).
    pub loaded: Arc<LoadedModule>,
    /// The release.
    pub spec: Arc<AppSpec>,
    /// The release's instances.
    pub pool: Arc<ReleasePool>,
    /// Admission permits.
    pub permits: ExecPermits,
    /// The app's CPU gate the guest runs on.
    pub cpu: crate::cpu_share::CpuGate,
}

/// Serves one request with an SDK module.
pub(crate) async fn serve<B>(
    rt: &Runtime,
    exec: SdkExec,
    req: Request<B>,
    conn: ConnInfo,
    route: &RouteSpec,
    request_id: &str,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let SdkExec {
        loaded,
        spec,
        pool,
        permits,
        cpu,
    } = exec;
    let (parts, body) = req.into_parts();
    let head = encode_head(&parts, &conn, route, request_id, pool.env.generation);
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    let deadline = Instant::now() + spec.limits.timeout;
    let ctx = RequestCtx {
        head,
        body: RequestBody {
            body: Some(body.map_err(Into::into).boxed_unsync()),
            leftover: Bytes::new(),
            received: 0,
            limit: spec.limits.max_body,
            done: false,
        },
        sink: ResponseSink::Pending(head_tx),
        body_too_large: false,
        response_bytes: 0,
        response_limit: spec.limits.max_response,
        response_too_large: false,
        deadline,
    };
    let pools = rt.sdk_pools.clone();
    let engine = rt.engine().clone();
    let run_spec = spec.clone();
    let run = async move {
        // Held while the guest runs, streaming included; released when it returns.
        let _permits = permits;
        // Taking the instance (a fresh instantiation, or a pooled instance's start-up) is
        // the app's CPU too, so it runs in the app's CPU slot with the call. Taken before
        // the slot, as it was, every request waiting for a slot held an instance: at 32
        // connections on two cores, 32 pooled instances (Go heaps) or 32 per-request slots
        // in use at once, each one cache-cold by its turn (benches/README.md, "Instances
        // taken in the CPU slot").
        let mut taken: Option<SdkInstance> = None;
        let turn = async {
            let inst = taken.insert(pools.take(&engine, &pool, &loaded, &run_spec).await?);
            if let Some(s) = inst.store.data_mut().sdk.as_mut() {
                s.set_spec(run_spec.clone(), &pool.env);
                s.req = Some(ctx);
            }
            guest::set_deadline(&mut inst.store, deadline);
            Ok(inst.handle.call_async(&mut inst.store, 0).await)
        };
        let call = crate::cpu_share::on_turns(&cpu, turn);
        let res = tokio::time::timeout(run_spec.limits.timeout + guest::DEADLINE_GRACE, call).await;
        let (mut inst, res) = match (taken, res) {
            (_, Ok(Err((f, stderr)))) => return RunOutcome::failed(f, stderr),
            (Some(inst), Ok(Ok(res))) => (inst, Ok(res)),
            (Some(inst), Err(elapsed)) => (inst, Err(elapsed)),
            // The deadline passed before an instance was taken.
            (None, _) => return RunOutcome::failed(GuestFailure::Timeout, Bytes::new()),
        };
        let hits = inst.store.data().limiter.hits();
        let stdout = inst.stdout.take();
        let stderr = inst.stderr.take();
        let ctx = inst
            .store
            .data_mut()
            .sdk
            .as_mut()
            .and_then(|s| s.req.take());
        let (body_too_large, response_too_large, sink) = match ctx {
            Some(c) => (c.body_too_large, c.response_too_large, Some(c.sink)),
            None => (false, false, None),
        };
        let (mut failure, code) = match res {
            Err(_elapsed) => (Some(GuestFailure::Timeout), -1),
            Ok(Err(e)) => (Some(GuestFailure::classify(&e, hits, &stderr.0)), -1),
            Ok(Ok(code)) => {
                let failure = match code {
                    abi::result::OK => None,
                    abi::result::PANICKED => Some(GuestFailure::Panic(panic_line(&stderr.0))),
                    abi::result::NO_HANDLER => Some(GuestFailure::Instantiate(
                        "the program's main never called platform.Handle".into(),
                    )),
                    other => Some(GuestFailure::Trap(format!(
                        "the SDK reported error {other}"
                    ))),
                };
                (failure, code)
            }
        };
        // Over the response limit is the cause whatever came after (a trap for writing on,
        // the deadline for a guest that ignored the error).
        if response_too_large {
            failure = Some(GuestFailure::ResponseTooLarge(run_spec.limits.max_response));
        }
        // A streamed body ends cleanly only with an explicit end; a guest that failed
        // mid-stream leaves it without one, and the client sees the body cut off.
        if let Some(ResponseSink::Streaming(tx)) = &sink {
            match &failure {
                None => {
                    let _ = tokio::time::timeout_at(
                        (deadline + guest::DEADLINE_GRACE).into(),
                        tx.send(BodyMsg::End),
                    )
                    .await;
                }
                Some(f) => {
                    let _ = tx.try_send(BodyMsg::Abort(
                        format!("the function failed while sending the response: {f}").into(),
                    ));
                }
            }
        }
        drop(sink);
        let healthy = failure.is_none() && code == abi::result::OK;
        pools.put_back(&pool, inst, healthy);
        RunOutcome {
            failure,
            body_too_large,
            stdout,
            stderr,
        }
    };
    // A panic on the host side of a guest call fails this request, never the connection.
    let mut run = std::panic::AssertUnwindSafe(run)
        .catch_unwind()
        .map(|r| {
            r.unwrap_or_else(|_| {
                RunOutcome::failed(
                    GuestFailure::Trap("the request's host side panicked".into()),
                    Bytes::new(),
                )
            })
        })
        .boxed();
    let report = Reporter {
        logs: rt.logs.clone(),
        metrics: rt.metrics.clone(),
        spec: spec.clone(),
        request_id: request_id.to_string(),
    };
    // The guest runs in this request's task until it sends its head, and usually to its
    // end: handing a short request to another task cost more than the guest's own work.
    // A guest still streaming its body after the head goes on in a task of its own. If the
    // client leaves before the head, this future is dropped and the guest with it.
    let mut head_rx = head_rx;
    let first = tokio::select! {
        biased;
        outcome = &mut run => Ok(outcome),
        head = &mut head_rx => Err(head),
    };
    let outcome = match first {
        Ok(outcome) => match head_rx.try_recv() {
            Ok(head) => {
                report.outcome(&outcome);
                return response_from(head);
            }
            Err(_) => outcome,
        },
        Err(Ok(head)) => {
            tokio::spawn(async move {
                let outcome = run.await;
                report.outcome(&outcome);
            });
            return response_from(head);
        }
        // The guest's side of the head is gone without a head: its run is ending.
        Err(Err(_)) => run.await,
    };
    report.output(&outcome);
    if outcome.body_too_large {
        return crate::host::too_large(spec.limits.max_body);
    }
    match outcome.failure {
        Some(f) => rt.failure_response(&spec, &f, request_id),
        None => rt.failure_response(
            &spec,
            &GuestFailure::BadOutput("the handler returned without a response".into()),
            request_id,
        ),
    }
}

impl RunOutcome {
    fn failed(failure: GuestFailure, stderr: Bytes) -> Self {
        RunOutcome {
            failure: Some(failure),
            body_too_large: false,
            stdout: (Bytes::new(), 0),
            stderr: (stderr, 0),
        }
    }
}

fn panic_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| l.starts_with("panic: "))
        .unwrap_or("panic")
        .chars()
        .take(300)
        .collect()
}

/// Logs and counts what a request's guest did, after the response has gone.
struct Reporter {
    logs: Arc<LogBus>,
    metrics: Arc<RuntimeMetrics>,
    spec: Arc<AppSpec>,
    request_id: String,
}

impl Reporter {
    fn output(&self, o: &RunOutcome) {
        crate::logs::emit_guest_output(
            &self.logs,
            &self.spec,
            &self.request_id,
            LogStream::Stdout,
            &o.stdout.0,
            o.stdout.1,
        );
        crate::logs::emit_guest_output(
            &self.logs,
            &self.spec,
            &self.request_id,
            LogStream::Stderr,
            &o.stderr.0,
            o.stderr.1,
        );
    }

    /// Reports a run whose response head already went out: a failure can no longer be
    /// the response, so the app's log (with the request id) and the metrics say it.
    fn outcome(&self, o: &RunOutcome) {
        self.output(o);
        if let Some(f) = &o.failure {
            crate::host::report_failure(&self.metrics, &self.logs, &self.spec, f, &self.request_id);
        }
    }
}

fn response_from(head: ResponseHead) -> Response<ResponseBody> {
    let body = match head.body {
        HeadBody::Full(b) => full(b),
        HeadBody::Stream(first, rx) => {
            let first = (!first.is_empty()).then(|| Ok::<_, BoxError>(Frame::data(first)));
            let rest = futures::stream::unfold(Some(rx), |rx| async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(BodyMsg::Frame(f)) => Some((Ok(f), Some(rx))),
                    Some(BodyMsg::End) => None,
                    Some(BodyMsg::Abort(e)) => Some((Err(e), None)),
                    None => Some((
                        Err(BoxError::from("the function's response was cut off")),
                        None,
                    )),
                }
            });
            let stream = futures::stream::iter(first).chain(rest);
            BodyExt::boxed(StreamBody::new(stream))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    if !resp.headers().contains_key(http::header::CONTENT_TYPE)
        && resp.status() != StatusCode::NO_CONTENT
    {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    resp
}

use futures::{FutureExt as _, StreamExt as _};
