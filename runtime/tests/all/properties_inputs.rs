//! Property-based tests of more inputs from clients and users: the CGI environment built
//! from odd requests, CloudEvents in structured mode, and the upload validator fed random,
//! mutated, truncated and oversized-count modules. No panic, no hang, invariants asserted.
//! Bounded in `cargo test`; `scripts/fuzz` runs them longer (`PROPTEST_CASES`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use platform_runtime::abi;
use platform_runtime::cloud_events::structured_to_binary;
use platform_runtime::wagi::CgiRequest;
use platform_runtime::wagi::cgi_env::build_env;
use proptest::prelude::*;

/// Methods, including extension tokens hyper lets through.
fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        Just(http::Method::GET),
        Just(http::Method::POST),
        Just(http::Method::OPTIONS),
        Just(http::Method::CONNECT),
        "[A-Z!#$%&'*+.^_`|~-]{1,12}"
            .prop_filter_map("token", |m| { http::Method::from_bytes(m.as_bytes()).ok() }),
    ]
}

/// Paths with encodings, dots, doubled slashes, non-ASCII percent escapes.
fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_string()),
            Just("//".to_string()),
            Just("%2F".to_string()),
            Just("%00".to_string()),
            Just("%".to_string()),
            Just("%zz".to_string()),
            Just("%C3%A9".to_string()),
            Just("%FF".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            "[a-zA-Z0-9._~!$&'()*+,;=:@-]{1,6}",
        ],
        0..10,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

/// Header values as bytes (obs-text included), headers the CGI code treats specially.
fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                Just("host".to_string()),
                Just("content-type".to_string()),
                Just("content-length".to_string()),
                Just("cookie".to_string()),
                Just("proxy".to_string()),
                Just("x-request-id".to_string()),
                Just("x-forwarded-for".to_string()),
                "[a-z0-9!#$%&'*+.^_`|~-]{1,16}",
            ],
            proptest::collection::vec(
                prop_oneof![9 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')],
                0..24,
            ),
        ),
        0..10,
    )
}

fn route_prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("/shop".to_string()),
        Just("/a/b".to_string()),
        "/[a-z]{1,4}",
    ]
}

