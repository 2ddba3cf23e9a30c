//! The host functions of ABI v1 (`sdk/ABI.md`), added to the shared linker.
//!
//! Conventions: pointers and lengths are i32 offsets into the guest's memory; a result
//! `< 0` is a negated error code (`abi::code`), with a message for `error_message`. Calls
//! that fill a guest buffer return the full length and write only when it fits, so the
//! guest retries once with a bigger buffer. A pointer outside the guest's memory is an
//! `INVALID` error, never a trap of the host.

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

fn sdk<'a>(caller: &'a mut C<'_>) -> Option<&'a mut SdkHostState> {
    caller.data_mut().sdk.as_mut()
}

fn fail(caller: &mut C<'_>, code: i32, msg: impl Into<String>) -> i32 {
    if let Some(s) = sdk(caller) {
        s.last_error = msg.into();
    }
    -code
}

/// Copies `len` bytes at `ptr` out of guest memory.
fn read(caller: &mut C<'_>, ptr: i32, len: i32) -> Result<Bytes, i32> {
    let Some(mem) = caller.data().sdk.as_ref().and_then(|s| s.memory) else {
        return Err(fail(caller, code::STATE, "the module exports no memory"));
    };
    let (Ok(p), Ok(n)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return Err(fail(
            caller,
            code::INVALID,
            format!("negative pointer or length ({ptr}, {len})"),
        ));
    };
    match mem.data(&caller).get(p..p.saturating_add(n)) {
        Some(b) => Ok(Bytes::copy_from_slice(b)),
        None => Err(fail(
            caller,
            code::INVALID,
            format!("{len} bytes at {ptr} are outside the module's memory"),
        )),
    }
}

/// Writes `data` at `ptr` if it fits in `cap`; returns its full length either way.
fn write(caller: &mut C<'_>, ptr: i32, cap: i32, data: &[u8]) -> i32 {
    let Some(mem) = caller.data().sdk.as_ref().and_then(|s| s.memory) else {
        return fail(caller, code::STATE, "the module exports no memory");
    };
    let (Ok(p), Ok(cap)) = (usize::try_from(ptr), usize::try_from(cap)) else {
        return fail(
            caller,
            code::INVALID,
            format!("negative pointer or capacity ({ptr}, {cap})"),
        );
    };
    let Ok(n) = i32::try_from(data.len()) else {
        return fail(caller, code::TOO_LARGE, "the result does not fit in 2 GiB");
    };
    if data.len() <= cap {
        match mem.data_mut(&mut *caller).get_mut(p..p + data.len()) {
            Some(dst) => dst.copy_from_slice(data),
            None => {
                return fail(
                    caller,
                    code::INVALID,
                    format!("{cap} bytes at {ptr} are outside the module's memory"),
                );
            }
        }
    }
    n
}

