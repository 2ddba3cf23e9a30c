//! The host functions of ABI v1 (`sdk/ABI.md`), added to the shared linker.
//!
//! Conventions: pointers and lengths are i32 offsets into the guest's memory; a result
//! `< 0` is a negated error code (`abi::code`), with a message for `error_message`. Calls
//! that fill a guest buffer return the full length and write only when it fits, so the
//! guest retries once with a bigger buffer. A pointer outside the guest's memory is an
//! `INVALID` error, never a trap of the host.
//!
//! Each host call is one function below, named and ordered as in `sdk/ABI.md`, returning an
//! [`AbiResult`]; [`add_to_linker`] wires them up and [`finish`] turns an error into the
//! negated code plus the message `error_message` returns.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use wasmtime::{Caller, Linker};

use super::abi::{FLAG_END, SDK_IMPORT_MODULE, code};
use super::kv::{self, KvScope};
use super::state::{BodyMsg, HeadBody, OutboundResponse, ResponseHead, ResponseSink, SdkHostState};
use super::wire::{Reader, Writer};
use crate::guest::GuestState;

type C<'a> = Caller<'a, GuestState>;

const MAX_HTTP_HANDLES: usize = 16;
const MAX_KV_HANDLES: usize = 16;

/// A failed host call: the code the guest gets (negated) and the message behind it.
#[derive(Debug)]
struct AbiError {
    code: i32,
    message: String,
}

/// What a host call returns: a non-negative result, or an error for the guest.
type AbiResult = Result<i32, AbiError>;

fn err(code: i32, message: impl Into<String>) -> AbiError {
    AbiError {
        code,
        message: message.into(),
    }
}

fn no_request() -> AbiError {
    err(code::STATE, "no request is being served")
}

/// The ABI's i32 for `result`; an error's message is kept for `error_message`.
fn finish(caller: &mut C<'_>, result: AbiResult) -> i32 {
    match result {
        Ok(n) => n,
        Err(e) => {
            if let Some(s) = sdk(caller) {
                s.last_error = e.message;
            }
            -e.code
        }
    }
}

/// `i32`, once per argument name: the parameter types of a host call.
macro_rules! i32_for {
    ($arg:ident) => {
        i32
    };
}

/// Wires a synchronous host call `$f(caller, args...) -> AbiResult` as `$name`.
macro_rules! host_call {
    ($linker:ident, $name:literal, $f:ident ( $($arg:ident),* )) => {
        $linker.func_wrap(
            SDK_IMPORT_MODULE,
            $name,
            |mut c: C<'_>, $($arg: i32),*| -> i32 {
                let r = $f(&mut c, $($arg),*);
                finish(&mut c, r)
            },
        )?;
    };
}

/// Wires an async host call `async $f(caller, args...) -> AbiResult` as `$name`.
macro_rules! async_host_call {
    ($linker:ident, $name:literal, $f:ident ( $($arg:ident),* )) => {
        $linker.func_wrap_async(
            SDK_IMPORT_MODULE,
            $name,
            |mut c: C<'_>, ($($arg,)*): ($(i32_for!($arg),)*)| {
                Box::new(async move {
                    let r = $f(&mut c, $($arg),*).await;
                    finish(&mut c, r)
                })
            },
        )?;
    };
}

