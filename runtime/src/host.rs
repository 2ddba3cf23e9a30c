//! `Runtime`: the data plane's state and its request path.
//!
//! ```text
//! request ─► RouteTable (host, path) ─► release (weighted pick) ─► body within limit
//!         ─► ModuleCache (warm | mmap artifact | compile once) ─► WAGI, SDK or component
//!         ─► response + x-request-id, metrics, request log line
//! ```

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::{Engine, Linker};

use crate::abi::AbiKind;
use crate::admission::{Admission, AdmissionLimits, AppGate, Capacity, ExecPermits};
use crate::app::AppSpec;
use crate::body_timeout::{BodyIdle, IdleTimeoutBody};
use crate::engine::{EngineSettings, EpochTicker, build_engine};
use crate::failure::GuestFailure;
use crate::guest::{GuestState, build_linker};
use crate::logs::{LogBus, LogEvent, LogStream};
use crate::metrics::{ColdLabels, RejectLabels, RequestLabels, RuntimeMetrics, TrapLabels};
use crate::module_cache::{ArtifactKind, LoadKind, ModuleCache, ModuleSource};
use crate::release_binding::{ReleaseBinding, ReleaseMetrics};
use crate::request_target::RoutingTarget;
use crate::route_table::{RouteMatch, RouteTableHandle};
use crate::sdk::SdkPools;

/// Boxed error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the runtime produces.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

/// The header carrying the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Settings of the data plane.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are kept (`<data-dir>/artifacts`).
    pub artifact_dir: PathBuf,
    /// How long a module stays in memory without requests.
    pub idle_timeout: Duration,
    /// Engine and instance-pool tunables.
    pub engine: EngineSettings,
    /// Most guest executions at once; more wait (up to `queue_timeout`).
    pub max_concurrency: usize,
    /// Most executions at once of one app [default: half of `max_concurrency`].
    pub max_app_concurrency: Option<usize>,
    /// Most executions at once of one tenant's apps [default: three quarters of
    /// `max_concurrency`].
    pub max_tenant_concurrency: Option<usize>,
    /// How long a request may wait for an execution slot before a 503.
    pub queue_timeout: Duration,
    /// How long a WAGI request's whole body may take to arrive (it is read before the
    /// guest gets a slot).
    pub body_read_timeout: Duration,
    /// How long a request body may stall (no bytes) before the request fails.
    pub body_idle_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Route by `X-Forwarded-Host` instead of `Host`: only for a runtime whose sole entry
    /// is a proxy that overwrites that header (see deploy/README.md).
    pub trust_forwarded_host: bool,
    /// Where the embedded key-value store of SDK guests keeps its files.
    pub kv_dir: PathBuf,
    /// What SDK guests' outbound HTTP may reach: the operator's deny and allow lists and
    /// the platform's own listeners.
    pub outbound: crate::sdk::outbound::OutboundConfig,
    /// How `pooled` component releases reuse instances.
    pub component_reuse: crate::component::ReuseSettings,
}

impl RuntimeConfig {
    /// The concurrency caps this configuration asks for.
    pub fn admission_limits(&self) -> AdmissionLimits {
        let derived = AdmissionLimits::from_host(self.max_concurrency);
        AdmissionLimits {
            host: derived.host,
            per_app: self.max_app_concurrency.unwrap_or(derived.per_app),
            per_tenant: self.max_tenant_concurrency.unwrap_or(derived.per_tenant),
        }
    }

    /// Defaults with artifacts under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        RuntimeConfig {
            artifact_dir: data_dir.join("artifacts"),
            idle_timeout: Duration::from_secs(300),
            engine: EngineSettings::default(),
            max_concurrency: 256,
            max_app_concurrency: None,
            max_tenant_concurrency: None,
            queue_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(10),
            trust_forwarded_host: false,
            kv_dir: data_dir.join("kv"),
            outbound: Default::default(),
            component_reuse: Default::default(),
        }
    }
}