/// Writes up to `cap` bytes of `data`; returns how many were written.
fn write_some(caller: &mut C<'_>, ptr: i32, cap: i32, data: &[u8]) -> i32 {
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

/// Adds the Platform host ABI to `linker`.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    let m = SDK_IMPORT_MODULE;

    linker.func_wrap(
        m,
        "request_head",
        |mut c: C<'_>, buf: i32, cap: i32| -> i32 {
            let Some(head) = sdk(&mut c)
                .and_then(|s| s.req.as_ref())
                .map(|r| r.head.clone())
            else {
                return fail(&mut c, code::STATE, "no request is being served");
            };
            write(&mut c, buf, cap, &head)
        },
    )?;

    linker.func_wrap_async(m, "request_body_read", |mut c: C<'_>, (buf, cap): (i32, i32)| {
        Box::new(async move {
            loop {
                let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut()) else {
                    return fail(&mut c, code::STATE, "no request is being served");
                };
                if !req.body.leftover.is_empty() {
                    let chunk = req.body.leftover.clone();
                    let n = write_some(&mut c, buf, cap, &chunk);
                    if n > 0
                        && let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut())
                    {
                        let _ = req.body.leftover.split_to(n as usize);
                    }
                    return n;
                }
                if req.body.done {
                    return 0;
                }
                let Some(mut body) = req.body.body.take() else {
                    return 0;
                };
                let frame = body.frame().await;
                let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut()) else {
                    return -code::STATE;
                };
                req.body.body = Some(body);
                match frame {
                    None => {
                        req.body.done = true;
                        return 0;
                    }
                    Some(Err(e)) => {
                        req.body.done = true;
                        let msg = format!("the request body could not be read: {e}");
                        return fail(&mut c, code::CLOSED, msg);
                    }
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            req.body.received += data.len() as u64;
                            if req.body.received > req.body.limit {
                                req.body.done = true;
                                req.body_too_large = true;
                                let limit = req.body.limit;
                                return fail(&mut c, code::TOO_LARGE, format!("the request body is larger than the limit of {limit} bytes"));
                            }
                            req.body.leftover = data;
                        }
                    }
                }
            }
        })
    })?;

    linker.func_wrap_async(
        m,
        "response_send",
        |mut c: C<'_>, (status, hp, hl, bp, bl, flags): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let head = match read(&mut c, hp, hl) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let body = match read(&mut c, bp, bl) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let Ok(status) = u16::try_from(status)
                    .map_err(|_| ())
                    .and_then(|s| http::StatusCode::from_u16(s).map_err(|_| ()))
                else {
                    return fail(
                        &mut c,
                        code::INVALID,
                        format!("invalid status code {status}"),
                    );
                };
                let Ok(mut headers) = Reader::new(&head).headers() else {
                    return fail(&mut c, code::INVALID, "malformed response headers");
                };
                headers = clean_headers(headers);
                let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut()) else {
                    return fail(&mut c, code::STATE, "no request is being served");
                };
                if body.len() as u64 > req.response_limit {
                    req.response_too_large = true;
                    let limit = req.response_limit;
                    return fail(
                        &mut c,
                        code::TOO_LARGE,
                        format!(
                            "the response is larger than this function's limit of {limit} bytes"
                        ),
                    );
                }
                req.response_bytes = body.len() as u64;
                let sink = std::mem::replace(&mut req.sink, ResponseSink::Done);
                let ResponseSink::Pending(tx) = sink else {
                    req.sink = sink;
                    return fail(&mut c, code::STATE, "the response was already started");
                };
                let (body, next) = if flags & FLAG_END != 0 {
                    headers.remove(http::header::CONTENT_LENGTH);
                    (HeadBody::Full(body), ResponseSink::Done)
                } else {
                    let (ftx, frx) = tokio::sync::mpsc::channel(4);
                    (HeadBody::Stream(body, frx), ResponseSink::Streaming(ftx))
                };
                if tx
                    .send(ResponseHead {
                        status,
                        headers,
                        body,
                    })
                    .is_err()
                {
                    return fail(&mut c, code::CLOSED, "the client went away");
                }
                req.sink = next;
                0
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "response_write",
        |mut c: C<'_>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                // A guest told its response went over the limit that keeps writing is
                // stopped: it would otherwise spin until its deadline.
                if sdk(&mut c)
                    .and_then(|s| s.req.as_ref())
                    .is_some_and(|r| r.response_too_large)
                {
                    return Err(wasmtime::Error::msg(
                        "the function kept writing after its response went over the limit",
                    ));
                }
                let code = async {
                let data = match read(&mut c, ptr, len) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let tx = match sdk(&mut c).and_then(|s| s.req.as_ref()).map(|r| &r.sink) {
                    Some(ResponseSink::Streaming(tx)) => tx.clone(),
                    Some(ResponseSink::Done) => {
                        return fail(
                            &mut c,
                            code::CLOSED,
                            "the response is finished or the client went away",
                        );
                    }
                    _ => return fail(&mut c, code::STATE, "response_write before response_send"),
                };
                if data.is_empty() {
                    return 0;
                }
                if let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut()) {
                    req.response_bytes += data.len() as u64;
                    if req.response_bytes > req.response_limit {
                        // Cut the stream: the client must not take a truncated body
                        // for a complete one.
                        req.response_too_large = true;
                        req.sink = ResponseSink::Done;
                        let _ = tx
                            .send(BodyMsg::Abort(
                                "the response went over the function's limit".into(),
                            ))
                            .await;
                        let limit = req.response_limit;
                        return fail(
                            &mut c,
                            code::TOO_LARGE,
                            format!(
                                "the response is larger than this function's limit of {limit} bytes"
                            ),
                        );
                    }
                }
                if tx.send(BodyMsg::Frame(Frame::data(data))).await.is_err() {
                    if let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut()) {
                        req.sink = ResponseSink::Done;
                    }
                    return fail(&mut c, code::CLOSED, "the client went away");
                }
                0
                }
                .await;
                Ok(code)
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "response_trailers",
        |mut c: C<'_>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                let block = match read(&mut c, ptr, len) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let Ok(trailers) = Reader::new(&block).headers() else {
                    return fail(&mut c, code::INVALID, "malformed trailers");
                };
                let Some(req) = sdk(&mut c).and_then(|s| s.req.as_mut()) else {
                    return -code::STATE;
                };
                let ResponseSink::Streaming(tx) =
                    std::mem::replace(&mut req.sink, ResponseSink::Done)
                else {
                    return fail(
                        &mut c,
                        code::STATE,
                        "trailers need a streamed response (send without the end flag)",
                    );
                };
                // Trailers end the response.
                if tx
                    .send(BodyMsg::Frame(Frame::trailers(trailers)))
                    .await
                    .is_err()
                    || tx.send(BodyMsg::End).await.is_err()
                {
                    return fail(&mut c, code::CLOSED, "the client went away");
                }
                0
            })
        },
    )?;

    linker.func_wrap(m, "env_get", |mut c: C<'_>, buf: i32, cap: i32| -> i32 {
        let Some(pairs) = sdk(&mut c).map(|s| s.env_pairs.clone()) else {
            return -code::STATE;
        };
        write(&mut c, buf, cap, &pairs)
    })?;

    linker.func_wrap(
        m,
        "config_get",
        |mut c: C<'_>, kp: i32, kl: i32, buf: i32, cap: i32| -> i32 {
            let key = match read(&mut c, kp, kl) {
                Ok(b) => b,
                Err(e) => return e,
            };
            let value = sdk(&mut c).and_then(|s| {
                s.spec
                    .env
                    .iter()
                    .find(|(k, _)| k.as_bytes() == key.as_ref())
                    .map(|(_, v)| v.clone())
            });
            match value {
                Some(v) => write(&mut c, buf, cap, v.as_bytes()),
                None => fail(
                    &mut c,
                    code::NOT_FOUND,
                    format!("no variable {:?}", String::from_utf8_lossy(&key)),
                ),
            }
        },
    )?;

    linker.func_wrap(
        m,
        "error_message",
        |mut c: C<'_>, buf: i32, cap: i32| -> i32 {
            let msg = sdk(&mut c)
                .map(|s| s.last_error.clone())
                .unwrap_or_default();
            write_some(&mut c, buf, cap, msg.as_bytes())
        },
    )?;

    linker.func_wrap_async(
        m,
        "http_send",
        |mut c: C<'_>, (hp, hl, bp, bl): (i32, i32, i32, i32)| {
            Box::new(async move {
                let head = match read(&mut c, hp, hl) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let body = match read(&mut c, bp, bl) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let mut r = Reader::new(&head);
                let parsed = (|| {
                    Some((
                        r.str16().ok()?.to_vec(),
                        r.str32().ok()?.to_vec(),
                        r.headers().ok()?,
                    ))
                })();
                let Some((method, url, headers)) = parsed else {
                    return fail(&mut c, code::INVALID, "malformed outbound request");
                };
                let Ok(method) = http::Method::from_bytes(&method) else {
                    return fail(&mut c, code::INVALID, "invalid method");
                };
                let Some(url) = std::str::from_utf8(&url)
                    .ok()
                    .and_then(|u| url::Url::parse(u).ok())
                else {
                    return fail(
                        &mut c,
                        code::INVALID,
                        format!("invalid URL {:?}", String::from_utf8_lossy(&url)),
                    );
                };
                let Some(s) = sdk(&mut c) else {
                    return -code::STATE;
                };
                if s.http_handles.len() >= MAX_HTTP_HANDLES {
                    return fail(
                        &mut c,
                        code::LIMIT,
                        "too many open outbound responses: close their bodies",
                    );
                }
                let target = match super::outbound::check_url(&s.spec.allowed_outbound_hosts, &url)
                {
                    Ok(t) => t,
                    Err(e) => return fail(&mut c, e.code(), e.to_string()),
                };
                let Some(client) = s.outbound.clone() else {
                    return fail(
                        &mut c,
                        code::UNAVAILABLE,
                        "outbound HTTP is not available here",
                    );
                };
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
                let resp = match client.send(target, request).await {
                    Ok(r) => r,
                    Err(e) => return fail(&mut c, e.code(), e.to_string()),
                };
                let mut w = Writer::with_capacity(256);
                w.u32(u32::from(resp.status().as_u16()));
                w.headers(resp.headers());
                let Some(s) = sdk(&mut c) else {
                    return -code::STATE;
                };
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
                h
            })
        },
    )?;

    linker.func_wrap(
        m,
        "http_response_head",
        |mut c: C<'_>, h: i32, buf: i32, cap: i32| -> i32 {
            let Some(head) = sdk(&mut c)
                .and_then(|s| s.http_handles.get(&h))
                .map(|r| r.head.clone())
            else {
                return fail(&mut c, code::NOT_FOUND, "no such outbound response");
            };
            write(&mut c, buf, cap, &head)
        },
    )?;

    linker.func_wrap_async(
        m,
        "http_body_read",
        |mut c: C<'_>, (h, buf, cap): (i32, i32, i32)| {
            Box::new(async move {
                loop {
                    let Some(r) = sdk(&mut c).and_then(|s| s.http_handles.get_mut(&h)) else {
                        return fail(&mut c, code::NOT_FOUND, "no such outbound response");
                    };
                    if !r.leftover.is_empty() {
                        let chunk = r.leftover.clone();
                        let n = write_some(&mut c, buf, cap, &chunk);
                        if n > 0
                            && let Some(r) = sdk(&mut c).and_then(|s| s.http_handles.get_mut(&h))
                        {
                            let _ = r.leftover.split_to(n as usize);
                        }
                        return n;
                    }
                    if r.done {
                        return 0;
                    }
                    match r.response.chunk().await {
                        Ok(Some(b)) => r.leftover = b,
                        Ok(None) => r.done = true,
                        Err(e) => {
                            r.done = true;
                            let msg = format!("outbound response body: {e}");
                            return fail(
                                &mut c,
                                if e.is_timeout() {
                                    code::TIMEOUT
                                } else {
                                    code::CLOSED
                                },
                                msg,
                            );
                        }
                    }
                }
            })
        },
    )?;

    linker.func_wrap(m, "http_close", |mut c: C<'_>, h: i32| -> i32 {
        match sdk(&mut c).and_then(|s| s.http_handles.remove(&h)) {
            Some(_) => 0,
            None => -code::NOT_FOUND,
        }
    })?;

    linker.func_wrap(m, "kv_open", |mut c: C<'_>, np: i32, nl: i32| -> i32 {
        let name = match read(&mut c, np, nl) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return e,
        };
        if let Err(e) = kv::check_store_name(&name) {
            return fail(&mut c, code::INVALID, e.to_string());
        }
        let Some(s) = sdk(&mut c) else {
            return -code::STATE;
        };
        if s.kv.is_none() {
            return fail(
                &mut c,
                code::UNAVAILABLE,
                "no key-value store is configured on this host",
            );
        }
        let scope = KvScope {
            tenant: s.spec.tenant.clone(),
            app: s.spec.app.clone(),
            store: name,
        };
        if let Some(i) = s.kv_handles.iter().position(|x| *x == scope) {
            return i as i32 + 1;
        }
        if s.kv_handles.len() >= MAX_KV_HANDLES {
            return fail(&mut c, code::LIMIT, "too many open key-value stores");
        }
        s.kv_handles.push(scope);
        s.kv_handles.len() as i32
    })?;

    linker.func_wrap_async(
        m,
        "kv_get",
        |mut c: C<'_>, (h, kp, kl, buf, cap): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (backend, scope, key) = match kv_args(&mut c, h, kp, kl) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                match backend.get(&scope, &key).await {
                    Ok(Some(v)) => write(&mut c, buf, cap, &v),
                    Ok(None) => fail(&mut c, code::NOT_FOUND, format!("no key {key:?}")),
                    Err(e) => kv_fail(&mut c, e),
                }
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "kv_set",
        |mut c: C<'_>, (h, kp, kl, vp, vl): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                if usize::try_from(vl).unwrap_or(usize::MAX) > kv::MAX_VALUE {
                    return fail(
                        &mut c,
                        code::TOO_LARGE,
                        format!("values are limited to 1 MiB; this one is {vl} bytes"),
                    );
                }
                let (backend, scope, key) = match kv_args(&mut c, h, kp, kl) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                let value = match read(&mut c, vp, vl) {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                match backend.set(&scope, &key, value).await {
                    Ok(()) => 0,
                    Err(e) => kv_fail(&mut c, e),
                }
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "kv_delete",
        |mut c: C<'_>, (h, kp, kl): (i32, i32, i32)| {
            Box::new(async move {
                let (backend, scope, key) = match kv_args(&mut c, h, kp, kl) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                match backend.delete(&scope, &key).await {
                    Ok(()) => 0,
                    Err(e) => kv_fail(&mut c, e),
                }
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "kv_keys",
        |mut c: C<'_>, (h, pp, pl, buf, cap): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let prefix = match read(&mut c, pp, pl) {
                    Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                    Err(e) => return e,
                };
                let Some((backend, scope)) = kv_handle(&mut c, h) else {
                    return fail(&mut c, code::NOT_FOUND, "no such key-value store handle");
                };
                match backend.keys(&scope, &prefix).await {
                    Ok(keys) => write(&mut c, buf, cap, &super::wire::strings(&keys)),
                    Err(e) => kv_fail(&mut c, e),
                }
            })
        },
    )?;
    Ok(())
}