/// Adds the Platform host ABI to `linker`.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    // The request and the response.
    host_call!(linker, "request_head", request_head(buf, cap));
    async_host_call!(linker, "request_body_read", request_body_read(buf, cap));
    async_host_call!(
        linker,
        "response_send",
        response_send(status, hp, hl, bp, bl, flags)
    );
    // Not through the macro: a guest told its response went over the limit that keeps
    // writing is stopped with a trap (it would otherwise spin until its deadline).
    linker.func_wrap_async(
        SDK_IMPORT_MODULE,
        "response_write",
        |mut c: C<'_>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                if sdk(&mut c)
                    .and_then(|s| s.req.as_ref())
                    .is_some_and(|r| r.response_too_large)
                {
                    return Err(wasmtime::Error::msg(
                        "the function kept writing after its response went over the limit",
                    ));
                }
                let r = response_write(&mut c, ptr, len).await;
                Ok(finish(&mut c, r))
            })
        },
    )?;
    async_host_call!(linker, "response_trailers", response_trailers(ptr, len));
    // Configuration and errors.
    host_call!(linker, "env_get", env_get(buf, cap));
    host_call!(linker, "config_get", config_get(kp, kl, buf, cap));
    host_call!(linker, "error_message", error_message(buf, cap));
    // Outbound HTTP.
    async_host_call!(linker, "http_send", http_send(hp, hl, bp, bl));
    host_call!(
        linker,
        "http_response_head",
        http_response_head(h, buf, cap)
    );
    async_host_call!(linker, "http_body_read", http_body_read(h, buf, cap));
    host_call!(linker, "http_close", http_close(h));
    // Key-value stores.
    host_call!(linker, "kv_open", kv_open(np, nl));
    async_host_call!(linker, "kv_get", kv_get(h, kp, kl, buf, cap));
    async_host_call!(linker, "kv_set", kv_set(h, kp, kl, vp, vl));
    async_host_call!(linker, "kv_delete", kv_delete(h, kp, kl));
    async_host_call!(linker, "kv_keys", kv_keys(h, pp, pl, buf, cap));
    Ok(())
}

fn sdk<'a>(caller: &'a mut C<'_>) -> Option<&'a mut SdkHostState> {
    caller.data_mut().sdk.as_mut()
}

fn state<'a>(caller: &'a mut C<'_>) -> Result<&'a mut SdkHostState, AbiError> {
    sdk(caller).ok_or_else(|| err(code::STATE, "not an SDK instance"))
}

/// Copies `len` bytes at `ptr` out of guest memory.
fn read(caller: &mut C<'_>, ptr: i32, len: i32) -> Result<Bytes, AbiError> {
    let Some(mem) = caller.data().sdk.as_ref().and_then(|s| s.memory) else {
        return Err(err(code::STATE, "the module exports no memory"));
    };
    let (Ok(p), Ok(n)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return Err(err(
            code::INVALID,
            format!("negative pointer or length ({ptr}, {len})"),
        ));
    };
    match mem.data(&caller).get(p..p.saturating_add(n)) {
        Some(b) => Ok(Bytes::copy_from_slice(b)),
        None => Err(err(
            code::INVALID,
            format!("{len} bytes at {ptr} are outside the module's memory"),
        )),
    }
}

/// Writes `data` at `ptr` if it fits in `cap`; returns its full length either way.
fn write(caller: &mut C<'_>, ptr: i32, cap: i32, data: &[u8]) -> AbiResult {
    let Some(mem) = caller.data().sdk.as_ref().and_then(|s| s.memory) else {
        return Err(err(code::STATE, "the module exports no memory"));
    };
    let (Ok(p), Ok(cap)) = (usize::try_from(ptr), usize::try_from(cap)) else {
        return Err(err(
            code::INVALID,
            format!("negative pointer or capacity ({ptr}, {cap})"),
        ));
    };
    let Ok(n) = i32::try_from(data.len()) else {
        return Err(err(code::TOO_LARGE, "the result does not fit in 2 GiB"));
    };
    if data.len() <= cap {
        let Some(dst) = mem
            .data_mut(&mut *caller)
            .get_mut(p..p.saturating_add(data.len()))
        else {
            return Err(err(
                code::INVALID,
                format!("{cap} bytes at {ptr} are outside the module's memory"),
            ));
        };
        dst.copy_from_slice(data);
    }
    Ok(n)
}

/// Writes up to `cap` bytes of `data`; returns how many were written.
fn write_some(caller: &mut C<'_>, ptr: i32, cap: i32, data: &[u8]) -> AbiResult {
    let n = data.len().min(usize::try_from(cap).unwrap_or(0));
    write(caller, ptr, cap, &data[..n])
}

fn clean_headers(mut h: http::HeaderMap) -> http::HeaderMap {
    for name in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        h.remove(name);
    }
    h
}

fn too_large_response(limit: u64) -> AbiError {
    err(
        code::TOO_LARGE,
        format!("the response is larger than this function's limit of {limit} bytes"),
    )
}

