//! A wasi:http component reading configuration through `wasi:config/store@0.2.0-rc.1`
//! (the version wasmtime-wasi-config 48 serves; declared inline with `wit-bindgen`).
//!
//! - `/<prefix>/<key>`: `<key>=<value>`, or `<key> is not set`, or 500 with the error
//! - `/<prefix>` (no key): every variable, `key=value` per line, sorted

use std::io::Write as _;

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

mod bindings {
    wit_bindgen::generate!({
        inline: "
            package wasi:config@0.2.0-rc.1;

            interface store {
                variant error {
                    upstream(string),
                    io(string),
                }
                get: func(key: string) -> result<option<string>, error>;
                get-all: func() -> result<list<tuple<string, string>>, error>;
            }

            world config-user {
                import store;
            }
        ",
        world: "config-user",
    });
}

use bindings::wasi::config::store;

wasi::http::proxy::export!(Component);

struct Component;

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let path = full.split('?').next().unwrap_or("");
        let key = path
            .trim_start_matches('/')
            .split_once('/')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
        if key.is_empty() {
            return match store::get_all() {
                Ok(mut all) => {
                    all.sort();
                    let text: String = all.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                    respond(out, 200, text.as_bytes())
                }
                Err(e) => respond(out, 500, format!("error: {e:?}").as_bytes()),
            };
        }
        match store::get(&key) {
            Ok(Some(v)) => respond(out, 200, format!("{key}={v}").as_bytes()),
            Ok(None) => respond(out, 200, format!("{key} is not set").as_bytes()),
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
