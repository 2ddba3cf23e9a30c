//! A wasi:http component for Platform's tests: one behaviour per path.
//!
//! The guest sees the full request path, route prefix included (as under `wasmtime
//! serve`); it reads its behaviour from what follows the first segment, so `/c/env` on a
//! route `/c` is `/env`.
//!
//! - `/` (and anything unknown): `hello from a component`
//! - `/env`: the `GREETING` environment variable (wasi:cli/environment)
//! - `/log`: writes a line to stdout and one to stderr, then answers
//! - `/echo`: streams the request body back, chunk by chunk
//! - `/drain`: reads the whole request body, then answers `read <n> bytes` (or 400
//!   `body error: <error>` when the body fails)
//! - `/count`: `count <n>`, the number of requests this instance has served (a static:
//!   it only passes 1 when the host reuses instances)
//! - `/trap`: panics (a WebAssembly trap)
//! - `/trap-mid-body`: sets a 200 head, writes part of the body, then panics
//! - `/loop`: never returns
//! - `/memory`: allocates until memory runs out
//! - `/status/<code>`: answers with that status
//! - `/fetch?url=http://host:port/path`: GETs the URL through wasi:http/outgoing-handler
//!   and answers `upstream <status>: <body>`, or 502 `error: <error-code>`

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Component);

struct Component;

/// Requests this instance has served (kept in the instance's memory).
static SERVED: AtomicU64 = AtomicU64::new(0);

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let path = match path.trim_start_matches('/').split_once('/') {
            Some((_prefix, rest)) => format!("/{rest}"),
            None => "/".to_string(),
        };
        match path.as_str() {
            "/env" => {
                let greeting = std::env::var("GREETING").unwrap_or_else(|_| "(unset)".into());
                respond(out, 200, format!("GREETING={greeting}").as_bytes());
            }
            "/log" => {
                println!("component says hello on stdout");
                eprintln!("component says hello on stderr");
                respond(out, 200, b"logged");
            }
            "/echo" => echo(request, out),
            "/drain" => drain(request, out),
            "/count" => respond(out, 200, format!("count {served}").as_bytes()),
            "/fetch" => fetch(query, out),
            "/trap" => panic!("the component was asked to trap"),
            "/trap-mid-body" => {
                let resp = OutgoingResponse::new(Fields::new());
                let Ok(outgoing) = resp.body() else { return };
                ResponseOutparam::set(out, Ok(resp));
                if let Ok(mut stream) = outgoing.write() {
                    let _ = stream.write_all(b"partial");
                    let _ = stream.flush();
                }
                panic!("the component trapped after its head");
            }
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            p if p.starts_with("/status/") => {
                let code = p["/status/".len()..].parse().unwrap_or(500);
                respond(out, code, b"status");
            }
            _ => respond(out, 200, b"hello from a component"),
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set(
        "content-type",
        &[b"text/plain; charset=utf-8".to_vec()],
    );
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let Ok(outgoing) = resp.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(resp));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Streams the request body back without holding it all in memory.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let resp = OutgoingResponse::new(Fields::new());
    let Ok(outgoing) = resp.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(resp));
    let Ok(incoming) = request.consume() else {
        return;
    };
    if let (Ok(input), Ok(mut output)) = (incoming.stream(), outgoing.write()) {
        while let Ok(chunk) = input.blocking_read(64 * 1024) {
            if output.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = output.flush();
        drop(output);
        drop(input);
    }
    let _ = IncomingBody::finish(incoming);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Reads the whole request body before answering (so a body over the limit is found
/// before the head is set).
fn drain(request: IncomingRequest, out: ResponseOutparam) {
    use wasi::io::streams::StreamError;

    let Ok(incoming) = request.consume() else {
        return respond(out, 400, b"body error: consumed twice");
    };
    let Ok(input) = incoming.stream() else {
        return respond(out, 400, b"body error: no stream");
    };
    let mut total = 0usize;
    let failure = loop {
        match input.blocking_read(64 * 1024) {
            Ok(chunk) => total += chunk.len(),
            Err(StreamError::Closed) => break None,
            Err(StreamError::LastOperationFailed(e)) => break Some(e.to_debug_string()),
        }
    };
    drop(input);
    let _ = IncomingBody::finish(incoming);
    match failure {
        None => respond(out, 200, format!("read {total} bytes").as_bytes()),
        Some(e) => respond(out, 400, format!("body error: {e}").as_bytes()),
    }
}

/// GETs the `url` query parameter through wasi:http/outgoing-handler.
fn fetch(query: &str, out: ResponseOutparam) {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{OutgoingRequest, Scheme};

    let Some(url) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("url="))
        .map(percent_decode)
    else {
        return respond(out, 400, b"missing ?url=");
    };
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => return respond(out, 400, b"not an absolute URL"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let future = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(code) => return respond(out, 502, format!("error: {code:?}").as_bytes()),
    };
    future.subscribe().block();
    let resp = match future.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(code))) => return respond(out, 502, format!("error: {code:?}").as_bytes()),
        _ => return respond(out, 502, b"error: no response"),
    };
    let status = resp.status();
    let mut body = Vec::new();
    if let Ok(incoming) = resp.consume() {
        if let Ok(stream) = incoming.stream() {
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                body.extend_from_slice(&chunk);
            }
        }
        let _ = IncomingBody::finish(incoming);
    }
    let text = format!("upstream {status}: {}", String::from_utf8_lossy(&body));
    respond(out, 200, text.as_bytes());
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