// ---- The request and the response ----------------------------------------------------

/// `request_head(buf, cap)`: the request's method, URI and headers (wire format).
fn request_head(c: &mut C<'_>, buf: i32, cap: i32) -> AbiResult {
    let head = state(c)?
        .req
        .as_ref()
        .map(|r| r.head.clone())
        .ok_or_else(no_request)?;
    write(c, buf, cap, &head)
}

/// `request_body_read(buf, cap)`: the next bytes of the request body; 0 at its end.
async fn request_body_read(c: &mut C<'_>, buf: i32, cap: i32) -> AbiResult {
    loop {
        let req = state(c)?.req.as_mut().ok_or_else(no_request)?;
        if !req.body.leftover.is_empty() {
            let chunk = req.body.leftover.clone();
            let n = write_some(c, buf, cap, &chunk)?;
            if n > 0
                && let Some(req) = sdk(c).and_then(|s| s.req.as_mut())
            {
                let _ = req.body.leftover.split_to(n as usize);
            }
            return Ok(n);
        }
        if req.body.done {
            return Ok(0);
        }
        let Some(mut body) = req.body.body.take() else {
            return Ok(0);
        };
        let frame = body.frame().await;
        let req = state(c)?.req.as_mut().ok_or_else(no_request)?;
        req.body.body = Some(body);
        match frame {
            None => {
                req.body.done = true;
                return Ok(0);
            }
            Some(Err(e)) => {
                req.body.done = true;
                return Err(err(
                    code::CLOSED,
                    format!("the request body could not be read: {e}"),
                ));
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    req.body.received += data.len() as u64;
                    if req.body.received > req.body.limit {
                        req.body.done = true;
                        req.body_too_large = true;
                        let limit = req.body.limit;
                        return Err(err(
                            code::TOO_LARGE,
                            format!("the request body is larger than the limit of {limit} bytes"),
                        ));
                    }
                    req.body.leftover = data;
                }
            }
        }
    }
}

/// `response_send(status, head, body, flags)`: starts (or, with `FLAG_END`, completes) the
/// response.
async fn response_send(
    c: &mut C<'_>,
    status: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    flags: i32,
) -> AbiResult {
    let head = read(c, hp, hl)?;
    let body = read(c, bp, bl)?;
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .ok_or_else(|| err(code::INVALID, format!("invalid status code {status}")))?;
    let headers = Reader::new(&head)
        .headers()
        .map_err(|_| err(code::INVALID, "malformed response headers"))?;
    let mut headers = clean_headers(headers);
    let req = state(c)?.req.as_mut().ok_or_else(no_request)?;
    if body.len() as u64 > req.response_limit {
        req.response_too_large = true;
        return Err(too_large_response(req.response_limit));
    }
    req.response_bytes = body.len() as u64;
    let sink = std::mem::replace(&mut req.sink, ResponseSink::Done);
    let ResponseSink::Pending(tx) = sink else {
        req.sink = sink;
        return Err(err(code::STATE, "the response was already started"));
    };
    let (body, next) = if flags & FLAG_END != 0 {
        headers.remove(http::header::CONTENT_LENGTH);
        (HeadBody::Full(body), ResponseSink::Done)
    } else {
        let (ftx, frx) = tokio::sync::mpsc::channel(4);
        (HeadBody::Stream(body, frx), ResponseSink::Streaming(ftx))
    };
    let head = ResponseHead {
        status,
        headers,
        body,
    };
    if tx.send(head).is_err() {
        return Err(err(code::CLOSED, "the client went away"));
    }
    req.sink = next;
    Ok(0)
}