/// Errors starting the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Engine configuration.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// Linker set-up.
    #[error("cannot set up host functions: {0}")]
    Linker(String),
    /// Artifact directory.
    #[error("cannot use artifact directory: {0}")]
    Io(#[from] std::io::Error),
    /// The outbound HTTP client.
    #[error(transparent)]
    Outbound(#[from] crate::sdk::outbound::OutboundError),
}

/// Facts about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Client address.
    pub remote: SocketAddr,
    /// Listener address.
    pub local: SocketAddr,
    /// Which listener accepted it.
    pub role: ListenerRole,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerRole {
    /// Tenants' traffic, routed by host and path. Never takes CloudEvents.
    #[default]
    Traffic,
    /// CloudEvents (`POST /.platform/events`) only: an internal listener for the event
    /// broker, so the internet cannot inject events.
    Events,
}

/// The data plane.
pub struct Runtime {
    engine: Engine,
    _ticker: EpochTicker,
    linker: Arc<Linker<GuestState>>,
    /// Compiled modules.
    pub cache: Arc<ModuleCache>,
    /// Live routes.
    pub routes: RouteTableHandle,
    /// Metrics.
    pub metrics: Arc<RuntimeMetrics>,
    /// Guest and request log lines.
    pub logs: Arc<LogBus>,
    /// Initialized SDK instances.
    pub sdk_pools: Arc<SdkPools>,
    /// Idle instances of `pooled` component releases.
    pub component_pools: Arc<crate::component::ComponentPools>,
    /// The last hour of traffic per app (dashboard charts).
    pub traffic: Arc<crate::traffic::TrafficStats>,
    /// Start-up work (compiles, artifact fetches) readiness waits for.
    pub readiness: crate::readiness::ReadinessGate,
    /// Concurrency caps (per app, per tenant, per host).
    pub admission: Admission,
    /// The client forwarding dedicated apps' requests to their own Services.
    pub(crate) forwarder: crate::dedicated_forward::Forwarder,
    /// The feed revision of the route table in force (0 before the first), which this
    /// runtime reports in its heartbeats so `platform status` can show who lags behind.
    pub served_revision: Arc<std::sync::atomic::AtomicU64>,
    started_ms: u64,
    queue_timeout: Duration,
    idle_timeout: Duration,
    body_read_timeout: Duration,
    body_idle_timeout: Duration,
    header_read_timeout: Duration,
    trust_forwarded_host: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("routes", &self.routes.load())
            .field("cache", &self.cache)
            .finish()
    }
}

impl Runtime {
    /// Builds the engine, linker and caches. Must be called inside a tokio runtime.
    pub fn new(
        config: RuntimeConfig,
        source: Arc<dyn ModuleSource>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let engine = build_engine(&config.engine)?;
        let ticker = EpochTicker::start(&engine, config.engine.epoch_tick);
        let linker =
            Arc::new(build_linker(&engine).map_err(|e| RuntimeError::Linker(format!("{e:#}")))?);
        let cache = Arc::new(ModuleCache::new(
            engine.clone(),
            linker.clone(),
            source,
            &config.artifact_dir,
            config.idle_timeout,
        )?);
        cache.spawn_evictor();
        let metrics = Arc::new(RuntimeMetrics::new());
        let sdk_pools = Arc::new(SdkPools::new(
            config.idle_timeout,
            crate::sdk::pool::PoolSettings {
                keep_resident: config.engine.keep_resident,
                ..Default::default()
            },
        ));
        sdk_pools.set_kv(Arc::new(crate::sdk::kv::FileKv::new(&config.kv_dir)));
        sdk_pools.set_outbound(Arc::new(crate::sdk::outbound::OutboundClient::new(
            &config.outbound,
        )?));
        sdk_pools.spawn_reaper(metrics.clone());
        let component_pools = Arc::new(crate::component::ComponentPools::new(
            config.component_reuse.clone(),
        ));
        component_pools.spawn_reaper(metrics.clone());
        Ok(Arc::new(Runtime {
            engine,
            _ticker: ticker,
            linker,
            cache,
            routes: RouteTableHandle::default(),
            metrics,
            logs: Arc::new(LogBus::default()),
            sdk_pools,
            component_pools,
            traffic: Arc::default(),
            readiness: Default::default(),
            admission: Admission::new(config.admission_limits()),
            forwarder: crate::dedicated_forward::Forwarder::new(),
            queue_timeout: config.queue_timeout,
            idle_timeout: config.idle_timeout,
            body_read_timeout: config.body_read_timeout,
            body_idle_timeout: config.body_idle_timeout,
            header_read_timeout: config.header_read_timeout,
            trust_forwarded_host: config.trust_forwarded_host,
            served_revision: Arc::default(),
            started_ms: crate::logs::LogEvent::now_ms(),
        }))
    }

