//! Outbound client tests. Only loopback is ever connected to: every other address is
//! given by a fake resolver and must be refused before a connection is tried.

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::dns::Resolve;

use super::*;

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

#[test]
fn allow_list_matching() {
    let l = list(&[
        "api.example.com",
        "*.stripe.com",
        "127.0.0.1:9000",
        "local.test:8080",
        "[::1]:9000",
    ]);
    assert!(allowed(&l, "api.example.com", 443));
    assert!(allowed(&l, "x.stripe.com", 443));
    assert!(allowed(&l, "a.b.stripe.com", 443));
    assert!(!allowed(&l, "stripe.com", 443));
    assert!(!allowed(&l, "evilstripe.com", 443));
    assert!(allowed(&l, "127.0.0.1", 9000));
    assert!(!allowed(&l, "127.0.0.1", 9001));
    assert!(allowed(&l, "local.test", 8080));
    assert!(allowed(&l, "::1", 9000));
    assert!(!allowed(&l, "other.com", 80));
}

#[test]
fn urls_are_checked_against_the_release_list() {
    let l = list(&["127.0.0.1:9000", "*.example.com", "[::1]:8000"]);
    let t = check_url(&l, &url("http://127.0.0.1:9000/x")).unwrap();
    assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9000));
    assert_eq!(t.literal, Some("127.0.0.1".parse().unwrap()));
    // Other spellings of an address are the address (the URL parser normalises them).
    assert!(check_url(&l, &url("http://2130706433:9000/")).is_ok());
    assert!(check_url(&l, &url("http://0x7f.1:9000/")).is_ok());
    let t = check_url(&l, &url("https://API.example.com/")).unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.literal),
        ("api.example.com", 443, None)
    );
    assert!(check_url(&l, &url("http://[::1]:8000/")).is_ok());
    let e = check_url(&l, &url("http://127.0.0.1:9001/")).unwrap_err();
    assert!(matches!(e, OutboundError::NotAllowed(_)));
    assert_eq!(e.code(), code::DENIED);
    let e = check_url(&l, &url("http://[::1]:8001/")).unwrap_err();
    assert!(e.to_string().contains("[::1]:8001"), "{e}");
    for other in [
        "ftp://127.0.0.1:9000/",
        "file:///etc/passwd",
        "data:text/plain,x",
    ] {
        let e = check_url(&l, &url(other)).unwrap_err();
        assert!(matches!(e, OutboundError::BadUrl(_)), "{other}");
        assert_eq!(e.code(), code::INVALID, "{other}");
    }
}

/// A resolver that answers `addrs` for every name, or fails.
fn fake(addrs: Result<Vec<&str>, &str>) -> Lookup {
    let addrs: Result<Vec<SocketAddr>, String> = addrs
        .map(|v| v.iter().map(|a| a.parse().unwrap()).collect())
        .map_err(str::to_string);
    Arc::new(move |_host: String, _port: u16| {
        let addrs = addrs.clone();
        Box::pin(async move { addrs.map_err(std::io::Error::other) })
    })
}

fn config(allow: &[&str]) -> OutboundConfig {
    OutboundConfig {
        allow_private: allow.iter().map(|a| a.parse().unwrap()).collect(),
        ..Default::default()
    }
}

async fn resolve(
    r: &PolicyResolver,
    dest: Option<(&str, u16)>,
    name: &str,
) -> Result<Vec<SocketAddr>, String> {
    let call = async {
        r.resolve(name.parse().unwrap())
            .await
            .map(|a| a.collect())
            .map_err(|e| e.to_string())
    };
    match dest {
        Some((host, port)) => {
            let dest = Destination {
                host: host.into(),
                port,
            };
            resolver::with_destination(dest, call).await
        }
        None => call.await,
    }
}

#[tokio::test]
async fn the_resolver_drops_refused_addresses() {
    let policy = Arc::new(AddrPolicy::new(&config(&["127.0.0.1:9000"])));
    let mixed = fake(Ok(vec![
        "10.0.0.1:0",
        "127.0.0.1:0",
        "169.254.169.254:0",
        "[fd00:ec2::254]:0",
        "[::1]:0",
    ]));
    let r = PolicyResolver::new(policy.clone(), mixed);
    assert_eq!(
        resolve(&r, Some(("svc.test", 9000)), "svc.test").await,
        Ok(vec!["127.0.0.1:9000".parse().unwrap()])
    );
    // Another port: nothing is left.
    let e = resolve(&r, Some(("svc.test", 9001)), "svc.test")
        .await
        .unwrap_err();
    assert!(e.contains("resolves only to refused addresses"), "{e}");
    assert!(e.contains("169.254.169.254:9001 is link-local"), "{e}");
    assert!(e.contains("[fd00:ec2::254]:9001 is unique local"), "{e}");
    // Only inside a checked request, and only for its host.
    let e = resolve(&r, None, "svc.test").await.unwrap_err();
    assert!(e.contains("no checked request"), "{e}");
    let e = resolve(&r, Some(("other.test", 9000)), "svc.test")
        .await
        .unwrap_err();
    assert!(e.contains("no checked request"), "{e}");
    let empty = PolicyResolver::new(policy, fake(Ok(vec![])));
    let e = resolve(&empty, Some(("svc.test", 9000)), "svc.test")
        .await
        .unwrap_err();
    assert!(e.contains("has no addresses"), "{e}");
}