/// `response_write(ptr, len)`: more of a streamed response body.
async fn response_write(c: &mut C<'_>, ptr: i32, len: i32) -> AbiResult {
    let data = read(c, ptr, len)?;
    let tx = match state(c)?.req.as_ref().map(|r| &r.sink) {
        Some(ResponseSink::Streaming(tx)) => tx.clone(),
        Some(ResponseSink::Done) => {
            return Err(err(
                code::CLOSED,
                "the response is finished or the client went away",
            ));
        }
        _ => return Err(err(code::STATE, "response_write before response_send")),
    };
    if data.is_empty() {
        return Ok(0);
    }
    if let Some(req) = state(c)?.req.as_mut() {
        req.response_bytes += data.len() as u64;
        if req.response_bytes > req.response_limit {
            // Cut the stream: the client must not take a truncated body for a complete one.
            req.response_too_large = true;
            req.sink = ResponseSink::Done;
            let limit = req.response_limit;
            let _ = tx
                .send(BodyMsg::Abort(
                    "the response went over the function's limit".into(),
                ))
                .await;
            return Err(too_large_response(limit));
        }
    }
    if tx.send(BodyMsg::Frame(Frame::data(data))).await.is_err() {
        if let Some(req) = sdk(c).and_then(|s| s.req.as_mut()) {
            req.sink = ResponseSink::Done;
        }
        return Err(err(code::CLOSED, "the client went away"));
    }
    Ok(0)
}

/// `response_trailers(ptr, len)`: trailers, which end a streamed response.
async fn response_trailers(c: &mut C<'_>, ptr: i32, len: i32) -> AbiResult {
    let block = read(c, ptr, len)?;
    let trailers = Reader::new(&block)
        .headers()
        .map_err(|_| err(code::INVALID, "malformed trailers"))?;
    let req = state(c)?.req.as_mut().ok_or_else(no_request)?;
    // Refused without touching the response: before `response_send` it is still to be sent.
    let ResponseSink::Streaming(tx) = &req.sink else {
        return Err(err(
            code::STATE,
            "trailers need a streamed response (send without the end flag)",
        ));
    };
    let tx = tx.clone();
    req.sink = ResponseSink::Done;
    if tx
        .send(BodyMsg::Frame(Frame::trailers(trailers)))
        .await
        .is_err()
        || tx.send(BodyMsg::End).await.is_err()
    {
        return Err(err(code::CLOSED, "the client went away"));
    }
    Ok(0)
}

// ---- Configuration and errors ----------------------------------------------------------

/// `env_get(buf, cap)`: the release's environment variables (wire format).
fn env_get(c: &mut C<'_>, buf: i32, cap: i32) -> AbiResult {
    let pairs = state(c)?.env_pairs.clone();
    write(c, buf, cap, &pairs)
}

/// `config_get(key, buf, cap)`: one variable's value.
fn config_get(c: &mut C<'_>, kp: i32, kl: i32, buf: i32, cap: i32) -> AbiResult {
    let key = read(c, kp, kl)?;
    let value = state(c)?
        .spec
        .env
        .iter()
        .find(|(k, _)| k.as_bytes() == key.as_ref())
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            err(
                code::NOT_FOUND,
                format!("no variable {:?}", String::from_utf8_lossy(&key)),
            )
        })?;
    write(c, buf, cap, value.as_bytes())
}

/// `error_message(buf, cap)`: the message of the last failed call (truncated to `cap`).
fn error_message(c: &mut C<'_>, buf: i32, cap: i32) -> AbiResult {
    let msg = sdk(c).map(|s| s.last_error.clone()).unwrap_or_default();
    write_some(c, buf, cap, msg.as_bytes())
}

// ---- Outbound HTTP ----------------------------------------------------------------------