    /// The wasmtime engine (for tools that compile for this host).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The shared linker.
    pub fn linker(&self) -> &Arc<Linker<GuestState>> {
        &self.linker
    }

    /// How long idle modules and instances are kept.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// How long a client may take to send a request's headers (the listener's setting).
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// True once routes are loaded and no start-up work holds readiness back (see
    /// [`crate::readiness`]).
    pub fn is_ready(&self) -> bool {
        self.routes.is_loaded() && self.readiness.is_clear()
    }

    /// When this runtime was made, ms since the epoch (reported in its heartbeats).
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Holds readiness back until the returned guard is dropped: take it before the admin
    /// listener serves, for work a ready runtime must have done (compiling or fetching the
    /// modules it serves).
    pub fn hold_readiness(&self, what: &'static str) -> crate::readiness::ReadinessHold {
        self.readiness.hold(what)
    }

    /// Serves one request.
    pub async fn handle<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let request_id = request_id_of(&req);
        let events_path = req.uri().path() == crate::cloud_events::EVENTS_PATH;
        match (conn.role, events_path) {
            (ListenerRole::Events, true) => {
                let req = req.map(|b| IdleTimeoutBody::new(b, self.body_idle_timeout));
                return self
                    .handle_cloud_event(req, conn, request_id, started)
                    .await;
            }
            (ListenerRole::Events, false) => {
                let resp = plain(
                    StatusCode::NOT_FOUND,
                    "this listener only takes CloudEvents at POST /.platform/events",
                );
                return with_request_id(resp, &request_id);
            }
            (ListenerRole::Traffic, _) => {}
        }
        let mut req = req.map(|b| IdleTimeoutBody::new(b, self.body_idle_timeout));
        let (matched, resolved_path, forwarded_host) = {
            let target =
                match RoutingTarget::of(req.uri(), req.headers(), self.trust_forwarded_host) {
                    Ok(t) => t,
                    Err(e) => {
                        self.count_unrouted(400);
                        let mut resp = plain(StatusCode::BAD_REQUEST, &e.to_string());
                        resp.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        return with_request_id(resp, &request_id);
                    }
                };
            let table = self.routes.load();
            let matched = if events_path {
                None
            } else {
                table.lookup_canonical(target.host.as_deref(), &target.path)
            };
            let resolved = match target.path {
                std::borrow::Cow::Owned(p) => Some(p),
                std::borrow::Cow::Borrowed(_) => None,
            };
            // Routed by a trusted X-Forwarded-Host: that is the host the client asked for.
            let forwarded_host = if self.trust_forwarded_host {
                req.headers()
                    .get(crate::request_target::X_FORWARDED_HOST)
                    .cloned()
            } else {
                None
            };
            (matched, resolved, forwarded_host)
        };
        let Some(matched) = matched else {
            // Before its first route table the runtime knows no routes at all: a 404 would
            // tell the client (and caches) the path does not exist. 503 says to come back.
            if !self.routes.is_loaded() {
                self.count_unrouted(503);
                let mut resp = plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this runtime is starting: its routes are not loaded yet",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return with_request_id(resp, &request_id);
            }
            self.count_unrouted(404);
            let resp = plain(
                StatusCode::NOT_FOUND,
                &format!("no app is routed at {}", req.uri().path()),
            );
            return with_request_id(resp, &request_id);
        };
        if let Some(path) = resolved_path
            && let Some(uri) = crate::request_target::with_path(req.uri(), &path)
        {
            // The guest sees the path the request was routed by.
            *req.uri_mut() = uri;
        }
        if let Some(to) = matched.target.forward() {
            // The host the request was routed by, as sent: a trusted X-Forwarded-Host,
            // else Host (or the target's authority).
            let routed_host = forwarded_host.or_else(|| {
                req.headers().get(header::HOST).cloned().or_else(|| {
                    req.uri()
                        .authority()
                        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                })
            });
            let to = to.clone();
            let f = crate::dedicated_forward::Forward {
                matched: &matched,
                to: &to,
                original_host: routed_host,
                request_id: &request_id,
                started,
            };
            let resp = crate::dedicated_forward::forward(self, req, conn, f).await;
            return with_request_id(resp, &request_id);
        }
        if let Some(h) = forwarded_host {
            // The guest sees the host it was routed by, as it sees the path.
            req.headers_mut().insert(header::HOST, h);
        }
        self.dispatch(req, conn, matched, request_id, started).await
    }

    fn count_unrouted(&self, status: u16) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                tenant: "-".into(),
                app: "-".into(),
                release: "-".into(),
                status,
            })
            .inc();
    }

    /// [`Self::dispatch`] for requests the host built itself (events, messages), as a boxed
    /// `Send` future: the type erasure keeps the compiler's `Send` proof of the request
    /// path from recursing through the generic body type.
    pub(crate) fn dispatch_built<'a>(
        &'a self,
        req: Request<ResponseBody>,
        conn: ConnInfo,
        matched: RouteMatch,
        request_id: String,
        started: Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<ResponseBody>> + Send + 'a>>
    {
        Box::pin(self.dispatch(req, conn, matched, request_id, started))
    }

    /// Serves a request already matched to an app (by route, event type or subject).
    pub(crate) async fn dispatch<B>(
        &self,
        req: Request<B>,
        conn: ConnInfo,
        matched: RouteMatch,
        request_id: String,
        started: Instant,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let Some((spec, binding)) = matched.target.pick_bound() else {
            let resp = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the app has no live release",
            );
            return with_request_id(resp, &request_id);
        };
        // Target `platform::request`, as the `request served` line: the binary leaves both
        // off stderr unless asked (`--access-log`), and a span no output wants costs nothing.
        let span = tracing::info_span!(
            target: "platform::request",
            "request",
            request_id = %request_id,
            app = %spec.app,
            release = %spec.release,
            route = %matched.route,
            method = %req.method(),
            path = %req.uri().path(),
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            cold = tracing::field::Empty,
        );
        let mut req = req;
        crate::reserved_cookies::strip_from_request(req.headers_mut());
        let release_metrics = binding.metrics(&self.metrics, spec);
        let mut guard = InFlight::new(self, spec, release_metrics, &request_id, started, &req);
        let (mut resp, cold) = self
            .serve(req, conn, &matched, spec, binding, &request_id)
            .instrument(span.clone())
            .await;
        let dropped = crate::reserved_cookies::strip_from_response(resp.headers_mut());
        if dropped > 0 {
            tracing::warn!(target: "platform::guest", app = %spec.app, request_id = %request_id, dropped, "dropped the guest's Set-Cookie for cookies reserved to the platform (platform_*)");
        }
        let status = resp.status();
        let elapsed = started.elapsed();
        span.record("status", status.as_u16());
        span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
        span.record("cold", cold);
        guard.finish(status, elapsed, cold);
        span.in_scope(|| {
            tracing::info!(
                target: "platform::request",
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                cold,
                "request served"
            );
        });
        with_request_id(resp, &request_id)
    }

    async fn serve<B>(
        &self,
        req: Request<B>,
        conn: ConnInfo,
        matched: &RouteMatch,
        spec: &Arc<AppSpec>,
        binding: &ReleaseBinding,
        request_id: &str,
    ) -> (Response<ResponseBody>, bool)
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let limits = &spec.limits;
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > limits.max_body
        {
            return (too_large(limits.max_body), false);
        }

        let artifact = if spec.isolation == crate::app::Isolation::PerRequest {
            ArtifactKind::Snapshot
        } else {
            ArtifactKind::Plain
        };
        let loading = self
            .cache
            .get_bound(binding.module(), &spec.module, artifact)
            .await;
        let (loaded, kind) = match loading {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, module = ?spec.module, "cannot load module");
                self.count_failure(spec, "load");
                return (
                    plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the function could not be loaded",
                    ),
                    true,
                );
            }
        };
        if kind.is_cold() {
            self.metrics
                .cold_loads
                .get_or_create(&ColdLabels {
                    tenant: spec.tenant.clone(),
                    app: spec.app.clone(),
                    source: kind.as_str().into(),
                })
                .inc();
            self.metrics
                .resident_modules
                .set(self.cache.resident() as i64);
        }
        let cold = kind != LoadKind::Warm;
        let gate = matched.target.gate(&self.admission);

        let resp = match loaded.abi.kind {
            AbiKind::Wagi => {
                let (parts, body) = req.into_parts();
                // The whole body arrives before the guest gets a slot: a slow client holds
                // a connection, never an execution slot.
                let body = match self.read_body(body, limits.max_body).await {
                    Ok(b) => b,
                    Err(resp) => return (resp, cold),
                };
                let permits = match self.admit(spec, gate, None, request_id).await {
                    Ok(p) => p,
                    Err(resp) => return (resp, cold),
                };
                let exec = crate::wagi::WagiExec {
                    loaded,
                    spec: spec.clone(),
                    permits,
                    cpu: binding.cpu_gate(spec).clone(),
                };
                crate::wagi::serve(self, exec, &parts, body, conn, &matched.route, request_id).await
            }
            AbiKind::Sdk => {
                let pool = binding.pool(&self.sdk_pools, spec);
                let permits = match self
                    .admit(spec, gate, Some(&pool.permits), request_id)
                    .await
                {
                    Ok(p) => p,
                    Err(resp) => return (resp, cold),
                };
                let exec = crate::sdk::SdkExec {
                    loaded,
                    spec: spec.clone(),
                    pool,
                    permits,
                    cpu: binding.cpu_gate(spec).clone(),
                };
                crate::sdk::serve(self, exec, req, conn, &matched.route, request_id).await
            }
            AbiKind::Component => {
                let permits = match self.admit(spec, gate, None, request_id).await {
                    Ok(p) => p,
                    Err(resp) => return (resp, cold),
                };
                let exec = crate::component::ComponentExec {
                    loaded,
                    spec: spec.clone(),
                    permits,
                    cpu: binding.cpu_gate(spec).clone(),
                };
                crate::component::serve::serve(self, exec, req, conn, request_id).await
            }
        };
        (resp, cold)
    }

    /// Reads a whole request body within the release's size limit and the body deadline.
    async fn read_body<B>(&self, body: B, max_body: u64) -> Result<Bytes, Response<ResponseBody>>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let limited = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.body_read_timeout, limited.collect()).await {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large(max_body))
            }
            Ok(Err(e)) if e.downcast_ref::<BodyIdle>().is_some() => {
                Err(body_timeout(&e.to_string()))
            }
            Err(_) => Err(body_timeout(&format!(
                "the request body did not arrive within {} s",
                self.body_read_timeout.as_secs()
            ))),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "request body could not be read");
                Err(plain(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
        }
    }

    /// Takes the permits a guest runs under: its app's and tenant's, the release pool's
    /// (SDK), then a host slot, each waiting no later than the admission deadline. A
    /// refusal is a 503 with `Retry-After`.
    async fn admit(
        &self,
        spec: &AppSpec,
        gate: &AppGate,
        instances: Option<&Arc<Semaphore>>,
        request_id: &str,
    ) -> Result<ExecPermits, Response<ResponseBody>> {
        let by = Instant::now() + self.queue_timeout.min(spec.limits.timeout);
        let refused = |cap: Capacity| {
            self.metrics
                .rejected
                .get_or_create(&RejectLabels {
                    tenant: spec.tenant.clone(),
                    app: spec.app.clone(),
                    cap: cap.as_str().into(),
                })
                .inc();
            self.failure_response(spec, &GuestFailure::Overloaded(cap), request_id)
        };
        let app = self.admission.admit_app(gate, by).await.map_err(refused)?;
        let instances = match instances {
            Some(sem) => Some(
                crate::admission::acquire(sem, by)
                    .await
                    .ok_or_else(|| refused(Capacity::Instances))?,
            ),
            None => None,
        };
        let host = self.admission.admit_host(by).await.map_err(refused)?;
        Ok(ExecPermits {
            app,
            instances,
            host,
        })
    }

    /// Turns a guest failure into its response, with a log line and a metric.
    pub(crate) fn failure_response(
        &self,
        spec: &AppSpec,
        failure: &GuestFailure,
        request_id: &str,
    ) -> Response<ResponseBody> {
        report_failure(&self.metrics, &self.logs, spec, failure, request_id);
        let mut resp = plain(failure.status(), &failure.public_message());
        if matches!(failure, GuestFailure::Overloaded(_)) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    fn count_failure(&self, spec: &AppSpec, kind: &str) {
        count_failure(&self.metrics, spec, kind);
    }

    /// Sends captured guest output to the log, line by line, with the request id.
    pub(crate) fn emit_guest_output(
        &self,
        spec: &AppSpec,
        request_id: &str,
        stream: LogStream,
        bytes: &[u8],
        dropped: u64,
    ) {
        crate::logs::emit_guest_output(&self.logs, spec, request_id, stream, bytes, dropped);
    }
}

