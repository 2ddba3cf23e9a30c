//! Property-based tests of the parsers guests and users feed the runtime, and of route
//! lookup against a reference model. Bounded in `cargo test` (proptest's default 256
//! cases); `scripts/fuzz` runs them longer through `PROPTEST_CASES`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use platform_runtime::sdk::wire::{Reader, Writer};
use platform_runtime::wagi::CgiResponse;
use platform_runtime::{AppSpec, AppTarget, RouteSpec, RouteTable};
use proptest::prelude::*;

proptest! {
    /// Any bytes on a WAGI guest's stdout: a response or an error, never a panic.
    #[test]
    fn cgi_parser_takes_any_output(out in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = CgiResponse::parse(Bytes::from(out));
    }

    /// CGI-looking output (header lines, separators, bodies) parses consistently: a
    /// `Status:` the parser accepts is the response's status.
    #[test]
    fn cgi_parser_on_header_shaped_output(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("Content-Type: text/plain".to_string()),
                Just("Location: /x".to_string()),
                Just("X-A: b".to_string()),
                Just("no colon here".to_string()),
                Just(": empty name".to_string()),
                (100u16..1000).prop_map(|s| format!("Status: {s} Whatever")),
                "[ -~]{0,20}",
            ],
            0..6,
        ),
        sep in prop_oneof![Just("\r\n"), Just("\n")],
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut out = lines.join(sep);
        out.push_str(sep);
        out.push_str(sep);
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&body);
        if let Ok(r) = CgiResponse::parse(Bytes::from(bytes)) {
            // Never an interim status as the answer.
            prop_assert!(!r.status.is_informational());
            // The header block ends at the first empty line; the rest is body.
            let statuses: Vec<&String> = lines
                .iter()
                .take_while(|l| !l.is_empty())
                .filter(|l| l.to_ascii_lowercase().starts_with("status"))
                .collect();
            // One well-formed Status line: it is the response's status.
            if let [only] = statuses[..]
                && let Some(code) = only
                    .strip_prefix("Status: ")
                    .and_then(|d| d.split(' ').next()?.parse::<u16>().ok())
            {
                prop_assert_eq!(r.status.as_u16(), code);
            }
        }
    }

    /// Random bytes through every SDK wire reader: values or `Malformed`, never a panic
    /// or a huge allocation.
    #[test]
    fn sdk_wire_reader_takes_any_input(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut r = Reader::new(&input);
        let _ = r.headers();
        let mut r = Reader::new(&input);
        while r.str16().is_ok() {}
        let mut r = Reader::new(&input);
        while r.str32().is_ok() {}
        let mut r = Reader::new(&input);
        let _ = (r.u32(), r.u16(), r.str32(), r.headers());
    }

    /// What the writer encodes the reader decodes to the same values.
    #[test]
    fn sdk_wire_round_trips(
        a in any::<u32>(),
        s16 in proptest::collection::vec(any::<u8>(), 0..300),
        s32 in proptest::collection::vec(any::<u8>(), 0..300),
        headers in proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", "[ -~]{0,24}"), 0..8),
    ) {
        let mut map = http::HeaderMap::new();
        for (k, v) in &headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut w = Writer::default();
        w.u32(a);
        w.str16(&s16);
        w.str32(&s32);
        w.headers(&map);
        let mut r = Reader::new(&w.buf);
        prop_assert_eq!(r.u32().unwrap(), a);
        prop_assert_eq!(r.str16().unwrap(), &s16[..]);
        prop_assert_eq!(r.str32().unwrap(), &s32[..]);
        prop_assert_eq!(r.headers().unwrap(), map);
    }

    /// Route lookup agrees with a plain model: exact host first, then wildcard domains from
    /// the nearest, then any host; a host with routes of its own never falls through to
    /// any-host routes; among prefixes the longest whole-segment match wins.
    #[test]
    fn route_lookup_matches_the_model(
        routes in proptest::collection::vec((host_route(), prefix()), 0..12),
        requests in proptest::collection::vec((request_host(), request_path()), 1..16),
    ) {
        let mut model: BTreeMap<RouteSpec, String> = BTreeMap::new();
        let mut entries = Vec::new();
        for (i, (host, prefix)) in routes.iter().enumerate() {
            let spec = RouteSpec::parse(&format!("{host}{prefix}")).unwrap();
            if model.contains_key(&spec) {
                continue;
            }
            let app = format!("app{i}");
            model.insert(spec.clone(), app.clone());
            entries.push((spec, Arc::new(AppTarget::single(Arc::new(AppSpec::for_tests(&app))))));
        }
        let table = RouteTable::build(entries).unwrap();
        for (host, path) in &requests {
            let got = table.lookup_canonical(host.as_deref(), path).map(|m| m.target.app.clone());
            prop_assert_eq!(got, model_lookup(&model, host.as_deref(), path), "{:?} {}", host, path);
        }
    }
}

fn host_route() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just("x.com"),
        Just("a.x.com"),
        Just("*.x.com"),
        Just("*.a.x.com")
    ]
}

fn prefix() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("ab")], 0..3)
        .prop_map(|s| format!("/{}", s.join("/")))
}

fn request_host() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("x.com".to_string())),
        Just(Some("a.x.com".to_string())),
        Just(Some("b.a.x.com".to_string())),
        Just(Some("y.com".to_string())),
    ]
}

fn request_path() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(
            prop_oneof![Just("a"), Just("b"), Just("ab"), Just("c")],
            0..4,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, slash, query)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && !p.ends_with('/') {
                p.push('/');
            }
            if query {
                p.push_str("?q=/a");
            }
            p
        })
}

/// The reference: the app a request reaches, written as plainly as possible.
fn model_lookup(
    model: &BTreeMap<RouteSpec, String>,
    host: Option<&str>,
    path: &str,
) -> Option<String> {
    let path = path.split('?').next().unwrap().trim_end_matches('/');
    let best = |routes: Vec<(&RouteSpec, &String)>| {
        routes
            .into_iter()
            .filter(|(s, _)| {
                s.prefix == "/" || path == s.prefix || path.starts_with(&format!("{}/", s.prefix))
            })
            .max_by_key(|(s, _)| s.prefix.len())
            .map(|(_, app)| app.clone())
    };
    let with_host = |h: &str| -> Vec<(&RouteSpec, &String)> {
        model
            .iter()
            .filter(|(s, _)| s.host.as_deref() == Some(h))
            .collect()
    };
    if let Some(host) = host {
        let mut owned = false;
        let mut tiers = vec![host.to_string()];
        let mut rest = host;
        while let Some((_, domain)) = rest.split_once('.') {
            tiers.push(format!("*.{domain}"));
            rest = domain;
        }
        for tier in tiers {
            let routes = with_host(&tier);
            if routes.is_empty() {
                continue;
            }
            owned = true;
            if let Some(app) = best(routes) {
                return Some(app);
            }
        }
        if owned {
            return None;
        }
    }
    best(model.iter().filter(|(s, _)| s.host.is_none()).collect())
}
