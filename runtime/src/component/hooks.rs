//! How a component's `wasi:http` requests leave the host: they do not, yet.
//!
//! Outbound requests through the release's `allowed_outbound_hosts` and the operator's
//! address policy (as for SDK guests, see [`crate::sdk::outbound`]) are not wired to
//! components; until they are, every outgoing request is refused with
//! `HTTP-request-denied`, which the guest sees as an error code (not a trap).

use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

/// The host's `wasi:http` hooks for components.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlatformHooks;

/// The future `send_request` answers with (its shape is `wasmtime-wasi-http`'s).
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for PlatformHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        tracing::info!(
            target: "platform::guest",
            uri = %request.uri(),
            "outbound request refused: components have no outbound HTTP on this host yet"
        );
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