/// Logs a guest failure (host log and the app's log, with the request id) and counts it,
/// whether or not a response can still say so (a component can fail mid-body).
pub(crate) fn report_failure(
    metrics: &RuntimeMetrics,
    logs: &LogBus,
    spec: &AppSpec,
    failure: &GuestFailure,
    request_id: &str,
) {
    tracing::warn!(
        target: "platform::guest",
        app = %spec.app,
        request_id,
        kind = failure.kind(),
        error = %failure,
        "guest failed"
    );
    count_failure(metrics, spec, failure.kind());
    logs.publish(LogEvent {
        ts_ms: LogEvent::now_ms(),
        tenant: spec.tenant.clone(),
        app: spec.app.clone(),
        request_id: request_id.into(),
        stream: LogStream::Stderr,
        status: None,
        line: format!("[platform] {failure}"),
    });
}

fn count_failure(metrics: &RuntimeMetrics, spec: &AppSpec, kind: &str) {
    metrics
        .traps
        .get_or_create(&TrapLabels {
            tenant: spec.tenant.clone(),
            app: spec.app.clone(),
            kind: kind.into(),
        })
        .inc();
}

/// Tracks one in-flight request: gauges, metrics, and a log line if the client leaves early.
struct InFlight<'a> {
    rt: &'a Runtime,
    spec: Arc<AppSpec>,
    release_metrics: &'a ReleaseMetrics,
    request_id: String,
    /// "GET /shop/items/42", for the request's log line.
    request_line: String,
    started: Instant,
    done: bool,
}

