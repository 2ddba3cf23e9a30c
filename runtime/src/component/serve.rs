//! Serving one request with a wasi:http component: a fresh instance per request, or a
//! reused one for a `pooled` release ([`super::pool`]).
//!
//! ```text
//! request ─► incoming-request + response-outparam resources ─► guest (own store, epoch
//!            deadline, memory cap, permits) ─► incoming-handler.handle
//!         ◄─ response head as soon as the guest sets it; body streams while the guest runs
//! ```
//!
//! The guest runs inside the request's own task until it sets the response head (and,
//! when it can, to its end: a small answer needs no other task). Only a guest still
//! running after the head, streaming its body, moves to a task of its own. `wasmtime
//! serve` spawns a task per request up front; on these 2-core machines that handoff cost
//! more than instantiating and running a small component (see `benches/`). Dropping the
//! request before the head (client gone) drops the instance with it.
//!
//! Until the head is sent, a guest failure becomes the same status a module's would
//! ([`GuestFailure`]); after, it is logged and counted and the body is cut. The guest's
//! stdout and stderr lines go to the log with the request id when it ends.
//!
//! A request body without a declared length is counted as the guest reads it
//! ([`body::BodyOverflow`]): past the release's `max_body` the guest's read fails, and
//! the client gets 413 if the head was not sent yet, else a cut response (and the
//! failure in the log).

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use http_body_util::BodyExt;
use tracing::Instrument;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::body::{self, BodyOverflow};
use super::pool::ComponentInstance;
use crate::admission::ExecPermits;
use crate::app::{AppSpec, Isolation};
use crate::failure::GuestFailure;
use crate::guest;
use crate::host::{BoxError, ConnInfo, REQUEST_ID, ResponseBody, Runtime};
use crate::logs::{CappedPipe, LogStream};
use crate::module_cache::LoadedModule;

pub use super::pool::OUTPUT_CAP;

/// What an admitted component request runs with: the component, the release, and the
/// permits that admitted it (held until the guest ends, body included).
pub struct ComponentExec {
    /// The compiled component.
    pub loaded: Arc<LoadedModule>,
    /// The release.
    pub spec: Arc<AppSpec>,
    /// Admission permits.
    pub permits: ExecPermits,
    /// The app's CPU gate the guest runs on.
    pub cpu: crate::cpu_share::CpuGate,
}

/// Serves one request with an instance of the component in `exec`: a fresh one, or for a
/// `pooled` release an idle one of that release when there is one.
pub(crate) async fn serve<B>(
    rt: &Runtime,
    exec: ComponentExec,
    req: Request<B>,
    conn: ConnInfo,
    request_id: &str,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let ComponentExec {
        loaded,
        spec,
        permits,
        cpu,
    } = exec;
    let Some(pre) = loaded.proxy_pre().cloned() else {
        let f = GuestFailure::Instantiate("the module is not a wasi:http component".into());
        return rt.failure_response(&spec, &f, request_id);
    };
    let overflow = BodyOverflow::default();
    let req = for_guest(req, &spec, conn, request_id, overflow.clone());
    let deadline = Instant::now() + spec.limits.timeout;
    let reuse = spec.isolation == Isolation::Pooled;
    let pools = rt.component_pools.clone();
    let mut inst = match reuse.then(|| pools.take(&spec)).flatten() {
        Some(inst) => inst,
        None => ComponentInstance::new(
            rt.engine(),
            &spec,
            rt.sdk_pools.outbound(),
            rt.sdk_pools.kv(),
            rt.logs.clone(),
        ),
    };
    inst.bind(request_id, deadline);

    let (tx, rx) = tokio::sync::oneshot::channel();
    let resources = {
        let mut http = inst.store.data_mut().http();
        http.new_incoming_request(Scheme::Http, req)
            .and_then(|r| Ok((r, http.new_response_outparam(tx)?)))
    };
    let (incoming, outparam) = match resources {
        Ok(v) => v,
        Err(e) => {
            let f = GuestFailure::Instantiate(format!("{e:#}"));
            return rt.failure_response(&spec, &f, request_id);
        }
    };

    let output = GuestOutput {
        logs: rt.logs.clone(),
        spec: spec.clone(),
        request_id: request_id.to_string(),
        stdout: inst.stdout.clone(),
        stderr: inst.stderr.clone(),
    };
    let wall = spec.limits.timeout + guest::DEADLINE_GRACE;
    let guest_spec = spec.clone();
    let guest_overflow = overflow.clone();
    // The whole of it runs on the app's CPU slots: the call, and the fresh instance's teardown.
    let mut guest: Pin<Box<dyn Future<Output = Result<(), GuestFailure>> + Send>> =
        Box::pin(crate::cpu_share::on_turns(
            &cpu,
            async move {
                let run = async {
                    let ComponentInstance { store, proxy, .. } = &mut inst;
                    let proxy = match proxy {
                        Some(p) => p,
                        None => proxy.insert(pre.instantiate_async(&mut *store).await?),
                    };
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut *store, incoming, outparam)
                        .await
                };
                let outcome = tokio::time::timeout(wall, run).await;
                let hits = inst.store.data().limiter.hits();
                // Taken before the instance can serve anyone else.
                let stderr = output.flush();
                let healthy = matches!(outcome, Ok(Ok(()))) && !guest_overflow.is_set();
                if reuse {
                    pools.put_back(&guest_spec, inst, healthy);
                } else {
                    // Dropping the store ends the response body if the guest did not finish it.
                    drop(inst);
                }
                drop(permits);
                match outcome {
                    Err(_elapsed) => Err(GuestFailure::Timeout),
                    Ok(Err(e)) => Err(GuestFailure::classify(&e, hits, &stderr)),
                    Ok(Ok(())) => Ok(()),
                }
            }
            .instrument(tracing::Span::current()),
        ));

    let mut rx = rx;
    let head = tokio::select! {
        biased;
        ended = &mut guest => {
            // The guest is done; it may have set the head on the way.
            if overflow.is_set() {
                return crate::host::too_large(spec.limits.max_body);
            }
            return match rx.try_recv() {
                Ok(head) => answer(rt, &spec, request_id, head, ended),
                Err(_) => {
                    let f = ended.err().unwrap_or_else(|| GuestFailure::BadOutput(
                        "the component returned without setting a response".into(),
                    ));
                    rt.failure_response(&spec, &f, request_id)
                }
            };
        }
        head = &mut rx => head,
    };
    match head {
        // The body went past the limit before the head went out: the client's fault,
        // whatever the guest made of its failed read. The guest is dropped with its
        // instance (it would only answer a request already refused).
        _ if overflow.is_set() => crate::host::too_large(spec.limits.max_body),
        Ok(Ok(head)) => {
            // The head is set; let the guest finish here if it can without waiting.
            if let Poll::Ready(ended) = futures::poll!(guest.as_mut()) {
                if overflow.is_set() {
                    return crate::host::too_large(spec.limits.max_body);
                }
                return answer(rt, &spec, request_id, Ok(head), ended);
            }
            // Still writing its body: it continues in a task of its own, and how it ends
            // is reported without holding the response back.
            let (metrics, logs) = (rt.metrics.clone(), rt.logs.clone());
            let (spec2, request_id) = (spec.clone(), request_id.to_string());
            let late = overflow.clone();
            tokio::spawn(async move {
                let ended = guest.await;
                let failure = if late.is_set() {
                    Some(GuestFailure::BodyTooLarge(spec2.limits.max_body))
                } else {
                    ended.err()
                };
                if let Some(f) = failure {
                    crate::host::report_failure(&metrics, &logs, &spec2, &f, &request_id);
                }
            });
            head.map(|b| {
                body::OutgoingBody::new(b, spec.limits.max_response)
                    .cut_on_overflow(overflow, spec.limits.max_body)
                    .boxed()
            })
        }
        Ok(Err(code)) => {
            let ended = guest.await;
            if overflow.is_set() {
                return crate::host::too_large(spec.limits.max_body);
            }
            answer(rt, &spec, request_id, Err(code), ended)
        }
        // The outparam went away unset: the guest is ending without an answer.
        Err(_) => {
            let ended = guest.await;
            if overflow.is_set() {
                return crate::host::too_large(spec.limits.max_body);
            }
            let f = ended.err().unwrap_or_else(|| {
                GuestFailure::BadOutput("the component returned without setting a response".into())
            });
            rt.failure_response(&spec, &f, request_id)
        }
    }
}