/// `http_send(head, body)`: sends an outbound request through the release's allow-list and
/// the operator's deny-list; returns a response handle.
async fn http_send(c: &mut C<'_>, hp: i32, hl: i32, bp: i32, bl: i32) -> AbiResult {
    let head = read(c, hp, hl)?;
    let body = read(c, bp, bl)?;
    let mut r = Reader::new(&head);
    let parsed = (|| {
        Some((
            r.str16().ok()?.to_vec(),
            r.str32().ok()?.to_vec(),
            r.headers().ok()?,
        ))
    })();
    let (method, url, headers) =
        parsed.ok_or_else(|| err(code::INVALID, "malformed outbound request"))?;
    let method =
        http::Method::from_bytes(&method).map_err(|_| err(code::INVALID, "invalid method"))?;
    let url = std::str::from_utf8(&url)
        .ok()
        .and_then(|u| url::Url::parse(u).ok())
        .ok_or_else(|| {
            err(
                code::INVALID,
                format!("invalid URL {:?}", String::from_utf8_lossy(&url)),
            )
        })?;
    let s = state(c)?;
    if s.http_handles.len() >= MAX_HTTP_HANDLES {
        return Err(err(
            code::LIMIT,
            "too many open outbound responses: close their bodies",
        ));
    }
    let target = super::outbound::check_url(&s.spec.allowed_outbound_hosts, &url)
        .map_err(|e| err(e.code(), e.to_string()))?;
    let client = s
        .outbound
        .clone()
        .ok_or_else(|| err(code::UNAVAILABLE, "outbound HTTP is not available here"))?;
    let timeout = s
        .req
        .as_ref()
        .map(|r| {
            r.deadline
                .saturating_duration_since(std::time::Instant::now())
        })
        .unwrap_or(std::time::Duration::from_secs(30))
        .min(std::time::Duration::from_secs(30));
    let mut headers = clean_headers(headers);
    headers.remove(http::header::HOST);
    let request = super::outbound::OutboundRequest {
        method,
        url,
        headers,
        body,
        timeout,
    };
    let resp = client
        .send(target, request)
        .await
        .map_err(|e| err(e.code(), e.to_string()))?;
    let mut w = Writer::with_capacity(256);
    w.u32(u32::from(resp.status().as_u16()));
    w.headers(resp.headers());
    let s = state(c)?;
    let h = s.next_http;
    s.next_http += 1;
    s.http_handles.insert(
        h,
        OutboundResponse {
            head: w.buf,
            response: resp,
            leftover: Bytes::new(),
            done: false,
        },
    );
    Ok(h)
}

/// `http_response_head(h, buf, cap)`: an outbound response's status and headers.
fn http_response_head(c: &mut C<'_>, h: i32, buf: i32, cap: i32) -> AbiResult {
    let head = state(c)?
        .http_handles
        .get(&h)
        .map(|r| r.head.clone())
        .ok_or_else(|| err(code::NOT_FOUND, "no such outbound response"))?;
    write(c, buf, cap, &head)
}

/// `http_body_read(h, buf, cap)`: the next bytes of an outbound response body; 0 at its end.
async fn http_body_read(c: &mut C<'_>, h: i32, buf: i32, cap: i32) -> AbiResult {
    loop {
        let r = state(c)?
            .http_handles
            .get_mut(&h)
            .ok_or_else(|| err(code::NOT_FOUND, "no such outbound response"))?;
        if !r.leftover.is_empty() {
            let chunk = r.leftover.clone();
            let n = write_some(c, buf, cap, &chunk)?;
            if n > 0
                && let Some(r) = sdk(c).and_then(|s| s.http_handles.get_mut(&h))
            {
                let _ = r.leftover.split_to(n as usize);
            }
            return Ok(n);
        }
        if r.done {
            return Ok(0);
        }
        match r.response.chunk().await {
            Ok(Some(b)) => r.leftover = b,
            Ok(None) => r.done = true,
            Err(e) => {
                r.done = true;
                let code = if e.is_timeout() {
                    code::TIMEOUT
                } else {
                    code::CLOSED
                };
                return Err(err(code, format!("outbound response body: {e}")));
            }
        }
    }
}

/// `http_close(h)`: drops an outbound response.
fn http_close(c: &mut C<'_>, h: i32) -> AbiResult {
    match state(c)?.http_handles.remove(&h) {
        Some(_) => Ok(0),
        None => Err(err(code::NOT_FOUND, "no such outbound response")),
    }
}

// ---- Key-value stores ---------------------------------------------------------------------

/// `kv_open(name)`: a handle on one of the app's stores.
fn kv_open(c: &mut C<'_>, np: i32, nl: i32) -> AbiResult {
    let name = String::from_utf8_lossy(&read(c, np, nl)?).into_owned();
    kv::check_store_name(&name).map_err(|e| err(code::INVALID, e.to_string()))?;
    let s = state(c)?;
    if s.kv.is_none() {
        return Err(err(
            code::UNAVAILABLE,
            "no key-value store is configured on this host",
        ));
    }
    let scope = KvScope {
        tenant: s.spec.tenant.clone(),
        app: s.spec.app.clone(),
        store: name,
    };
    if let Some(i) = s.kv_handles.iter().position(|x| *x == scope) {
        return Ok(i as i32 + 1);
    }
    if s.kv_handles.len() >= MAX_KV_HANDLES {
        return Err(err(code::LIMIT, "too many open key-value stores"));
    }
    s.kv_handles.push(scope);
    Ok(s.kv_handles.len() as i32)
}

