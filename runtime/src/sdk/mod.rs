//! SDK mode: guests built with the Platform Go SDK export a handler and import the host
//! ABI described in `sdk/ABI.md`. Go's start-up runs once per instance, not per request.

pub mod abi;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use wasmtime::Linker;

use crate::app::AppSpec;
use crate::guest::GuestState;
use crate::host::{BoxError, ConnInfo, ResponseBody, Runtime, plain};
use crate::metrics::RuntimeMetrics;
use crate::module_cache::LoadedModule;
use crate::route_table::RouteSpec;

/// Host-side state of an SDK instance while it serves a request.
#[derive(Default)]
pub struct SdkHostState {}

/// Adds the Platform host ABI to the shared linker.
pub fn add_to_linker(_linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    Ok(())
}

/// Pools of initialized instances, one per release.
pub struct SdkPools {
    _idle: Duration,
}

impl SdkPools {
    /// Pools whose idle instances are dropped after `idle`.
    pub fn new(idle: Duration) -> Self {
        SdkPools { _idle: idle }
    }

    /// Drops idle instances periodically.
    pub fn spawn_reaper(self: &Arc<Self>, _metrics: Arc<RuntimeMetrics>) {}
}

/// Serves one request with an SDK module.
pub(crate) async fn serve<B>(
    _rt: &Runtime,
    _module: &LoadedModule,
    _spec: &Arc<AppSpec>,
    _req: Request<B>,
    _conn: ConnInfo,
    _route: &RouteSpec,
    _request_id: &str,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    plain(
        StatusCode::NOT_IMPLEMENTED,
        "SDK modules are not served yet",
    )
}
