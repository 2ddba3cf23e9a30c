//! What an SDK instance's store holds while it serves a request, and how the response
//! travels back to hyper while the guest is still running (streaming).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Frame;
use tokio::sync::{mpsc, oneshot};
use wasmtime::Memory;

use crate::app::AppSpec;
use crate::host::BoxError;
use crate::sdk::kv::{KvBackend, KvScope};
use crate::sdk::outbound::OutboundClient;

/// What travels from the guest to hyper after a streamed response's head. A stream that
/// stops without [`BodyMsg::End`] (the guest trapped, timed out, went over a limit) ends in
/// an error the client sees (a reset, no terminating chunk), never as a clean short body.
#[derive(Debug)]
pub enum BodyMsg {
    /// Body bytes or trailers.
    Frame(Frame<Bytes>),
    /// The guest finished the response.
    End,
    /// The response was cut off, and why.
    Abort(BoxError),
}

/// The response head, and how the body follows.
pub struct ResponseHead {
    /// Status code.
    pub status: http::StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body (when the guest said "end") or a stream of frames.
    pub body: HeadBody,
}

/// How the body of a response follows its head.
pub enum HeadBody {
    /// Complete.
    Full(Bytes),
    /// Streamed: the first bytes, then frames from the channel until the guest returns.
    Stream(Bytes, mpsc::Receiver<BodyMsg>),
}

/// Where the response is going.
pub enum ResponseSink {
    /// Head not sent yet.
    Pending(oneshot::Sender<ResponseHead>),
    /// Head sent; body frames go here.
    Streaming(mpsc::Sender<BodyMsg>),
    /// Finished, or the client is gone.
    Done,
}

/// The request body as the guest reads it.
pub struct RequestBody {
    /// The hyper body, boxed (taken out while a read awaits it).
    pub body: Option<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>,
    /// Bytes received but not yet handed to the guest.
    pub leftover: Bytes,
    /// Bytes received so far.
    pub received: u64,
    /// The release's limit.
    pub limit: u64,
    /// The stream ended.
    pub done: bool,
}

/// Per-request state.
pub struct RequestCtx {
    /// Encoded request head (`sdk/ABI.md`).
    pub head: Vec<u8>,
    /// The request body.
    pub body: RequestBody,
    /// The response.
    pub sink: ResponseSink,
    /// The body went over the release's limit (answer 413 if nothing was sent).
    pub body_too_large: bool,
    /// Response body bytes sent so far.
    pub response_bytes: u64,
    /// The release's `max_response`.
    pub response_limit: u64,
    /// The guest tried to send more than `response_limit` (answer 502, or cut the stream).
    pub response_too_large: bool,
    /// When the request must end.
    pub deadline: std::time::Instant,
}

/// An outbound response being read by the guest.
pub struct OutboundResponse {
    /// Encoded status + headers.
    pub head: Vec<u8>,
    /// The body.
    pub response: reqwest::Response,
    /// Bytes of the current chunk not yet read.
    pub leftover: Bytes,
    /// The body ended.
    pub done: bool,
}

/// Host-side state of an SDK instance.
pub struct SdkHostState {
    /// The guest's exported memory.
    pub memory: Option<Memory>,
    /// The release the instance serves (env, limits, outbound list).
    pub spec: Arc<AppSpec>,
    /// Encoded release variables for `env_get`.
    pub env_pairs: Arc<Vec<u8>>,
    /// Identifies `env_pairs`; the SDK refreshes its environment when it changes.
    pub env_generation: u64,
    /// The request being served.
    pub req: Option<RequestCtx>,
    /// Text of the last error, for `error_message`.
    pub last_error: String,
    /// Key-value backend.
    pub kv: Option<Arc<dyn KvBackend>>,
    /// The runtime's outbound HTTP client (none while a snapshot is made).
    pub outbound: Option<Arc<OutboundClient>>,
    /// Open key-value stores by handle.
    pub kv_handles: Vec<KvScope>,
    /// Open outbound responses by handle.
    pub http_handles: HashMap<i32, OutboundResponse>,
    /// Next outbound handle.
    pub next_http: i32,
    /// Scratch buffer for copies out of guest memory.
    pub scratch: BytesMut,
}

impl SdkHostState {
    /// State for an instance of `spec`.
    pub fn new(spec: Arc<AppSpec>, kv: Option<Arc<dyn KvBackend>>) -> Self {
        let env = ReleaseEnv::of(&spec);
        Self::with_env(spec, &env, kv)
    }

    /// State for an instance of `spec`, whose variables were encoded once in `env`.
    pub fn with_env(spec: Arc<AppSpec>, env: &ReleaseEnv, kv: Option<Arc<dyn KvBackend>>) -> Self {
        SdkHostState {
            memory: None,
            spec,
            env_pairs: env.pairs.clone(),
            env_generation: env.generation,
            req: None,
            last_error: String::new(),
            kv,
            outbound: None,
            kv_handles: Vec::new(),
            http_handles: HashMap::new(),
            next_http: 1,
            scratch: BytesMut::new(),
        }
    }

    /// Points the state at another release (a snapshot instance serves any release of its
    /// module).
    pub fn set_spec(&mut self, spec: Arc<AppSpec>, env: &ReleaseEnv) {
        if !Arc::ptr_eq(&self.spec, &spec) {
            self.env_pairs = env.pairs.clone();
            self.env_generation = env.generation;
            self.spec = spec;
        }
    }

    /// Clears per-request state between requests.
    pub fn reset(&mut self) {
        self.req = None;
        self.last_error.clear();
        self.kv_handles.clear();
        self.http_handles.clear();
        self.next_http = 1;
    }
}

/// The encoded variables of a release and their generation number: computed once per
/// release (its pool holds them) and shared by its instances and request heads.
#[derive(Debug, Clone)]
pub struct ReleaseEnv {
    /// Encoded pairs for `env_get`.
    pub pairs: Arc<Vec<u8>>,
    /// Identifies `pairs`; in every request head, so the SDK re-reads its environment
    /// when a release's variables change. 0 for a release without variables: the SDK
    /// starts at generation 0 with none, so a fresh instance (a per-request snapshot's
    /// above all) skips the `env_get` round trip when there is nothing to fetch.
    pub generation: u64,
}

impl ReleaseEnv {
    /// The variables of `spec`.
    pub fn of(spec: &AppSpec) -> Self {
        let pairs = crate::sdk::wire::pairs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if spec.env.is_empty() {
            return ReleaseEnv {
                pairs: Arc::new(pairs),
                generation: 0,
            };
        }
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&pairs, &mut h);
        std::hash::Hash::hash(&spec.release, &mut h);
        ReleaseEnv {
            pairs: Arc::new(pairs),
            // Never 0 with variables: 0 is the SDK's starting point (none applied), so
            // the first request of a fresh instance fetches them.
            generation: std::hash::Hasher::finish(&h) | 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_without_variables_is_generation_zero_and_others_are_not() {
        let mut spec = AppSpec::for_tests("a");
        assert_eq!(ReleaseEnv::of(&spec).generation, 0);
        spec.env = vec![("K".into(), "v".into())];
        let with = ReleaseEnv::of(&spec).generation;
        assert_ne!(with, 0);
        spec.env = vec![("K".into(), "w".into())];
        assert_ne!(ReleaseEnv::of(&spec).generation, with);
    }
}