/// `kv_get(h, key, buf, cap)`: a value.
async fn kv_get(c: &mut C<'_>, h: i32, kp: i32, kl: i32, buf: i32, cap: i32) -> AbiResult {
    let (backend, scope, key) = kv_args(c, h, kp, kl)?;
    match backend.get(&scope, &key).await.map_err(kv_error)? {
        Some(v) => write(c, buf, cap, &v),
        None => Err(err(code::NOT_FOUND, format!("no key {key:?}"))),
    }
}

/// `kv_set(h, key, value)`: stores a value (at most [`kv::MAX_VALUE`] bytes).
async fn kv_set(c: &mut C<'_>, h: i32, kp: i32, kl: i32, vp: i32, vl: i32) -> AbiResult {
    if usize::try_from(vl).unwrap_or(usize::MAX) > kv::MAX_VALUE {
        return Err(err(
            code::TOO_LARGE,
            format!("values are limited to 1 MiB; this one is {vl} bytes"),
        ));
    }
    let (backend, scope, key) = kv_args(c, h, kp, kl)?;
    let value = read(c, vp, vl)?;
    backend.set(&scope, &key, value).await.map_err(kv_error)?;
    Ok(0)
}

/// `kv_delete(h, key)`: removes a key.
async fn kv_delete(c: &mut C<'_>, h: i32, kp: i32, kl: i32) -> AbiResult {
    let (backend, scope, key) = kv_args(c, h, kp, kl)?;
    backend.delete(&scope, &key).await.map_err(kv_error)?;
    Ok(0)
}

/// `kv_keys(h, prefix, buf, cap)`: the keys under a prefix (wire format).
async fn kv_keys(c: &mut C<'_>, h: i32, pp: i32, pl: i32, buf: i32, cap: i32) -> AbiResult {
    let prefix = String::from_utf8_lossy(&read(c, pp, pl)?).into_owned();
    let (backend, scope) = kv_handle(c, h)?;
    let keys = backend.keys(&scope, &prefix).await.map_err(kv_error)?;
    write(c, buf, cap, &super::wire::strings(&keys))
}

/// A store failure as an ABI error: a refused key is the guest's mistake (`INVALID`), not
/// an outage.
fn kv_error(e: kv::KvError) -> AbiError {
    let code = match &e {
        kv::KvError::Invalid(_) => code::INVALID,
        kv::KvError::TooLarge(_) => code::TOO_LARGE,
        kv::KvError::Unavailable(_) => code::UNAVAILABLE,
    };
    err(code, e.to_string())
}

type KvBackend = std::sync::Arc<dyn kv::KvBackend>;

fn kv_handle(c: &mut C<'_>, h: i32) -> Result<(KvBackend, KvScope), AbiError> {
    let missing = || err(code::NOT_FOUND, "no such key-value store handle");
    let s = state(c)?;
    let i = usize::try_from(h)
        .ok()
        .and_then(|h| h.checked_sub(1))
        .ok_or_else(missing)?;
    let scope = s.kv_handles.get(i).ok_or_else(missing)?.clone();
    Ok((s.kv.clone().ok_or_else(missing)?, scope))
}

fn kv_args(
    c: &mut C<'_>,
    h: i32,
    kp: i32,
    kl: i32,
) -> Result<(KvBackend, KvScope, String), AbiError> {
    let key = String::from_utf8(read(c, kp, kl)?.to_vec())
        .map_err(|_| err(code::INVALID, "keys must be UTF-8"))?;
    kv::check_key(&key).map_err(|e| err(code::INVALID, e.to_string()))?;
    let (backend, scope) = kv_handle(c, h)?;
    Ok((backend, scope, key))
}