impl<'a> InFlight<'a> {
    fn new<B>(
        rt: &'a Runtime,
        spec: &Arc<AppSpec>,
        release_metrics: &'a ReleaseMetrics,
        request_id: &str,
        started: Instant,
        req: &Request<B>,
    ) -> Self {
        rt.metrics.in_flight.inc();
        let path = req.uri().path();
        // Log lines show at most 200 characters of the path.
        let path = match path.char_indices().nth(200) {
            Some((i, _)) => &path[..i],
            None => path,
        };
        InFlight {
            rt,
            spec: spec.clone(),
            release_metrics,
            request_id: request_id.to_string(),
            request_line: {
                // Room for what `finish` appends (status, duration, release number).
                let mut line = String::with_capacity(req.method().as_str().len() + path.len() + 40);
                let _ = write!(line, "{} {}", req.method(), path);
                line
            },
            started,
            done: false,
        }
    }

    fn finish(&mut self, status: StatusCode, elapsed: Duration, cold: bool) {
        self.done = true;
        if status == StatusCode::OK {
            self.release_metrics.ok.inc();
        } else {
            self.rt
                .metrics
                .requests
                .get_or_create(&RequestLabels {
                    tenant: self.spec.tenant.clone(),
                    app: self.spec.app.clone(),
                    release: self.spec.release_label(),
                    status: status.as_u16(),
                })
                .inc();
        }
        self.release_metrics.latency.observe(elapsed.as_secs_f64());
        self.rt.traffic.record(
            &self.spec.tenant,
            &self.spec.app,
            status.as_u16(),
            elapsed,
            cold,
        );
        // The request line grows into the log line: one buffer, no temporaries.
        let mut line = std::mem::take(&mut self.request_line);
        let _ = write!(
            line,
            " {} in {:.2} ms{}",
            status.as_u16(),
            elapsed.as_secs_f64() * 1000.0,
            if cold { " (cold)" } else { "" },
        );
        if self.spec.release_number != 0 {
            let _ = write!(line, " #{}", self.spec.release_number);
        }
        self.rt.logs.publish(LogEvent {
            ts_ms: LogEvent::now_ms(),
            tenant: self.spec.tenant.clone(),
            app: self.spec.app.clone(),
            // `done` is set: Drop no longer needs it.
            request_id: std::mem::take(&mut self.request_id),
            stream: LogStream::Request,
            status: Some(status.as_u16()),
            line,
        });
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.rt.metrics.in_flight.dec();
        if !self.done {
            // The connection went away while the guest was working; its instance is gone.
            tracing::info!(
                target: "platform::request",
                app = %self.spec.app,
                request_id = %self.request_id,
                after_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                "client disconnected before the response; request cancelled"
            );
            self.rt
                .metrics
                .requests
                .get_or_create(&RequestLabels {
                    tenant: self.spec.tenant.clone(),
                    app: self.spec.app.clone(),
                    release: self.spec.release_label(),
                    status: 499,
                })
                .inc();
        }
    }
}

/// The client's `x-request-id` when it is a sane token, else a new UUIDv7. Its random bits
/// come from uuid's `fast-rng` (rand's thread-local CSPRNG): the default asked the kernel
/// (`getrandom`) on every request, 1.7% of a runtime's CPU at load (benches/README.md).
fn request_id_of<B>(req: &Request<B>) -> String {
    if let Some(id) = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return id.to_string();
    }
    uuid::Uuid::now_v7().simple().to_string()
}

fn with_request_id(mut resp: Response<ResponseBody>, id: &str) -> Response<ResponseBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// A full (non-streaming) body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A short plain-text response from the host itself.
pub fn plain(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 408 for a body that stalled or took too long; the connection cannot be reused.
pub(crate) fn body_timeout(message: &str) -> Response<ResponseBody> {
    let mut resp = plain(StatusCode::REQUEST_TIMEOUT, message);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// 413 for a body over `limit`. The rest of the body is not read, so the connection cannot
/// carry another request: say so, or a client would reuse it and see it cut.
pub(crate) fn too_large(limit: u64) -> Response<ResponseBody> {
    let mut resp = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than this function's limit of {limit} bytes"),
    );
    resp.headers_mut().insert(
        header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    resp
}
