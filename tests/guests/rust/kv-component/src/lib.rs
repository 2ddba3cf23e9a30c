//! A wasi:http component using `wasi:keyvalue@0.2.0-draft` (store, atomics, batch).
//!
//! Paths (after the route's first segment); `?store=NAME` picks a store (default: the
//! empty identifier, the app's default store):
//!
//! - `/set/<key>?v=<value>`: sets the key, answers `ok`
//! - `/get/<key>`: `<key>=<value>`, or 404 `<key> is not set`
//! - `/incr/<key>`: increments the key by one (atomics), answers the new value
//! - `/keys`: every key, one per line (list-keys, following cursors)
//! - `/many?k=a,b`: `get-many` of the keys, `key=value` or `key unset` per line
//!
//! Any store error answers 500 `error: <error>`.

use std::io::Write as _;

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "kv-user",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

wasi::http::proxy::export!(Component);

struct Component;

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        let rest = path
            .trim_start_matches('/')
            .split_once('/')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
        let (op, key) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
        let bucket = match store::open(&param("store").unwrap_or_default()) {
            Ok(b) => b,
            Err(e) => return respond(out, 500, format!("error: {e:?}").as_bytes()),
        };
        let result: Result<(u16, String), store::Error> = (|| match op {
            "set" => {
                bucket.set(key, param("v").unwrap_or_default().as_bytes())?;
                Ok((200, "ok".to_string()))
            }
            "get" => Ok(match bucket.get(key)? {
                Some(v) => (200, format!("{key}={}", String::from_utf8_lossy(&v))),
                None => (404, format!("{key} is not set")),
            }),
            "incr" => Ok((200, atomics::increment(&bucket, key, 1)?.to_string())),
            "keys" => {
                let mut keys = Vec::new();
                let mut cursor = None;
                loop {
                    let page = bucket.list_keys(cursor)?;
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                Ok((200, keys.join("\n")))
            }
            "many" => {
                let wanted: Vec<String> = param("k")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect();
                let got = batch::get_many(&bucket, &wanted)?;
                let lines: Vec<String> = wanted
                    .iter()
                    .zip(got)
                    .map(|(k, v)| match v {
                        Some((_, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                        None => format!("{k} unset"),
                    })
                    .collect();
                Ok((200, lines.join("\n")))
            }
            _ => Ok((404, "unknown operation".to_string())),
        })();
        match result {
            Ok((status, text)) => respond(out, status, text.as_bytes()),
            Err(e) => respond(out, 500, format!("error: {e:?}").as_bytes()),
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let resp = OutgoingResponse::new(Fields::new());
    let _ = resp.set_status_code(status);
    let Ok(outgoing) = resp.body() else { return };
    ResponseOutparam::set(out, Ok(resp));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