/// A store failure as an ABI error: a refused key is the guest's mistake (`INVALID`), not
/// an outage.
fn kv_fail(c: &mut C<'_>, e: kv::KvError) -> i32 {
    let code = match &e {
        kv::KvError::Invalid(_) => code::INVALID,
        kv::KvError::TooLarge(_) => code::TOO_LARGE,
        kv::KvError::Unavailable(_) => code::UNAVAILABLE,
    };
    fail(c, code, e.to_string())
}

type KvArgs = (std::sync::Arc<dyn kv::KvBackend>, KvScope, String);

fn kv_handle(c: &mut C<'_>, h: i32) -> Option<(std::sync::Arc<dyn kv::KvBackend>, KvScope)> {
    let s = sdk(c)?;
    let scope = s
        .kv_handles
        .get(usize::try_from(h).ok()?.checked_sub(1)?)?
        .clone();
    Some((s.kv.clone()?, scope))
}

fn kv_args(c: &mut C<'_>, h: i32, kp: i32, kl: i32) -> Result<KvArgs, i32> {
    let key = read(c, kp, kl)?;
    let Ok(key) = String::from_utf8(key.to_vec()) else {
        return Err(fail(c, code::INVALID, "keys must be UTF-8"));
    };
    if let Err(e) = kv::check_key(&key) {
        return Err(fail(c, code::INVALID, e.to_string()));
    }
    let Some((backend, scope)) = kv_handle(c, h) else {
        return Err(fail(c, code::NOT_FOUND, "no such key-value store handle"));
    };
    Ok((backend, scope, key))
}