/// A loopback server answering `ok` (after `delay`), counting connections.
async fn upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

fn get(u: &str, timeout: Duration) -> OutboundRequest {
    OutboundRequest {
        method: http::Method::GET,
        url: url(u),
        headers: Default::default(),
        body: Bytes::new(),
        timeout,
    }
}

async fn send(
    client: &OutboundClient,
    u: &str,
    timeout: Duration,
) -> Result<String, OutboundError> {
    let req = get(u, timeout);
    let target = check_url(&list(&["*.test", "127.0.0.1", "localhost"]), &req.url)?;
    let resp = client.send(target, req).await?;
    Ok(resp.text().await.unwrap())
}

#[tokio::test]
async fn refusals_dns_failures_and_timeouts_are_told_apart() {
    let (up, connections) = upstream(Duration::ZERO).await;
    let port = up.port();
    let secs = Duration::from_secs(10);

    // A literal the operator did not open: refused before connecting.
    let client = OutboundClient::new(&config(&[])).unwrap();
    let e = send(&client, &format!("http://127.0.0.1:{port}/"), secs)
        .await
        .unwrap_err();
    assert!(matches!(e, OutboundError::Refused(_)), "{e}");
    assert_eq!(e.code(), code::DENIED);
    assert!(e.to_string().contains("loopback"), "{e}");
    // A name that resolves only to refused addresses.
    let client = OutboundClient::with_lookup(
        &config(&[]),
        fake(Ok(vec![
            "127.0.0.1:0",
            "169.254.169.254:0",
            "[fd00:ec2::254]:0",
        ])),
    )
    .unwrap();
    let e = send(&client, &format!("http://metadata.test:{port}/"), secs)
        .await
        .unwrap_err();
    assert!(matches!(e, OutboundError::RefusedAll(_)), "{e}");
    assert_eq!(e.code(), code::DENIED);
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    // A name that does not resolve: not a refusal.
    let client = OutboundClient::with_lookup(&config(&[]), fake(Err("no such host"))).unwrap();
    let e = send(&client, &format!("http://missing.test:{port}/"), secs)
        .await
        .unwrap_err();
    assert!(matches!(e, OutboundError::Resolve(_)), "{e}");
    assert_eq!(e.code(), code::UNAVAILABLE);
    assert!(
        e.to_string()
            .contains("cannot resolve missing.test: no such host"),
        "{e}"
    );

    // Opened by the operator: reached, through the address that was allowed only.
    let allow = format!("127.0.0.1:{port}");
    let client = OutboundClient::with_lookup(
        &config(&[allow.as_str()]),
        fake(Ok(vec!["10.0.0.1:0", "127.0.0.1:0"])),
    )
    .unwrap();
    assert_eq!(
        send(&client, &format!("http://svc.test:{port}/"), secs)
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        send(&client, &format!("http://127.0.0.1:{port}/"), secs)
            .await
            .unwrap(),
        "ok"
    );
    // The pooled connection is reused (once it is back in the pool).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        send(&client, &format!("http://svc.test:{port}/"), secs)
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "one per host name, reused"
    );
}

#[tokio::test]
async fn the_request_deadline_bounds_the_exchange() {
    let (slow, _) = upstream(Duration::from_secs(5)).await;
    let allow = slow.to_string();
    let client = OutboundClient::new(&config(&[allow.as_str()])).unwrap();
    let started = std::time::Instant::now();
    let e = send(
        &client,
        &format!("http://{slow}/"),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, OutboundError::Timeout(_)), "{e}");
    assert_eq!(e.code(), code::TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_platforms_listener_is_never_reached() {
    let (own, connections) = upstream(Duration::ZERO).await;
    let cfg = OutboundConfig {
        allow_private: vec!["127.0.0.0/8".parse().unwrap(), PrivateAllow::Addr(own)],
        platform_listeners: vec![own],
        ..Default::default()
    };
    let client = OutboundClient::new(&cfg).unwrap();
    for u in [
        format!("http://{own}/"),
        format!("http://localhost:{}/", own.port()),
    ] {
        let e = send(&client, &u, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.code(), code::DENIED, "{u}");
        assert!(
            e.to_string().contains("the platform's own listener"),
            "{u}: {e}"
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}