/// The response for a guest that has ended: its head (and buffered body) if it set one,
/// with a failure after the head reported; else the failure's status.
fn answer(
    rt: &Runtime,
    spec: &Arc<AppSpec>,
    request_id: &str,
    head: Result<Response<HyperOutgoingBody>, ErrorCode>,
    ended: Result<(), GuestFailure>,
) -> Response<ResponseBody> {
    match head {
        Ok(head) => {
            if let Err(f) = &ended {
                crate::host::report_failure(&rt.metrics, &rt.logs, spec, f, request_id);
            }
            head.map(|b| body::OutgoingBody::new(b, spec.limits.max_response).boxed())
        }
        Err(code) => {
            let f = ended.err().unwrap_or_else(|| {
                GuestFailure::BadOutput(format!(
                    "the component answered with an error: {}",
                    describe(&code)
                ))
            });
            rt.failure_response(spec, &f, request_id)
        }
    }
}

fn describe(code: &ErrorCode) -> String {
    let text = format!("{code:?}");
    text.chars().take(200).collect()
}

/// The request as the guest sees it: the routed path, a `Host` (the `wasi:http` request
/// needs an authority), the request id, and the body cut at the release's limit
/// (`overflow` set when it is).
fn for_guest<B>(
    req: Request<B>,
    spec: &AppSpec,
    conn: ConnInfo,
    request_id: &str,
    overflow: BodyOverflow,
) -> Request<impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, b) = req.into_parts();
    if parts.uri.authority().is_none()
        && !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(&conn.local.to_string())
    {
        parts.headers.insert(header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        parts.headers.insert(REQUEST_ID, v);
    }
    Request::from_parts(parts, body::incoming(b, spec.limits.max_body, overflow))
}

/// The guest's captured output, sent to the log line by line when the guest ends.
struct GuestOutput {
    logs: Arc<crate::logs::LogBus>,
    spec: Arc<AppSpec>,
    request_id: String,
    stdout: CappedPipe,
    stderr: CappedPipe,
}

impl GuestOutput {
    /// Publishes stdout then stderr; returns stderr (failure classification reads it).
    fn flush(&self) -> Bytes {
        for (stream, pipe) in [
            (LogStream::Stdout, &self.stdout),
            (LogStream::Stderr, &self.stderr),
        ] {
            let (bytes, dropped) = pipe.take();
            crate::logs::emit_guest_output(
                &self.logs,
                &self.spec,
                &self.request_id,
                stream,
                &bytes,
                dropped,
            );
            if stream == LogStream::Stderr {
                return bytes;
            }
        }
        Bytes::new()
    }
}
