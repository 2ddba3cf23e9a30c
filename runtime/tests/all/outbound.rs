//! Outbound HTTP from SDK guests: a tenant's allow-list never reaches private addresses
//! (the platform's own listeners above all); only the operator opens named private
//! destinations. Every upstream here listens on loopback and counts its connections, so a
//! refusal is proven to happen before any connection is made.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use platform_runtime::sdk::outbound::PrivateAllow;
use platform_test_guests as guests;

use crate::support::{App, TestHost, client};

/// A loopback HTTP server that counts the connections it accepts.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    /// Answers every request with `upstream saw METHOD PATH`, or with a 302 to `redirect`.
    pub(crate) async fn start(redirect: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    break;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let redirect = redirect.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let redirect = redirect.clone();
                            async move {
                                let mut resp = hyper::Response::builder()
                                    .header("content-type", "text/plain")
                                    .header("x-upstream", "yes");
                                let body = match redirect {
                                    Some(to) => {
                                        resp = resp.status(302).header("location", to);
                                        String::new()
                                    }
                                    None => {
                                        format!(
                                            "upstream saw {} {}",
                                            req.method(),
                                            req.uri().path()
                                        )
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(
                                    resp.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Upstream { addr, connections }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// What the proxy guest answers for `?url=target`: status and body.
async fn fetch_through(host: &TestHost, route: &str, target: &str) -> (u16, String) {
    let r = client()
        .get(host.url(route))
        .query(&[("url", target)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

pub(crate) fn allow<S: AsRef<str>>(entries: &[S]) -> Vec<PrivateAllow> {
    entries
        .iter()
        .map(|e| e.as_ref().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_hosts_are_reached() {
    let up = Upstream::start(None).await;
    let entry = format!("127.0.0.1:{}", up.port());
    let host = TestHost::start_with(|c| c.outbound.allow_private = allow(&[entry.as_str()])).await;
    let proxy = guests::sdk_example("proxy");
    let listed = [entry.as_str()];
    host.deploy(&[
        App {
            outbound: &listed,
            ..App::new("allowed", &proxy, &["/allowed"])
        },
        App {
            outbound: &["*.example.com"],
            ..App::new("denied", &proxy, &["/denied"])
        },
    ]);
    let target = format!("http://{}/hello", up.addr);
    let r = client()
        .get(host.url("/allowed"))
        .query(&[("url", &target)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream-status"], "200 OK");
    assert_eq!(r.text().await.unwrap(), "upstream saw GET /hello");
    // Not listed: refused with a clear reason.
    let (status, body) = fetch_through(&host, "/denied", &target).await;
    assert_eq!(status, 502);
    assert!(
        body.contains("not in this release's allowed_outbound_hosts"),
        "{body}"
    );
    // Another port on the same loopback address is not listed either.
    let other = format!("http://127.0.0.1:{}/", up.port() + 1);
    let (status, body) = fetch_through(&host, "/allowed", &other).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.connections(), 1, "only the allowed request connected");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_loopback_host_does_not_reach_it() {
    let up = Upstream::start(None).await;
    let host = TestHost::start().await;
    let own = host.addr.port();
    let proxy = guests::sdk_example("proxy");
    let listed = [
        format!("127.0.0.1:{}", up.port()),
        format!("localhost:{}", up.port()),
        format!("127.0.0.1:{own}"),
        format!("localhost:{own}"),
    ];
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    host.deploy(&[App {
        outbound: &listed,
        ..App::new("tenant", &proxy, &["/"])
    }]);
    for (target, why) in [
        (format!("http://127.0.0.1:{}/", up.port()), "is loopback"),
        (format!("http://localhost:{}/", up.port()), "is loopback"),
        (
            format!("http://127.0.0.1:{own}/"),
            "is the platform's own listener",
        ),
        (
            format!("http://localhost:{own}/"),
            "is the platform's own listener",
        ),
    ] {
        let (status, body) = fetch_through(&host, "/", &target).await;
        assert_eq!(status, 502, "{target}: {body}");
        assert!(body.contains("denied"), "{target}: {body}");
        assert!(body.contains(why), "{target}: {body}");
    }
    assert_eq!(up.connections(), 0, "a refused request must not connect");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_allows_named_private_destinations_but_never_the_platform() {
    let up = Upstream::start(None).await;
    let other = Upstream::start(None).await;
    // The operator allows the upstream by address, and all of loopback by range, and even
    // names the runtime's own traffic listener: that one stays refused.
    let host = TestHost::start_with(|c| {
        let own = c.outbound.platform_listeners[0];
        c.outbound.allow_private = allow(&[format!("127.0.0.1:{}", up.port()), own.to_string()]);
    })
    .await;
    let wide = TestHost::start_with(|c| {
        let own = c.outbound.platform_listeners[0];
        c.outbound.allow_private = allow(&["127.0.0.0/8".to_string(), own.to_string()]);
    })
    .await;
    let proxy = guests::sdk_example("proxy");
    for h in [&host, &wide] {
        let own = h.addr.port();
        let listed = [
            format!("127.0.0.1:{}", up.port()),
            format!("localhost:{}", up.port()),
            format!("127.0.0.1:{}", other.port()),
            format!("127.0.0.1:{own}"),
            format!("localhost:{own}"),
        ];
        let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
        h.deploy(&[App {
            outbound: &listed,
            ..App::new("tenant", &proxy, &["/"])
        }]);
        for target in [
            format!("http://127.0.0.1:{}/a", up.port()),
            format!("http://localhost:{}/b", up.port()),
        ] {
            let (status, body) = fetch_through(h, "/", &target).await;
            assert_eq!(status, 200, "{target}: {body}");
            assert!(body.starts_with("upstream saw GET /"), "{body}");
        }
        for target in [
            format!("http://127.0.0.1:{own}/"),
            format!("http://localhost:{own}/"),
        ] {
            let (status, body) = fetch_through(h, "/", &target).await;
            assert_eq!(status, 502, "{target}: {body}");
            assert!(body.contains("the platform's own listener"), "{body}");
        }
    }
    // Only the range lets the other loopback port through.
    let target = format!("http://127.0.0.1:{}/", other.port());
    let (status, body) = fetch_through(&host, "/", &target).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(other.connections(), 0);
    let (status, body) = fetch_through(&wide, "/", &target).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(other.connections(), 1);
    host.stop().await;
    wide.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redirect_hop_is_checked_again() {
    let hidden = Upstream::start(None).await;
    let front = Upstream::start(Some(format!("http://127.0.0.1:{}/secret", hidden.port()))).await;
    // The tenant lists both; the operator allows only the front.
    let host =
        TestHost::start_with(|c| c.outbound.allow_private = allow(&[front.addr.to_string()])).await;
    let proxy = guests::sdk_example("proxy");
    let listed = [front.addr.to_string(), hidden.addr.to_string()];
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    host.deploy(&[App {
        outbound: &listed,
        ..App::new("tenant", &proxy, &["/"])
    }]);
    let (status, body) = fetch_through(&host, "/", &format!("http://{}/", front.addr)).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("denied"), "{body}");
    assert_eq!(front.connections(), 1);
    assert_eq!(
        hidden.connections(),
        0,
        "the redirect target must not be reached"
    );
    host.stop().await;
}