proptest! {
    /// Any request the HTTP layer accepts gives a CGI environment a WASI guest can take:
    /// names without `=` or NUL, values without NUL, every name once, and the request
    /// facts (method, script name, query) exactly as the request had them, whatever the
    /// app's own variables say.
    #[test]
    fn cgi_env_from_odd_requests(
        method in method(),
        path in path(),
        query in proptest::option::of("[a-zA-Z0-9=&%+.~-]{0,20}"),
        headers in headers(),
        prefix in route_prefix(),
        app_env in proptest::collection::vec(
            (prop_oneof![
                Just("REQUEST_METHOD".to_string()),
                Just("PATH_INFO".to_string()),
                Just("HTTP_HOST".to_string()),
                "[A-Z_]{1,10}",
            ], "[ -~]{0,10}"),
            0..5,
        ),
        content_length in 0usize..1 << 20,
    ) {
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let Ok(uri) = target.parse::<http::Uri>() else {
            return Ok(());
        };
        let mut req = http::Request::builder().method(method.clone()).uri(uri);
        for (k, v) in &headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_bytes(v),
            ) {
                req = req.header(k, v);
            }
        }
        let Ok(req) = req.body(()) else {
            return Ok(());
        };
        let (parts, ()) = req.into_parts();
        let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let env = build_env(
            &CgiRequest {
                parts: &parts,
                route_prefix: &prefix,
                content_length,
                remote,
                local,
                request_id: "rid",
            },
            &app_env,
        );
        let mut names = std::collections::HashSet::new();
        for (k, v) in &env {
            prop_assert!(!k.is_empty() && !k.contains('=') && !k.contains('\0'), "bad name {:?}", k);
            prop_assert!(!v.contains('\0'), "{} holds a NUL: {:?}", k, v);
            prop_assert!(names.insert(k.clone()), "{} twice", k);
        }
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        prop_assert_eq!(get("REQUEST_METHOD"), Some(method.as_str()));
        let script = if prefix == "/" { "" } else { prefix.as_str() };
        prop_assert_eq!(get("SCRIPT_NAME"), Some(script));
        prop_assert_eq!(get("QUERY_STRING"), Some(parts.uri.query().unwrap_or("")));
        let content_length = content_length.to_string();
        prop_assert_eq!(get("CONTENT_LENGTH"), Some(content_length.as_str()));
        prop_assert_eq!(get("HTTP_X_REQUEST_ID"), Some("rid"));
        prop_assert!(get("HTTP_PROXY").is_none(), "httpoxy: a client set HTTP_PROXY");
    }

    /// Any bytes as a structured CloudEvent: an event or an error, never a panic.
    #[test]
    fn cloud_event_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = structured_to_binary(&body);
    }

    /// JSON objects with the required attributes in any shape: an accepted event carries
    /// its type, a `ce-` header per other non-null attribute, and its data.
    #[test]
    fn cloud_event_from_json_objects(
        attrs in proptest::collection::btree_map(
            prop_oneof![
                Just("specversion".to_string()),
                Just("id".to_string()),
                Just("source".to_string()),
                Just("type".to_string()),
                Just("subject".to_string()),
                Just("datacontenttype".to_string()),
                "[a-zA-Z0-9 _\u{e9}-]{1,10}",
            ],
            prop_oneof![
                Just(serde_json::Value::Null),
                Just(serde_json::json!("1.0")),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
                "\\PC{0,16}".prop_map(serde_json::Value::from),
                Just(serde_json::json!({"a": [1, "b", null]})),
            ],
            0..8,
        ),
        data in proptest::option::of(prop_oneof![
            "\\PC{0,16}".prop_map(serde_json::Value::from),
            Just(serde_json::json!([1, 2])),
        ]),
        data_base64 in proptest::option::of("[A-Za-z0-9+/=]{0,12}"),
    ) {
        let mut object: serde_json::Map<String, serde_json::Value> = attrs.into_iter().collect();
        if let Some(d) = data {
            object.insert("data".into(), d);
        }
        if let Some(b) = data_base64 {
            object.insert("data_base64".into(), serde_json::Value::from(b));
        }
        let json = serde_json::Value::Object(object.clone()).to_string();
        if let Ok(event) = structured_to_binary(json.as_bytes()) {
            prop_assert_eq!(object.get("specversion"), Some(&serde_json::json!("1.0")));
            prop_assert_eq!(Some(&serde_json::Value::from(event.event_type.clone())), object.get("type"));
            for (name, v) in &object {
                if matches!(name.as_str(), "data" | "data_base64" | "datacontenttype") || v.is_null() {
                    continue;
                }
                let header = format!("ce-{}", name.to_ascii_lowercase());
                prop_assert!(event.headers.contains_key(header.as_str()), "no {} in {:?}", header, event.headers);
            }
        }
    }

    /// Random bytes behind the wasm magic number and version: refused with a reason.
    #[test]
    fn upload_validator_takes_random_modules(rest in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend_from_slice(&rest);
        let started = Instant::now();
        let _ = abi::detect(&bytes);
        prop_assert!(started.elapsed() < Duration::from_secs(2), "detect took {:?}", started.elapsed());
    }

    /// A valid guest with bytes flipped, cut short or spliced: refused with a reason or
    /// accepted as what it is, never a panic. Cut short and nothing else, it is accepted
    /// only when the cut falls after its exports (the data section is optional), as WAGI.
    #[test]
    fn upload_validator_takes_mutated_modules(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        splice in proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..16))),
    ) {
        let original = valid_guest();
        let mut bytes = original.clone();
        for (at, b) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if let Some((at, extra)) = &splice {
            let i = at.index(bytes.len());
            bytes.splice(i..i, extra.iter().copied());
        }
        let truncated = cut.map(|c| c.index(bytes.len()));
        if let Some(n) = truncated {
            bytes.truncate(n);
        }
        let started = Instant::now();
        let result = abi::detect(&bytes);
        prop_assert!(started.elapsed() < Duration::from_secs(2));
        if flips.is_empty() && splice.is_none() && truncated.is_some()
            && let Ok(info) = &result
        {
            prop_assert_eq!(info.kind, abi::AbiKind::Wagi);
            prop_assert!(bytes.len() * 2 > original.len(), "a module cut to {} bytes was accepted", bytes.len());
        }
    }

    /// Sections whose item counts claim millions to billions of entries (with nothing
    /// behind them): refused at once (as invalid, or for what the first entry asks),
    /// without allocating for the claimed count.
    #[test]
    fn upload_validator_refuses_huge_section_counts(
        section in prop_oneof![Just(1u8), Just(2), Just(3), Just(4), Just(5), Just(6), Just(7), Just(9), Just(10), Just(11)],
        count in 0x0100_0000u32..=u32::MAX,
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut payload = leb128(count);
        payload.extend_from_slice(&tail);
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.push(section);
        bytes.extend_from_slice(&leb128(payload.len() as u32));
        bytes.extend_from_slice(&payload);
        let started = Instant::now();
        let result = abi::detect(&bytes);
        prop_assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
        prop_assert!(result.is_err(), "accepted: {:?}", result);
    }
}

fn leb128(mut v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A small valid WAGI guest: imports, memory, exports, code and data.
fn valid_guest() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (table 2 funcref)
            (global $g (mut i32) (i32.const 0))
            (data (i32.const 16) "Content-Type: text/plain\r\n\r\nhi\n")
            (func (export "_start")
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const 31))
                (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap()
}
